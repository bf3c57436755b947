"""Scrape an inference server's /metrics and pass it through with a `server` label.

This is the generic collector (vLLM's `vllm:*`, SGLang's `sglang:*`, anything Prometheus-
shaped) and the base of the llama.cpp one. Besides passthrough it derives what no server
exports: whether the target is up, how long the scrape took, restarts from counter resets, and
for hang and stall detection whether requests are in flight and tokens came out (from the
engine's own series, as engines.toml names them). Tokens per second are worked out later, from
the engine-neutral counters (engines.py), so every engine gets them the same way.
"""

from __future__ import annotations

import math

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

from ..config import TargetConfig
from ..expfmt import parse_text
from ..expfmt.parse import LabelSets, ParseResult, scrub
from ..model import COUNTER, CarryOver, Labels, MetricFamily, Problem, Sample, counter, gauge
from .http import FetchError, HttpClient, Response, credentials
from .lifecycle import TargetLife
from .liveness import Liveness
from .engines import engine_sources, source_total
from ..plugins import Context, register_target_kind
from .sanitize import LimitExceeded, Limits, check_limits, sanitize

NO_ANSWER = ("refused", "connect", "timeout")  # FetchError reasons where nothing answered
OWN = "llm_agent_"  # the agent's own families (a target's passthrough cannot use the prefix)


def own_series_error(labels: Labels, limits: Limits) -> str:
    """Why a series the agent made from a target's strings breaks the target's limits ("": none)."""
    if limits.label_limit and len(labels) > limits.label_limit:
        return "label_limit"
    if limits.label_value_length_limit and any(len(v) > limits.label_value_length_limit for _, v in labels):
        return "label_value_length_limit"
    return ""
TEXT_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
# What liveness reads, per engine: requests in flight (busy) and the generated-token counter
# (progress); the engine-neutral table's sources, so a new engine is a row there, not code here.
BUSY_SOURCES = engine_sources("llm_agent_requests_running")
WAITING_SOURCES = engine_sources("llm_agent_requests_waiting")
PROGRESS_SOURCES = engine_sources("llm_agent_generation_tokens_total")
# the counters an engine that works moves (a wedged one answers /health and moves none of them)
PROGRESS_COUNTERS = (("generated tokens", PROGRESS_SOURCES),
                     ("prompt tokens", engine_sources("llm_agent_prompt_tokens_total")),
                     ("finished requests", engine_sources("llm_agent_requests_finished_total")),
                     ("engine steps", engine_sources("llm_agent_engine_steps_total")))


def public_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def relabel(families: List[MetricFamily], extra: Labels,
            memo: Optional[CarryOver[Labels, Labels]] = None) -> List[MetricFamily]:
    """Prefix every sample's labels with `extra` (the `server` label and static labels). A
    label the server already uses is kept as `exported_<name>`, as Prometheus does; if that
    is taken too, `exported_exported_<name>`, and so on. `memo` keeps the results from the
    target's last scrape, so its series keep the same label tuples cycle after cycle."""
    names = {k for k, _ in extra}
    if memo is not None:
        memo.next_round()
    for fam in families:
        out = []
        for s in fam.samples:
            final = memo.get(s.labels) if memo is not None else None
            if final is None:
                final = extra + _exported(s.labels, names)
                if memo is not None:
                    memo.put(s.labels, final)
            out.append(Sample(s.name, final, s.value))
        fam.samples = out
    if memo is not None:
        memo.end_round()
    return families


def _exported(own: Labels, names: set) -> Labels:
    if not any(k in names for k, _ in own):
        return own
    taken = names | {k for k, _ in own}
    renamed = []
    for k, v in own:
        if k in names:
            new = "exported_" + k
            while new in taken:
                new = "exported_" + new
            taken.add(new)
            k = new
        renamed.append((k, v))
    return tuple(renamed)


# a body kept to compare with the next cycle's at most (llama-server's: ~2.6 KB; vLLM's moves every scrape):
# with its parse, ~150 KB a target at most, ~5 MB at 32 targets
CHECKED_BODY_MAX = 64 << 10


class _Checked:
    """A scrape's body and what it said once parsed and sanitized: an idle server's next body
    is the same to the byte (its counters did not move), and is not parsed again. The
    families are kept as tuples and handed out as new families each cycle, because what
    follows (retype, relabel, a router's merge) sets their fields."""

    __slots__ = ("body", "_families", "dropped", "scraped", "kept", "parse_errors", "problem")

    def __init__(self, body: bytes, families: List[MetricFamily], dropped: Dict[str, int], scraped: int,
                 parse_errors: int, problem: str):
        self.body = body  # the last body read (kept only for a target with one)
        self._families = [(f.name, f.type, f.help, tuple(f.samples)) for f in families]
        self.dropped = dropped
        self.scraped = scraped
        self.kept = sum(len(f.samples) for f in families)
        self.parse_errors = parse_errors
        self.problem = problem

    def families(self) -> List[MetricFamily]:
        return [MetricFamily(name, mtype, help_, list(samples)) for name, mtype, help_, samples in self._families]


@dataclass
class Signals:
    """What one collect cycle learned for hang and stall detection; made fresh each cycle and
    passed down explicitly, so each flag has one owner: the cycle."""

    health_deadline: float = math.inf  # in: when this cycle's health request must give up (liveness)
    health_timed_out: bool = False
    metrics_timed_out: bool = False  # /health answered, /metrics did not (llama-server)
    busy: Optional[bool] = None  # requests in progress, when the server says
    progressed: bool = False  # the generated-token counter moved
    queued: Optional[bool] = None  # requests running or waiting, when the server says
    progress: Dict[str, float] = field(default_factory=dict)  # the progress counters it exports, by name


class OpenMetricsCollector:
    """Generic passthrough collector for one target."""

    foreign = True  # passes a target's families through: merged after the agent's own
    kind = "openmetrics"

    def __init__(self, target: TargetConfig, client: Optional[HttpClient] = None,
                 max_bytes: int = 16 << 20, clock: Callable[[], float] = time.monotonic,
                 liveness: Optional[Liveness] = None, budget: float = 0.0, life: Optional[TargetLife] = None):
        self.target = target
        self.life = life
        # all of a cycle's requests must end inside the runner's collector timeout, or their
        # results (a timeout is a result too) would be thrown away with the late collector
        self.timeout = min(target.timeout, budget) if budget > 0 else target.timeout
        self.liveness = liveness
        self.name = f"target:{target.name}"
        self.max_bytes = max_bytes
        self.clock = clock
        headers = {"Accept": TEXT_ACCEPT}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        self.client = client or HttpClient(target.url, headers, clock)
        self.secrets = credentials(headers.get("Authorization", ""))  # ours, as sent: scrubbed from what it echoes
        self.labels: Labels = (("server", target.name),) + tuple(sorted(target.labels.items()))
        self.problems: List[Problem] = []
        self._generated: Optional[float] = None  # the generated-token counter at the last scrape
        self.limits = Limits(target.sample_limit, target.label_limit, target.label_name_length_limit,
                             target.label_value_length_limit)
        self._dropped: Dict[str, int] = {}  # series sanitize() refused, by reason
        self._counters: Dict[Tuple[str, Labels], float] = {}
        self._errors: Dict[str, int] = {}
        self._parse_errors = 0
        self.restarts = 0
        self._label_sets: Dict[str, LabelSets] = {}  # per metrics path: parsed once (expfmt.parse)
        self._checked: Optional[_Checked] = None  # the last body and what it said (scrape_metrics)
        self._relabeled: CarryOver[Labels, Labels] = CarryOver()
        self._down: Optional[FetchError] = None  # why this cycle's scrape failed (down_problem)
        self._samples_scraped = self._samples_kept = 0  # this cycle's passthrough, before and after sanitize

    # -- helpers for subclasses -------------------------------------------------------------

    def get(self, path: str, deadline: float, ok_statuses: Tuple[int, ...] = (200,)) -> Response:
        """Fetch `path` on the target within what is left of this cycle's deadline."""
        return self.client.get(path, max(0.05, deadline - self.clock()), self.max_bytes, ok_statuses)

    def problem(self, severity: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(severity, f"target {self.target.name}", message, fix))

    def count_error(self, reason: str) -> None:
        self._errors[reason] = self._errors.get(reason, 0) + 1

    def down_problem(self, err: FetchError) -> None:
        proc = self.liveness.process.current() if self.liveness is not None and self.liveness.process else None
        if proc is not None and err.reason == "timeout":  # alive behind the port, but silent: not "down"
            try:
                state = proc.status()
            except Exception:  # gone meanwhile
                state = "?"
            how = "stopped (SIGSTOP?)" if state == "stopped" else f"alive ({state})"
            self.problem("critical", f"{public_url(self.target.url)} does not answer: {err}; its process "
                                     f"(pid {proc.pid}) is {how}",
                         ("send it SIGCONT (kill -CONT " + str(proc.pid) + ")" if state == "stopped" else
                          f"it may be hung: `llm-agent stacks {self.target.name}` shows a Python server's stacks") +
                         "; restart it if it does not recover")
            return
        self._down = err  # said once this cycle's state is known (_say_down)

    def _say_down(self, err: FetchError, state: str) -> None:
        url = public_url(self.target.url)
        if state == "never_up":  # a guessed address, or a server still starting: not an outage
            self.problem("warning", f"waiting for it: nothing has answered at {url} since the agent began watching "
                                    f"({err})", f"start the server, or point [[targets]] url for {self.target.name!r} "
                                                "at it; LlmTargetNeverUp warns if it never does")
        elif state == "restarting":
            self.problem("info", f"restarting: systemd stopped or restarted its unit; it pages if it is not back "
                                 f"within [health] restart_grace ({err})")
        else:
            self.problem("critical", f"{url} is down: {err}",
                         f"start the server, or point [[targets]] url for {self.target.name!r} at it")

    # -- the collect cycle -------------------------------------------------------------------

    def collect(self) -> List[MetricFamily]:
        self.problems = []
        start = self.clock()
        deadline = start + self.timeout
        out: List[MetricFamily] = []
        signals = Signals(self.liveness.health_deadline(start, deadline) if self.liveness is not None else deadline)
        self._down = None
        self._samples_scraped = self._samples_kept = 0
        up = self.scrape(deadline, out, signals)
        self._bound_own(out)
        out.extend(self._target_families(up, self.clock() - start))
        # an HTTP error is an answer: the server is there, if unwell
        answered = up or (self._down is not None and self._down.reason not in NO_ANSWER)
        state = self.life.observe(up, answered) if self.life is not None else ("up" if up else "down")
        if self.life is not None:
            out.extend(self.life.families())
        if self._down is not None:
            self._say_down(self._down, state)
        if self.liveness is not None:  # the health request is the cycle's first: sent at `start`
            self.liveness.observe(signals.health_timed_out, signals.metrics_timed_out, signals.busy, signals.progressed,
                                  asked_at=start)
            self.liveness.observe_progress(up, signals.queued, signals.progress)
            out.extend(self.liveness.families())
            self.problems.extend(self.liveness.problems())
        return out

    def scrape(self, deadline: float, out: List[MetricFamily], signals: "Signals") -> bool:
        """Fetch everything from the target into `out`, noting what liveness needs in
        `signals`; return whether it is up."""
        try:
            passthrough = self.scrape_metrics(min(deadline, signals.health_deadline), signals)
        except FetchError as e:
            self.count_error(e.reason)
            self.down_problem(e)
            signals.health_timed_out = e.reason == "timeout"  # /metrics is this server's only health check
            return False
        out.extend(passthrough)
        return True

    def scrape_metrics(self, deadline: float, signals: "Signals",
                       sources: Optional[Sequence[Tuple[str, Labels]]] = None) -> List[MetricFamily]:
        """GET the metrics path (or each of `sources`: a path and the labels its series get,
        as a llama.cpp router's per-model bodies), parse, retype, derive rates and resets, relabel."""
        if sources is None:
            path = self.target.metrics_path
            body = self.get(path, deadline).body
            checked = self._checked
            if checked is not None and checked.body == body:  # an idle server's: what it said last cycle
                self._parse_errors += checked.parse_errors
            else:
                checked = self._check([(path, body, ())])
                self._checked = checked if len(body) <= CHECKED_BODY_MAX else None
            del body  # a big body need not outlive the parse
        else:  # a body at a time, each dropped once parsed: a router's models times max_bytes is not held
            checked = self._check((path, self.get(path, deadline).body, extra) for path, extra in sources)
        if checked.problem:
            self.problem("warning", checked.problem, "the lines were skipped; report it to the server's maintainers")
        self._samples_scraped, self._samples_kept = checked.scraped, checked.kept
        self.count_dropped(checked.dropped, "series dropped from /metrics", "they would have broken the exposition or "
                                                                           "claimed the agent's own names")
        families = checked.families()
        self._derive(families, signals)
        return relabel(families, self.labels, self._relabeled)

    def _check(self, bodies: Iterable[Tuple[str, bytes, Labels]]) -> "_Checked":
        """Parse, merge, retype and sanitize bodies (path, body, the labels its series get);
        a limit passed fails the scrape (FetchError)."""
        merged: Dict[str, MetricFamily] = {}
        parse_errors, first_error, last = 0, "", b""
        for path, last, extra in bodies:
            parsed = self._parse(path, last, len(extra))
            if parsed.errors:
                parse_errors += len(parsed.errors)
                first_error = first_error or parsed.errors[0]
            for fam in parsed.families:
                if extra:
                    fam.samples = [Sample(s.name, s.labels + extra, s.value) for s in fam.samples]
                if fam.name in merged:
                    merged[fam.name].samples.extend(fam.samples)
                else:
                    merged[fam.name] = fam
        self._parse_errors += parse_errors
        scraped = sum(len(f.samples) for f in merged.values())
        families, dropped = sanitize(self.retype(list(merged.values())))
        problem = f"{parse_errors} malformed /metrics line(s), first: {first_error}" if parse_errors else ""
        return _Checked(last, families, dropped, scraped, parse_errors, problem)

    def _parse(self, path: str, body: bytes, added_labels: int) -> ParseResult:
        limits = self.limits
        if path not in self._label_sets and len(self._label_sets) >= 64:
            self._label_sets.clear()  # a router's models came and went: start over rather than grow
        sets = self._label_sets.get(path) or self._label_sets.setdefault(path, LabelSets(self.secrets))
        parsed = parse_text(body.decode("utf-8", "replace"), limits.sample_limit, sets)
        try:
            if parsed.exceeded:
                raise LimitExceeded("sample_limit", f"more than sample_limit {limits.sample_limit} samples")
            check_limits(parsed.families, limits, len(self.labels) + added_labels)
        except LimitExceeded as e:  # as Prometheus: the whole scrape fails, with its reason
            raise FetchError(e.reason, f"{e}; raise [[targets]] {e.reason} for {self.target.name!r} "
                                       "if the server really exports that much") from None
        return parsed

    def _bound_own(self, families: List[MetricFamily]) -> None:
        """The agent's own families made from what the target says (Ollama's /api/ps, a router's
        /models, /props, /slots) under the target's limits, as its /metrics is: a series whose
        label is over label_value_length_limit (a 5 MB model name) or that has more than
        label_limit labels is dropped, and past sample_limit series the rest are; each counted
        in llm_agent_target_series_dropped_total. (Passthrough was checked as it was parsed.)"""
        limits, left = self.limits, self.limits.sample_limit or None
        secrets = [sec for sec in self.secrets if len(sec) >= 4]  # a model "named" after our key
        dropped: Dict[str, int] = {}
        for fam in families:
            if not fam.name.startswith(OWN):
                continue
            kept = []
            for sample in fam.samples:
                clean = scrub(sample.labels, secrets)
                if clean is not sample.labels:
                    sample = Sample(sample.name, clean, sample.value)
                reason = own_series_error(sample.labels, limits)
                if not reason and left is not None:
                    reason = "sample_limit" if left <= 0 else ""
                    left -= 1
                if reason:
                    dropped[reason] = dropped.get(reason, 0) + 1
                else:
                    kept.append(sample)
            if len(kept) != len(fam.samples):
                fam.samples = kept
        self.count_dropped(dropped, "of the agent's series about this target dropped", "the target reports more, "
                           "or longer names, than its limits allow ([[targets]] sample_limit, label_value_length_limit)")

    def models_within_limits(self, names: List[str], series_each: int, source: str) -> List[str]:
        """The model names whose series fit the target's limits, decided before any series is
        made (a list of 100,000 models costs a cycle if every one becomes series first): a name
        over label_value_length_limit is left out, and past sample_limit the rest are, each
        counted as its `series_each` dropped series."""
        limits = self.limits
        dropped: Dict[str, int] = {}
        if limits.label_value_length_limit:
            fit = [n for n in names if len(n) <= limits.label_value_length_limit]
            if len(fit) != len(names):
                dropped["label_value_length_limit"] = series_each * (len(names) - len(fit))
            names = fit
        room = limits.sample_limit // series_each if limits.sample_limit else len(names)
        if len(names) > room:
            dropped["sample_limit"] = series_each * (len(names) - room)
            names = names[:room]
        self.count_dropped(dropped, f"series of models {source} lists left out", "it lists more models, or longer "
                           "names, than the target's limits allow ([[targets]] sample_limit, label_value_length_limit)")
        return names

    def count_dropped(self, dropped: Dict[str, int], what: str, why: str) -> None:
        """Series left out, by reason: counted in llm_agent_target_series_dropped_total, and said."""
        for reason, n in dropped.items():
            self._dropped[reason] = self._dropped.get(reason, 0) + n
        if dropped:
            self.problem("warning", f"{sum(dropped.values())} {what} "
                                    f"({', '.join(f'{r}: {n}' for r, n in sorted(dropped.items()))})",
                         f"{why}; llm_agent_target_series_dropped_total counts them")

    def retype(self, families: List[MetricFamily]) -> List[MetricFamily]:
        """Hook: correct types a server declares wrongly (llama.cpp's gauges-as-counters)."""
        return families

    def _derive(self, families: List[MetricFamily], signals: "Signals") -> None:
        by_name = {f.name: f for f in families}
        if self._detect_reset(families):
            self.restarts += 1
        busy = source_total(by_name, BUSY_SOURCES)
        if busy is not None:
            signals.busy = busy > 0
        waiting = source_total(by_name, WAITING_SOURCES)
        if busy is not None or waiting is not None:
            signals.queued = (busy or 0) + (waiting or 0) > 0
        for name, sources in PROGRESS_COUNTERS:
            total = source_total(by_name, sources)
            if total is not None:
                signals.progress[name] = total
        generated = source_total(by_name, PROGRESS_SOURCES)
        if generated is not None and self._generated is not None:
            signals.progressed = generated != self._generated
        self._generated = generated

    def _detect_reset(self, families: List[MetricFamily]) -> bool:
        current = {(s.name, s.labels): s.value for f in families if f.type == COUNTER for s in f.samples}
        reset = any(current.get(k, v) < v for k, v in self._counters.items())
        self._counters = current
        return reset

    def _target_families(self, up: bool, duration: float) -> List[MetricFamily]:
        lbl = dict(self.labels)
        fams = [
            gauge("llm_agent_target_up", "Whether the target answered its last scrape (1) or not (0).")
            .add({**lbl, "kind": self.kind}, 1 if up else 0),
            gauge("llm_agent_target_scrape_duration_seconds", "How long the last scrape of the target took.")
            .add(lbl, duration),
            counter("llm_agent_target_restarts_total", "Restarts of the target detected from its counters going backwards.")
            .add(lbl, self.restarts),
            counter("llm_agent_target_parse_errors_total", "Malformed lines skipped in the target's /metrics bodies.")
            .add(lbl, self._parse_errors),
            gauge("llm_agent_target_scrape_samples_scraped", "Samples in the target's last /metrics answer.")
            .add(lbl, self._samples_scraped),
            gauge("llm_agent_target_scrape_samples_kept", "Samples of the target's last /metrics answer served, after "
                                                          "the ones that would break the exposition were dropped.")
            .add(lbl, self._samples_kept),
        ]
        errors = counter("llm_agent_target_scrape_errors_total", "Failed requests to the target, by reason "
                                                                 "(sample_limit and label limits included).")
        for reason, n in sorted(self._errors.items()):
            errors.add({**lbl, "reason": reason}, n)
        fams.append(errors)
        dropped = counter("llm_agent_target_series_dropped_total",
                          "Series from the target's /metrics dropped because they would break the exposition or "
                          "use the agent's own names, by reason.")
        for reason, n in sorted(self._dropped.items()):
            dropped.add({**lbl, "reason": reason}, n)
        fams.append(dropped)
        return fams

    def close(self) -> None:
        self.client.close()


# The families several target kinds make: one name, one help text wherever they come from.
def target_ready() -> MetricFamily:
    return gauge("llm_agent_target_ready", "Whether the target's /health says it is ready to serve (1) or not (0).")


def target_info() -> MetricFamily:
    return gauge("llm_agent_target_info", "The model the target serves and its build, from /props; always 1.")


def target_slots() -> MetricFamily:
    return gauge("llm_agent_target_slots", "The target's slots by state (busy, idle), from /slots.")


def metrics_enabled() -> MetricFamily:
    return gauge("llm_agent_target_metrics_enabled",
                 "Whether the target serves /metrics (0: llama-server started without --metrics).")


def model_loaded() -> MetricFamily:
    return gauge("llm_agent_model_loaded", "Models loaded now (1), by the server's own list.")


def target_builder(cls):
    def build(ctx: Context, target: TargetConfig, liveness: Optional[Liveness], life: Optional[TargetLife] = None):
        return cls(target, max_bytes=ctx.config.agent.max_response_bytes, clock=ctx.monotonic, liveness=liveness,
                   budget=ctx.config.collector_timeout * 0.9, life=life)
    return build


register_target_kind("openmetrics")(target_builder(OpenMetricsCollector))
