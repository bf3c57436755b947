"""The alert state machine, per rule and label set: inactive -> pending -> firing -> resolved
(Prometheus rules/alerting.go), with `for`, `keep_firing_for`, `cooldown` (re-notify while
firing), inhibition, silences (`silencing`: Alertmanager's, kept in notify/silences.py) and
state that survives a restart.

A missing series never silently resolves an alert: an alert resolves only when the series it
came from are still there and no longer match. If they vanished (a lost GPU, a collector
that failed) the alert is held, and resolved with a "no data" note only after
`no_data_timeout`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..digest import sha256_hex
from ..labels import Matcher, matches
from ..promql.ast import label_sources, selectors
from ..promql.evaluator import Budget, EvalError, Evaluator, Matrix, unique
from .history import History
from ..promql.parser import parse as parse_promql
from ..promql.reach import reach_problem
from ..templates import NO_CONTEXT, Context, Template

log = logging.getLogger(__name__)


@dataclass
class Rule:
    name: str
    expr: object
    for_: float = 0.0
    keep_firing_for: float = 0.0
    cooldown: float = 0.0
    severity: Optional[str] = "warning"  # None: a Prometheus rule file's rule, which sets its own labels
    labels: Dict[str, str] = field(default_factory=dict)
    annotations: Dict[str, Template] = field(default_factory=dict)
    label_templates: Dict[str, Template] = field(default_factory=dict)
    key: str = ""  # the state's key: the name, or file:group:index:name for a rule file's rule
    # an annotation calls `query`: its text can change while the alert's value does not
    queries: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.key = self.key or self.name
        self.queries = any(t.reads_query for t in self.annotations.values())


@dataclass
class RecordingRule:
    """`record` = `expr`: the result, renamed and relabelled, written to the history for the
    rules after it and served on /metrics."""

    name: str
    expr: object
    labels: Dict[str, str] = field(default_factory=dict)
    key: str = ""

    def __post_init__(self) -> None:
        self.key = self.key or "record:" + self.name


AnyRule = Union[Rule, RecordingRule]


@dataclass
class Group:
    """Rules evaluated in order every `interval` (0: every cycle); `limit` caps the alerts or
    series one rule may produce (0: none), as a Prometheus rule group's does. `offset` moves
    the second evaluation (and so every later one) that much earlier, as Prometheus staggers
    its groups: slow groups of the same interval then share out the cycles instead of all
    landing on the same one."""

    name: str
    rules: List[AnyRule]
    interval: float = 0.0
    limit: int = 0
    offset: float = 0.0


@dataclass
class Alert:
    rule: str
    labels: Dict[str, str]
    source: Tuple[Tuple[str, str], ...]  # the result's own labels, to find its series again
    annotations: Dict[str, str]
    state: str  # pending | firing
    active_at: float
    value: float
    last_seen: float
    last_sent: float = 0.0  # last firing notification (0: never, e.g. inhibited all along)
    inhibited: bool = False
    inhibited_by: str = ""  # the fingerprint of an alert inhibiting it (this cycle)
    silenced_by: Tuple[str, ...] = ()  # the active silences muting it (this cycle)
    keep_firing_since: float = 0.0  # first evaluation without it, while keep_firing_for holds it
    # per inhibit rule: (matches its source side, matches its target side); labels never change
    sides: Dict["InhibitRule", Tuple[bool, bool]] = field(default_factory=dict, repr=False, compare=False)
    # the value its annotations were rendered for (None: not rendered by this engine yet). Kept on
    # the alert, so the memo ends with it: an alert that resolves and fires again is rendered anew
    rendered_for: Optional[float] = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def to_doc(self) -> dict:
        return {k: getattr(self, k) for k in ("rule", "labels", "source", "annotations", "state", "active_at",
                                               "value", "last_seen", "last_sent", "inhibited", "keep_firing_since")}

    @classmethod
    def from_doc(cls, doc: dict) -> "Alert":
        known = {f.name for f in dataclasses.fields(cls)}
        doc = {k: v for k, v in doc.items() if k in known}  # a field an older agent saved and we dropped
        doc["source"] = tuple(tuple(kv) for kv in doc["source"])
        return cls(**doc)


MAX_ALERTS_PER_RULE = 20_000  # a rule without a group limit: label values a target churns cannot grow alert state
RETIRED_SERIES = "llm_agent_target_gone"  # the targets let go, as the collector set says
SAVE_EVERY = 60.0  # seconds: how stale a restored alert's value and last_seen may be after kill -9


def _lasting(alert: Alert) -> Tuple:
    """What of an alert must be in the database as soon as it changes: all but the value, the
    time it was last seen and the annotations (which quote the value and are rendered again
    after a restart)."""
    return (alert.state, alert.active_at, alert.last_sent, alert.inhibited, alert.keep_firing_since,
            tuple(alert.labels.items()))


def fingerprint(labels: Dict[str, str]) -> str:
    """A stable id for a label set: the dedup key receivers see. Every active alert asks for
    its own every cycle, so results are remembered (bounded)."""
    key = tuple(sorted(labels.items()))
    found = _FINGERPRINTS.get(key)
    if found is None:
        if len(_FINGERPRINTS) >= 50_000:
            _FINGERPRINTS.clear()
        found = _FINGERPRINTS[key] = sha256_hex(json.dumps([list(kv) for kv in key]), 16)
    return found


_FINGERPRINTS: Dict[Tuple[Tuple[str, str], ...], str] = {}


@dataclass(frozen=True)
class Notification:
    """A state change to deliver: firing (also repeats) or resolved."""

    status: str
    alert: Alert
    at: float


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching `source` fires, alerts matching `target` with the same
    values of `equal` are held back (Alertmanager's inhibit_rules)."""

    source: Tuple[Matcher, ...]
    target: Tuple[Matcher, ...]
    equal: Tuple[str, ...]


class SeriesIndex:
    """Does a series still carry an alert's source labels? Each series is listed under each of
    its label pairs; an alert is checked against the series under its rarest pair only. Many
    alerts clearing at once cost alerts + series, not alerts x series (12,000 flipping series
    made a cycle 19 s)."""

    def __init__(self, series: Optional[Sequence[Tuple[Tuple[str, str], ...]]]):
        self.everything = series is None
        self.any = bool(series)
        self.postings: Dict[Tuple[str, str], List[frozenset]] = {}
        for labels in series or ():
            pairs = frozenset(labels)
            for pair in labels:
                self.postings.setdefault(pair, []).append(pairs)

    def holds(self, source: Tuple[Tuple[str, str], ...]) -> bool:
        if self.everything:
            return True
        if not source:
            return self.any
        smallest: List[frozenset] = []
        for i, pair in enumerate(source):
            found = self.postings.get(pair)
            if found is None:
                return False  # no series carries this pair
            if i == 0 or len(found) < len(smallest):
                smallest = found
        wanted = frozenset(source)
        return any(wanted <= labels for labels in smallest)


class Engine:
    """Evaluates every rule against the History at time t and returns the notifications due.

    One rule never affects another: an evaluation error or any exception is counted against
    that rule (`failures`), a template that fails to render becomes Prometheus' `<error
    expanding template: ...>` text (`template_errors`) and the alert still fires, and once
    `budget` seconds of evaluation are spent in a cycle the remaining rules wait for the next
    one (`skipped`), where they go first."""

    def __init__(self, rules: Sequence[Union[AnyRule, Group]], history: History, inhibit: Sequence[InhibitRule] = (),
                 no_data_timeout: float = 600.0, store=None, budget: float = math.inf,
                 previous: Optional["Engine"] = None, timer: Callable[[], float] = time.perf_counter,
                 step: float = 60.0, max_samples: float = 5_000_000, template_context: Context = NO_CONTEXT,
                 max_reach: float = math.inf):
        loose = [r for r in rules if not isinstance(r, Group)]
        self.groups = ([Group("rules", loose)] if loose else []) + [g for g in rules if isinstance(g, Group)]
        self.rules: List[AnyRule] = [r for g in self.groups for r in g.rules]
        self._group_of = {r.key: g for g in self.groups for r in g.rules}
        self._group_due: Dict[str, float] = {}  # group name -> when it last ran
        self.step = step  # a subquery's default step: the evaluation interval, as in Prometheus
        # $externalLabels and $externalURL; each expansion adds a `query` bound to its evaluation time
        self.template_context = template_context
        self._template_queries: Dict[str, object] = {}  # parsed `query` texts, bounded
        self.max_reach = max_reach  # how far back a template's written-out query may keep series
        self._rule_budget: Optional[Budget] = None  # the rule being evaluated: its templates' queries share it
        self.history = history
        self.inhibit = list(inhibit)
        # (labels, t) -> ids of the active silences matching them; none unless alerting sets it
        self.silencing: Callable[[Dict[str, str], float], Tuple[str, ...]] = \
            previous.silencing if previous is not None else (lambda labels, t: ())
        self.no_data_timeout = no_data_timeout
        self.store = store
        self.budget = budget
        self.max_samples = max_samples  # one rule's evaluation, as a query's ([history] query_max_samples)
        self.timer = timer
        self.alerts: Dict[str, Dict[str, Alert]] = {r.key: {} for r in self.rules if isinstance(r, Rule)}
        self.recorded: Dict[str, List[Tuple[Tuple[Tuple[str, str], ...], float]]] = {}  # record rule key -> samples
        self.exported: set = set()  # family names this cycle's snapshot already serves: not a record's to take
        # servers let go (a discovered server that is gone) -> why: their alerts resolve now, and none
        # starts while they are listed, except in the rules that read the list itself (LlmTargetGone)
        self.retired: Dict[str, str] = {}
        self.failures: Dict[str, int] = {}
        self.template_errors: Dict[str, int] = {}
        self.template_limits: Dict[str, int] = {}  # expansions stopped by a bound: steps, depth, output
        self.skipped: Dict[str, int] = {}
        self.last_duration = 0.0
        self.last_error: Dict[str, str] = {}
        self._origins = {r.key: {id(s) for s in label_sources(r.expr)} for r in self.rules}
        self._reads_retired = {r.key for r in self.rules if any(sel.name == RETIRED_SERIES for sel, _ in selectors(r.expr))}
        self._go_first: List[str] = []  # rules the budget skipped last cycle
        self._over_budget = 0  # cycles in a row that ran out of budget
        # fingerprint -> (rule, what matters of the doc, when written) as in the database
        self._saved: Dict[str, Tuple[str, Tuple, float]] = {}
        self._template_logged: Dict[Tuple[str, str], str] = {}
        self._register()
        if previous is not None:  # a reload: alert state carries over in memory, counters too
            self.alerts.update(previous.alerts)
            for by_rule in previous.alerts.values():
                for alert in by_rule.values():
                    alert.rendered_for = None  # templates may have changed: render everything once
            self._saved, due = previous.carried()
            self._group_due = dict(due)
            for mine, theirs in ((self.failures, previous.failures), (self.template_errors, previous.template_errors),
                                 (self.skipped, previous.skipped), (self.template_limits, previous.template_limits)):
                mine.update(theirs)
        elif store is not None:
            self._load()

    def carried(self) -> Tuple[Dict[str, Tuple[str, Tuple, float]], Dict[str, float]]:
        """What a reload's new engine carries over besides the alerts: what the database holds of
        them, and when each group last ran."""
        return self._saved, self._group_due

    def _register(self) -> None:
        self.history.clear_selectors()
        for rule in self.rules:
            for expr in [rule.expr, *self._template_queries_of(rule)]:
                for sel, rng in selectors(expr):
                    self.history.register(sel, rng)
        self.history.recorded_names = {r.name for r in self.rules if isinstance(r, RecordingRule)}

    # -- persistence ----------------------------------------------------------------------------

    def _load(self) -> None:
        with self.store.lock:
            rows = self.store.db.execute("SELECT fingerprint, rule, doc FROM alert_state").fetchall()
        for fp, rule_name, doc in rows:
            alert = Alert.from_doc(json.loads(doc))
            self.alerts.setdefault(rule_name, {})[alert.fingerprint] = alert
            self._saved[fp] = (rule_name, _lasting(alert), alert.last_seen)
        if rows:
            log.info("restored %d alert(s) from %s", len(rows), self.store.path)

    def _save(self) -> None:
        """Write the alerts that changed since the last save, and delete the ended ones. What
        moves every cycle (the value, when it was last seen, annotations quoting the value) is
        written with a state change or once every SAVE_EVERY seconds, not each cycle: a restart
        after kill -9 then sees at worst a minute-old value, against a transaction per cycle."""
        if self.store is None:
            return
        now = {a.fingerprint: a for by_rule in self.alerts.values() for a in by_rule.values()}
        changed = []
        saved = {}
        for fp, a in now.items():
            lasting = _lasting(a)
            before = self._saved.get(fp)
            if before is not None and before[:2] == (a.rule, lasting) and a.last_seen - before[2] < SAVE_EVERY:
                saved[fp] = before
                continue
            changed.append((fp, a.rule, json.dumps(a.to_doc())))
            saved[fp] = (a.rule, lasting, a.last_seen)
        gone = [(fp,) for fp in self._saved if fp not in now]
        if not changed and not gone:
            return  # no write, no fsync

        def work(db):
            db.executemany("DELETE FROM alert_state WHERE fingerprint=?", gone)
            db.executemany("INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?)", changed)

        if self.store.write("alert_state", work):  # else kept in memory, written again next cycle
            self._saved = saved
            self.store.recovered("alert_state")

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self, t: float) -> List[Notification]:
        start = self.timer()
        out: List[Notification] = []
        known = {r.key for r in self.rules}
        for rule_name in [n for n in self.alerts if n not in known]:  # rules removed by a reload
            for alert in self.alerts.pop(rule_name).values():
                if alert.state == "firing" and alert.last_sent:
                    alert.annotations["resolved_reason"] = "the rule was removed"
                    out.append(Notification("resolved", alert, t))
        cache: Dict[tuple, tuple] = {}
        first = set(self._go_first)
        due = self._due_rules(t)
        order = [r for r in due if r.key in first] + [r for r in due if r.key not in first]
        self._go_first = []
        for i, rule in enumerate(order):
            if self.timer() - start > self.budget:
                self._skip(order[i:])
                break
            out.extend(self._evaluate_isolated(rule, t, cache))
        else:
            self._over_budget = 0
        out = self._apply_inhibition(out, t)
        self._save()
        self.last_duration = self.timer() - start
        return out

    def _due_rules(self, t: float) -> List[AnyRule]:
        """The rules of every group whose interval has passed (a group without one: every cycle)."""
        out: List[AnyRule] = []
        for group in self.groups:
            last = self._group_due.get(group.name)
            # a little early is on time: cycles drift by milliseconds
            if group.interval and last is not None and t - last < group.interval * 0.98:
                continue
            self._group_due[group.name] = t - group.offset if last is None else t
            out.extend(group.rules)
        return out

    def _skip(self, rules: List[AnyRule]) -> None:
        self._go_first = [r.key for r in rules]
        for r in rules:
            self.skipped[r.name] = self.skipped.get(r.name, 0) + 1
        self._over_budget += 1
        if self._over_budget % 60 == 1:  # the first time, then every 60th cycle it goes on
            log.warning("rule evaluation took more than its %gs budget; %d rule(s) wait for the next cycle: %s",
                        self.budget, len(rules), ", ".join(self._go_first[:5]) + (" ..." if len(rules) > 5 else ""))

    def _evaluate_isolated(self, rule: AnyRule, t: float, cache: Dict[tuple, tuple]) -> List[Notification]:
        try:
            if isinstance(rule, RecordingRule):
                self._record(rule, t, cache)
                out: List[Notification] = []
            else:
                out = self._evaluate_rule(rule, t, cache)
        except EvalError as e:
            self._failed(rule, str(e), logging.WARNING)
            return []
        except Exception as e:  # a bug or a pathological input in one rule must not stop the others
            self._failed(rule, f"{type(e).__name__}: {e}", logging.ERROR)
            return []
        self.last_error.pop(rule.name, None)
        return out

    def _evaluator(self, rule: AnyRule, cache: Dict[tuple, tuple]) -> Evaluator:
        """Each rule under the sample budget and the cycle's time budget: one runaway rule is cut
        where it is, not after it has taken the cycle."""
        group = self._group_of.get(rule.key)
        # each rule gets the cycle's whole budget of its own (checked in real time as it works):
        # one that started late is not cut for the others' time, and a cycle takes at most two budgets
        return Evaluator(self.history, cache, step=(group.interval if group is not None and group.interval else self.step),
                         budget=Budget(self.max_samples, self.budget))

    def _record(self, rule: RecordingRule, t: float, cache: Dict[tuple, tuple]) -> None:
        """Evaluate a recording rule; its series go into the history now (the rules after it
        read them this cycle) and are kept for /metrics."""
        if rule.name in self.exported:
            self.recorded.pop(rule.key, None)
            raise EvalError(f"{rule.name} is already exported by a collector; a recording rule cannot serve it too")
        result = self._evaluator(rule, cache).eval(rule.expr, t)
        if isinstance(result, str) or not isinstance(result, (list, float)):
            raise EvalError("a recording rule's result must be an instant vector or a scalar")
        vector = [((), result)] if isinstance(result, float) else result
        samples = []
        for labels, value in vector:
            as_dict = {k: v for k, v in labels if k != "__name__"}
            as_dict.update(rule.labels)
            as_dict["__name__"] = rule.name
            samples.append((tuple(sorted(as_dict.items())), value))
        try:
            unique(samples)
        except EvalError:
            raise EvalError("vector contains metrics with the same labelset after applying rule labels") from None
        group = self._group_of.get(rule.key)
        if group is not None and group.limit and len(samples) > group.limit:
            self.recorded.pop(rule.key, None)
            raise EvalError(f"exceeded limit of {group.limit} with {len(samples)} series")
        self.recorded[rule.key] = samples
        self.history.record(rule.name, samples, t)

    def _failed(self, rule: AnyRule, message: str, level: int) -> None:
        self.failures[rule.name] = self.failures.get(rule.name, 0) + 1
        if self.last_error.get(rule.name) != message:  # once per distinct error, not every cycle
            log.log(level, "rule %s: %s", rule.name, message, extra={"ALERTNAME": rule.name})
        self.last_error[rule.name] = message

    def _render(self, rule: Rule, key: str, template: Template, labels: Dict[str, str], value: float,
                t: float) -> str:
        base = self.template_context
        context = Context(base.external_labels, base.external_url, lambda q: self._template_query(q, t))
        try:
            return template.render(labels, value, context)
        except Exception as e:  # TemplateError, or anything a label's value provokes
            self.template_errors[rule.name] = self.template_errors.get(rule.name, 0) + 1
            limit = getattr(e, "limit", None)
            if limit:
                self.template_limits[limit] = self.template_limits.get(limit, 0) + 1
            if self._template_logged.get((rule.name, key)) != str(e):
                self._template_logged[(rule.name, key)] = str(e)
                log.warning("rule %s: template %s: %s", rule.name, key, e, extra={"ALERTNAME": rule.name})
            return f"<error expanding template: {e}>"

    def _template_queries_of(self, rule: AnyRule) -> List[object]:
        """The written-out `query` expressions of a rule's templates, parsed: the history keeps what
        they read, as it keeps what rules read (a query built at run time finds only that)."""
        if not isinstance(rule, Rule):
            return []
        out: List[object] = []
        for template in [*rule.annotations.values(), *rule.label_templates.values()]:
            for text in template.queries():
                if reach_problem(text, self.max_reach):
                    continue  # not kept for it: a template cannot make the history hold a month in memory
                try:
                    out.append(parse_promql(text))
                except ValueError:
                    continue  # fails when it runs, as in Prometheus
        return out

    def _template_query(self, text: str, t: float) -> List[Tuple[Dict[str, str], float]]:
        """A template's `query`: the expression at the alert's evaluation time over the history,
        under the budget of the rule whose alert it expands (all its alerts' queries together: a
        rule with a thousand alerts cannot run a thousand budgets); a scalar is one sample without
        labels."""
        expr = self._template_queries.get(text)
        if expr is None:
            if len(self._template_queries) >= 256:  # texts built from label values cannot grow it
                self._template_queries.clear()
            expr = self._template_queries[text] = parse_promql(text)
        budget = self._rule_budget or Budget(self.max_samples, self.budget)
        value = Evaluator(self.history, {}, step=self.step, budget=budget).eval(expr, t)
        if isinstance(value, float):
            return [({}, value)]
        if isinstance(value, list) and not isinstance(value, Matrix):
            return [(dict(labels), v) for labels, v in value]
        raise EvalError("rule result is not a vector or scalar")

    def _evaluate_rule(self, rule: Rule, t: float, cache: Dict[tuple, tuple]) -> List[Notification]:
        evaluator = self._evaluator(rule, cache)
        self._rule_budget = evaluator.budget  # its templates' queries spend from the rule's own budget
        result = self._result(rule, evaluator.eval(rule.expr, t))
        active = self.alerts.setdefault(rule.key, {})
        retired = self.retired if rule.key not in self._reads_retired else {}
        seen = set()
        out: List[Notification] = []
        for labels, value in result:
            source = tuple(kv for kv in labels if kv[0] != "__name__")
            if retired and dict(source).get("server") in retired:
                continue  # its windows still hold its last samples: no alert starts from them
            alert_labels = self._labels(rule, dict(source), dict(labels), value, t)
            fp = fingerprint(alert_labels)
            seen.add(fp)
            alert = active.get(fp)
            if alert is None:
                alert = active[fp] = Alert(rule.key, alert_labels, source, {}, "pending", t, value, t)
            out.extend(self._still_holds(rule, alert, value, t, dict(labels)))
        index: Optional[SeriesIndex] = None  # built once, when an alert leaves the result
        for fp, alert in list(active.items()):
            if fp in seen:
                continue
            if alert.state == "firing" and not retired.get(alert.labels.get("server", "")) and index is None:
                index = self._series_index(rule, evaluator)
            ended = self._left(rule, alert, t, retired, index)
            if ended is not None:
                del active[fp]
                out.extend(ended)
        return out

    def _result(self, rule: Rule, value: object) -> List[Tuple[Tuple[Tuple[str, str], ...], float]]:
        """An alert rule's result as samples, within its group's limit (or MAX_ALERTS_PER_RULE)."""
        result: List[Tuple[Tuple[Tuple[str, str], ...], float]]
        if isinstance(value, float):  # a scalar expression: treat as one unlabelled sample
            result = [((), value)]
        elif isinstance(value, list) and not isinstance(value, Matrix):
            result = value
        else:
            raise EvalError("an alert rule's result must be an instant vector or a scalar")
        group = self._group_of.get(rule.key)
        limit = group.limit if group is not None and group.limit else MAX_ALERTS_PER_RULE
        if len(result) > limit:  # as a Prometheus group's limit: the rule fails, its alerts go
            self.alerts[rule.key] = {}
            raise EvalError(f"exceeded limit of {limit} with {len(result)} alerts")
        return result

    def _still_holds(self, rule: Rule, alert: Alert, value: float, t: float,
                     result_labels: Dict[str, str]) -> List[Notification]:
        """An alert whose condition holds this evaluation: rendered when its value moved, pending
        to firing after `for`, re-notified after `cooldown`."""
        # templates see the result's labels (its __name__ too, as in Prometheus; never the rule's own
        # labels) and the value: render again only when the value moved, or for a template that
        # queries (its answer moves on its own); a new alert, and every alert after a reload or a
        # restart, is rendered once; a failing template is tried (and counted) every time
        if alert.rendered_for is None or alert.rendered_for != value or rule.name in self.template_errors \
                or rule.queries:
            alert.annotations = {k: self._render(rule, k, tpl, result_labels, value, t)
                                 for k, tpl in rule.annotations.items()}
            if alert.labels.get("drill") == "true":  # a fire drill (llm-agent drill): every text says so
                alert.annotations = {k: f"DRILL: {v}" for k, v in alert.annotations.items()}
            alert.rendered_for = value
        alert.value, alert.last_seen, alert.keep_firing_since = value, t, 0.0
        if alert.state == "pending" and t - alert.active_at >= rule.for_:
            alert.state = "firing"
            return [Notification("firing", alert, t)]
        if alert.state == "firing" and rule.cooldown > 0 and alert.last_sent and t - alert.last_sent >= rule.cooldown:
            return [Notification("firing", alert, t)]
        return []

    def _left(self, rule: Rule, alert: Alert, t: float, retired: Dict[str, str],
              index: Optional["SeriesIndex"]) -> Optional[List[Notification]]:
        """An alert its rule's result no longer has: None while it is kept (keep_firing_for, or
        its series vanished and no_data_timeout has not passed), else what its end sends."""
        if alert.state == "pending":
            return []
        why = retired.get(alert.labels.get("server", "")) if retired else None
        if why is not None:
            alert.annotations["resolved_reason"] = why
            return [Notification("resolved", alert, t)]
        if rule.keep_firing_for > 0:  # Prometheus: measured from the first evaluation without it
            alert.keep_firing_since = alert.keep_firing_since or t
            if t - alert.keep_firing_since < rule.keep_firing_for:
                return None
        if index is not None and index.holds(alert.source):
            return [Notification("resolved", alert, t)]
        if t - alert.last_seen >= self.no_data_timeout:
            alert.annotations["resolved_reason"] = f"no data for {self.no_data_timeout:g}s: its series vanished"
            return [Notification("resolved", alert, t)]
        return None

    def _labels(self, rule: Rule, source: Dict[str, str], result_labels: Dict[str, str], value: float,
                t: float) -> Dict[str, str]:
        labels = dict(source)
        labels.update(rule.labels)
        for key, tpl in rule.label_templates.items():
            labels[key] = self._render(rule, key, tpl, result_labels, value, t)
        labels["alertname"] = rule.name
        if rule.severity is not None:
            labels.setdefault("severity", rule.severity)
        return labels

    def _series_index(self, rule: Rule, evaluator: Evaluator) -> "SeriesIndex":
        """The series this evaluation read through the selectors whose labels reach the result
        (not the ones that only filter), indexed so that each alert's check is a lookup."""
        origins = self._origins.get(rule.key)
        if not origins:
            return SeriesIndex(None)  # absent() and numbers: no series to wait for
        return SeriesIndex([labels for sel in origins for labels in evaluator.selected.get(sel, ())])

    def _apply_inhibition(self, notifications: List[Notification], t: float) -> List[Notification]:
        """Hold back what inhibition or a silence mutes. A held alert that was never announced
        is announced once nothing holds it and it still fires; the resolve of an announced
        alert is sent unless a silence mutes it (as Alertmanager's mute stage does)."""
        firing = [a for by_rule in self.alerts.values() for a in by_rule.values() if a.state == "firing"]
        for alert in firing:
            alert.inhibited, alert.inhibited_by = False, ""
            alert.silenced_by = self.silencing(alert.labels, t)
        for rule in self.inhibit:
            self._inhibit(rule, firing)
        out = []
        for n in notifications:
            if n.status == "firing" and (n.alert.inhibited or n.alert.silenced_by):
                continue
            if n.status == "resolved" and (not n.alert.last_sent or self.silencing(n.alert.labels, t)):
                continue  # never announced (held all along), or muted by a silence
            out.append(n)
        # an alert whose inhibition or silence ended while it still fires is announced now
        announced = {id(n.alert) for n in out}
        for alert in firing:
            if not alert.inhibited and not alert.silenced_by and not alert.last_sent and id(alert) not in announced:
                out.append(Notification("firing", alert, t))
        for n in out:
            if n.status == "firing":
                n.alert.last_sent = t
        return out

    @staticmethod
    def _inhibit(rule: InhibitRule, firing: List[Alert]) -> None:
        """Mark the alerts `rule` holds back. Sources are indexed by their `equal` values, so a
        storm of N alerts costs N lookups, not N * N comparisons. An alert matching both sides
        (two-sided) is held back only by a one-sided source: two alerts of the same kind do
        not silence each other, and an alert never silences itself."""
        one_sided: Dict[tuple, str] = {}  # equal values -> a source's fingerprint
        two_sided: Dict[tuple, str] = {}
        targets = []
        for alert in firing:
            key = tuple(alert.labels.get(k, "") for k in rule.equal)
            sides = alert.sides.get(rule)
            if sides is None:
                sides = alert.sides[rule] = (matches(rule.source, alert.labels), matches(rule.target, alert.labels))
            is_source, is_target = sides
            if is_source:
                (two_sided if is_target else one_sided).setdefault(key, alert.fingerprint)
            if is_target:
                targets.append((alert, key, is_source))
        for alert, key, two in targets:
            source = one_sided.get(key) or (two_sided.get(key) if not two else None)
            if source:
                alert.inhibited, alert.inhibited_by = True, source

    # -- reading ----------------------------------------------------------------------------------

    def active(self) -> List[Alert]:
        return [a for by_rule in self.alerts.values() for a in by_rule.values()]
