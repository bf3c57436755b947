"""Alerting, wired: each cycle's snapshot goes into the History, the Engine evaluates the
rules (silences and inhibition applied), the Router puts state changes in the Outbox, and the
Dispatcher delivers them. Silences are written through Alertmanager's API v2 (serve/
alertmanager_api.py), which this object owns with them."""

from __future__ import annotations

import logging
import os
import time
from typing import Dict, Iterable, List, Optional

from .config import Config
from .config.channels import kind_of
from .drill import Drills, is_drill
from .model import MetricFamily, Snapshot, counter, gauge
from .notify.base import Channel, iso
from .notify.dispatcher import Dispatcher
from .notify.outbox import Outbox
from .notify.router import Router
from .notify.silences import Silences
from .rules.engine import RETIRED_SERIES, Alert, Engine, Notification, Rule
from .rules.history import History
from .rules.loader import RuleSet, load_rules
from .serve.alertmanager_api import AlertmanagerAPI
from .store import Store
from .templates import Context
from .verdict import silence_doc

log = logging.getLogger(__name__)
DB_NAME = "state.db"


def resolve_state_dir(config: Config, environ: Optional[Dict[str, str]] = None) -> str:
    """The configured state directory if it can be written; else systemd's $STATE_DIRECTORY,
    else ~/.local/state/llm-agent (a user trying the agent out without root)."""
    env = os.environ if environ is None else environ
    wanted = config.agent.state_dir
    candidates = [wanted, env.get("STATE_DIRECTORY", "").split(":")[0],
                  os.path.join(env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "llm-agent")]
    for path in filter(None, candidates):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            if path != wanted:
                log.warning("state directory %s is not writable; using %s", wanted, path)
            return path
    raise OSError(f"no writable state directory: set [agent] state_dir (tried {wanted})")


def channels_from(config: Config) -> List[Channel]:
    out = []
    for d in config.notify:
        urls = ([d.url] if d.url else []) + list(d.urls)
        options = kind_of(d.type).options(d, {"Hostname": config.hostname, **config.alerting.external_labels})
        out.append(Channel(name=d.name, type=d.type, urls=urls, routing_key=d.routing_key,
                           password=d.auth_password or d.api_key, options=options, group_by=tuple(d.group_by),
                           group_wait=d.group_wait, group_interval=d.group_interval,
                           repeat_interval=d.repeat_interval, one_incident_per_group=d.one_incident_per_group,
                           severities=tuple(d.severities), matchers=tuple(d.matchers),
                           send_resolved=d.send_resolved, timeout=d.timeout, max_age=d.max_age,
                           hostname=config.hostname))
    return out


def template_context(config: Config) -> Context:
    """$externalLabels (the labels every alert to Alertmanager carries) and $externalURL."""
    url = config.alerting.external_url or f"http://{config.hostname}:{config.exporter.listen[1]}/"
    return Context({"Hostname": config.hostname, **config.alerting.external_labels}, url)


class Alerting:
    def __init__(self, config: Config, state_dir: str, clock=time.time, stacks=None):
        self.clock = clock
        self.stacks = stacks  # StackStore: py-spy summaries attached to a target's alerts
        self._stacks_sent: Dict[str, str] = {}  # alert fingerprint -> dump already announced
        self.store = Store(os.path.join(state_dir, DB_NAME))
        self.history = History()
        self.outbox = Outbox(self.store)
        self.silences = Silences(self.store, clock)
        ruleset = load_rules(config)
        channels = channels_from(config)
        resend = config.alerting.alertmanager_resend
        self.resend = resend
        self.engine = self._engine(config, ruleset, previous=None)
        self.router = Router(channels, self.outbox, resend)
        self.dispatcher = Dispatcher(self.outbox, channels, resend, self.clock).start()
        self.drills = Drills(clock, config.hostname)  # llm-agent drill: synthetic faults through all of this
        self.dispatcher.on_delivered = lambda channel, docs: self.drills.delivered(
            channel, [d.labels for d in docs if d.status == "firing" and is_drill(d.labels)])
        self._api_doc = self._build_api_doc()
        self._v2_alerts: List[dict] = []
        self._firing: List[dict] = []
        self.api = AlertmanagerAPI(self.silences, lambda: self._v2_alerts, lambda: [c.name for c in self.router.channels],
                                   clock, config.hostname, bool(config.exporter.basic_auth_users),
                                   config.exporter.api_write_from, lambda: _routes_yaml(self.router.channels))
        self.api.configure(bool(config.exporter.basic_auth_users), config.exporter.api_write_from,
                           config.exporter.allowed_hosts)
        self.api.rule_labels = self._rule_labels
        _log_loaded(ruleset, channels)

    def _rule_labels(self) -> List[Dict[str, str]]:
        """Each alert rule's own labels (what any alert of it carries), for refusing a silence
        that would match every alert of the host."""
        return [{**r.labels, "alertname": r.name, **({"severity": r.severity} if r.severity else {})}
                for r in self.engine.rules if isinstance(r, Rule)]

    def _engine(self, config: Config, ruleset: RuleSet, previous: Optional[Engine]) -> Engine:
        engine = Engine(ruleset.groups, self.history, ruleset.inhibit, config.alerting.no_data_timeout, self.store,
                        budget=config.alerting.evaluation_budget, previous=previous, step=config.interval,
                        max_samples=config.history.query_max_samples, template_context=template_context(config),
                        max_reach=config.alerting.memory_history)
        engine.silencing = self.silences.silencing
        return engine

    def configure(self, config: Config) -> None:
        """A reload: new rules and channels. Alert state, history, the outbox, the delivery
        workers (with what they are sending now) and every counter carry over: nothing is re-sent."""
        ruleset = load_rules(config)
        channels = channels_from(config)
        resend = config.alerting.alertmanager_resend
        self.resend = resend
        self.engine = self._engine(config, ruleset, previous=self.engine)
        self.router.configure(channels, resend)
        self.dispatcher.configure(channels, resend)
        self.api.configure(bool(config.exporter.basic_auth_users), config.exporter.api_write_from,
                           config.exporter.allowed_hosts)
        _log_loaded(ruleset, channels)

    def process(self, snapshot: Snapshot) -> None:
        """Evaluate the rules on this cycle's snapshot and queue what changed."""
        self.outbox.sync()  # what a full disk refused earlier, saved now if it can be
        self.silences.sync()
        self.router.grouper.sync()
        snapshot = snapshot.joined(self.drills.families())  # for the rules only: never exported or stored
        self.history.ingest(snapshot)
        self.engine.exported = {f.name for f in snapshot.families}
        self.engine.retired = {s.label("server"): f"{s.label('server')} is gone: its process exited and did not come "
                                                  "back, so the agent no longer watches it"
                               for s in snapshot.samples(RETIRED_SERIES)}
        notifications = self.engine.evaluate(snapshot.timestamp)
        notifications += self._attach_stacks(notifications, snapshot.timestamp)
        _log_transitions(notifications)
        self.router.route(notifications)
        active = self.engine.active()
        firing = {a.fingerprint for a in active if a.state == "firing"}
        held = {a.fingerprint for a in active if a.state == "firing" and (a.inhibited or a.silenced_by)}
        t = snapshot.timestamp
        self.router.flush(t, firing, held, lambda labels: bool(self.silences.silencing(labels, t)))
        self.router.resend_due(active, snapshot.timestamp)
        if self.drills.active():
            self.drills.observe((a.labels, a.state, [c.name for c in self.router.channels if self.router.selects(c, a)])
                                for a in active if is_drill(a.labels))
        # readers on other threads (the exporter's /api/v1/alerts) get this cycle's copy, never the live dicts
        self._api_doc = self._build_api_doc()
        self._v2_alerts = self._build_v2_alerts(snapshot.timestamp)
        self._firing = self._build_firing()

    def _attach_stacks(self, notifications: List[Notification], t: float) -> List[Notification]:
        """Add the latest py-spy summary of a hung or stalled server to its firing alerts. The
        dump runs in the background, so it may land after the alert was sent: then the alert
        is sent again, updated (receivers de-duplicate by its key)."""
        if self.stacks is None:
            return []
        pending = {id(n.alert) for n in notifications if n.status == "firing"}
        updates = []
        for alert in self.engine.active():
            server = alert.labels.get("server")
            dump = self.stacks.latest.get(server) if server else None
            if alert.state != "firing" or dump is None or not dump.path or dump.taken_at < alert.active_at - 60:
                continue
            alert.annotations["stacks"] = dump.summary
            alert.annotations["stacks_file"] = dump.path
            fp = alert.fingerprint
            if self._stacks_sent.get(fp) != dump.path:
                self._stacks_sent[fp] = dump.path
                if id(alert) not in pending and alert.last_sent and not alert.inhibited:
                    updates.append(Notification("firing", alert, t))
        return updates

    def recorded_families(self, taken: Iterable[str]) -> List[MetricFamily]:
        """The recording rules' latest results, one gauge family per `record` name. A name a
        collector exports already failed the rule (counted, logged once); one of the agent's
        own families in `taken` is left out here."""
        taken = set(taken)
        families: Dict[str, MetricFamily] = {}
        for rule in self.engine.rules:
            samples = self.engine.recorded.get(rule.key)
            if samples is None or rule.name in taken:
                continue
            samples = [(labels, value) for labels, value in samples if not is_drill(dict(labels))]
            fam = families.get(rule.name)
            if fam is None:
                fam = families[rule.name] = gauge(rule.name, "Recorded by the recording rule of that name.")
            seen = {s.labels for s in fam.samples}
            for labels, value in samples:
                as_dict = {k: v for k, v in labels if k != "__name__"}
                if tuple(sorted(as_dict.items())) not in seen:
                    fam.add(as_dict, value)
        return list(families.values())

    def families(self) -> List[MetricFamily]:
        engine, dispatcher, outbox = self.engine, self.dispatcher, self.outbox
        firing = gauge("llm_agent_alert_firing", "Alerts firing now (1), with their labels; inhibited ones included.")
        states = gauge("llm_agent_alerts", "Active alerts by state.")
        counts = {"pending": 0, "firing": 0}
        for alert in self.real_alerts():
            counts[alert.state] += 1
            if alert.state == "firing":
                firing.add({**alert.labels, "inhibited": "true" if alert.inhibited else "false"}, 1)
        for state, n in counts.items():
            states.add({"state": state}, n)
        channels = list(dispatcher.channels)
        now = self.clock()
        depth = gauge("llm_agent_outbox_depth", "Notifications waiting in the outbox, by channel.")
        oldest = gauge("llm_agent_outbox_oldest_age_seconds", "Age of the oldest notification waiting, by channel.")
        waiting = outbox.waiting()
        for channel in channels:
            n, first = waiting.get(channel, (0, now))
            depth.add({"channel": channel}, n)
            oldest.add({"channel": channel}, max(0.0, now - first))
        results = counter("llm_agent_notifications_total", "Notification deliveries by channel and result "
                                                            "(delivered, retried, failed, dead).")
        for (channel, result), n in sorted(dispatcher.results.items()):
            results.add({"channel": channel, "result": result}, n)
        writes = self.store.write_errors
        groups = gauge("llm_agent_alert_groups", "Alert groups a channel holds (waiting or sent and still firing).")
        held = self.router.grouper.counts()
        for channel in channels:
            groups.add({"channel": channel}, held.get(channel, 0))
        silences = gauge("llm_agent_silences", "Silences by state (active, pending, expired), maintenance included.")
        for state, n in sorted(self.silences.counts(now).items()):
            silences.add({"state": state}, n)
        return [firing, states, groups, silences,
                _per(counter("llm_agent_api_writes_refused_total",
                             "Writes to the Alertmanager API (silences) refused: not from loopback or "
                             "[exporter] api_write_from, without basic auth."), "reason", self.api.refused, ["not_allowed"]),
                _per(counter("llm_agent_rule_evaluation_failures_total", "Rule evaluations that failed, by rule."),
                     "rule", engine.failures),
                _per(counter("llm_agent_rule_template_errors_total",
                             "Templates that failed to render (sent as <error expanding template>), by rule."),
                     "rule", engine.template_errors),
                _per(counter("llm_agent_template_limits_total",
                             "Template expansions stopped by a bound (20,000 steps, 50 calls deep, 64 KiB), by limit."),
                     "limit", engine.template_limits, ["depth", "output", "steps"]),
                _per(counter("llm_agent_rule_evaluations_skipped_total",
                             "Rule evaluations left for the next cycle because the evaluation budget was spent, by rule."),
                     "rule", engine.skipped),
                depth, oldest, results,
                _per(counter("llm_agent_outbox_enqueued_total", "Notifications created, by channel."),
                     "channel", outbox.enqueued, channels),
                _per(counter("llm_agent_outbox_coalesced_total",
                             "Repeats of a waiting notification folded into it, by channel."),
                     "channel", outbox.coalesced, channels),
                _per(counter("llm_agent_outbox_dropped_total",
                             "Notifications dropped because a channel's queue was full, by channel."),
                     "channel", outbox.overflowed, channels),
                gauge("llm_agent_rule_evaluation_duration_seconds", "Time the last evaluation of every rule took.")
                .add({}, engine.last_duration),
                gauge("llm_agent_history_series", "Series kept in the rules' history.").add({}, self.history.series_count),
                gauge("llm_agent_history_samples", "Samples kept in the rules' history.").add({}, self.history.sample_count()),
                _per(counter("llm_agent_history_dropped_series_total",
                             "New series the rules' history refused because every series it holds of that metric "
                             "(or in all) is live, by metric."), "metric", self.history.dropped),
                counter("llm_agent_history_evicted_series_total",
                        "Stale series removed from the rules' history early to make room for new ones.")
                .add({}, self.history.evicted),
                counter("llm_agent_outbox_write_errors_total", "Failed writes to the outbox database (a full disk, say).")
                .add({}, writes.get("outbox", 0)),
                counter("llm_agent_state_write_errors_total", "Failed writes of alert state to the database.")
                .add({}, writes.get("alert_state", 0)),
                counter("llm_agent_silence_write_errors_total", "Failed writes of silences to the database (kept in "
                                                                "memory and retried each cycle).")
                .add({}, writes.get("silences", 0)),
                counter("llm_agent_alert_group_write_errors_total", "Failed writes of alert groups to the database "
                                                                    "(kept in memory and retried each cycle).")
                .add({}, writes.get("alert_groups", 0))]

    def real_alerts(self) -> List[Alert]:
        """The active alerts but a fire drill's: what the history, the report and the agent's own
        series count."""
        return [a for a in self.engine.active() if not is_drill(a.labels)]

    def api_alerts(self) -> dict:
        """Prometheus' /api/v1/alerts shape, as of the last evaluation (safe from any thread)."""
        return self._api_doc

    def _build_api_doc(self) -> dict:
        alerts = [{"labels": dict(a.labels), "annotations": dict(a.annotations), "state": a.state,
                   "activeAt": iso(a.active_at), "value": repr(a.value)} for a in self.engine.active()]
        return {"status": "success", "data": {"alerts": alerts}}

    def firing(self) -> List[dict]:
        """The firing alerts as the verdict reads them (verdict.judge), as of the last evaluation."""
        return self._firing

    def _build_firing(self) -> List[dict]:
        active = self.engine.active()
        names = {a.fingerprint: a.labels.get("alertname", "?") for a in active}
        out = []
        for a in active:
            if a.state != "firing":
                continue
            silences = [s for s in (self.silences.get(sid) for sid in a.silenced_by) if s is not None]
            silence = max(silences, key=lambda s: s.ends_at) if silences else None  # the one that holds it longest
            out.append({"labels": dict(a.labels), "summary": a.annotations.get("summary", ""),
                        "silence": silence_doc(silence),
                        "inhibited_by": names.get(a.inhibited_by, a.inhibited_by) if a.inhibited else ""})
        return out

    def _build_v2_alerts(self, t: float) -> List[dict]:
        """The firing alerts as Alertmanager's API v2 shows them (silences are applied on
        request, so a new one shows at once), each with the channels that would get it."""
        out = []
        for a in self.engine.active():
            if a.state != "firing":
                continue
            receivers = [c.name for c in self.router.channels if self.router.wants(c, a, "firing")]
            out.append({"labels": dict(a.labels), "annotations": dict(a.annotations), "startsAt": iso(a.active_at),
                        "updatedAt": iso(t), "endsAt": iso(t + 4 * self.resend), "fingerprint": a.fingerprint,
                        "receivers": receivers, "inhibited_by": a.inhibited_by})
        return out

    def maintenance(self) -> List[dict]:
        """Active maintenance windows: target ("" = the whole host), until, comment, id."""
        return [{"target": s.target, "until": s.ends_at, "comment": s.comment, "id": s.id}
                for s in self.silences.maintenance()]

    def close(self, drain: float = 5.0) -> None:
        self.dispatcher.stop(drain)
        self.store.close()


def _routes_yaml(channels: List[Channel]) -> str:
    """/api/v2/status' config.original: the channels as an Alertmanager-shaped summary (no URL
    or key: they are secrets)."""
    lines = ["# llm-agent: [[notify]] channels (secrets left out)", "route:", "  receiver: " + (
        channels[0].name if channels else "none"), "receivers:"]
    lines += [f"- name: {c.name}  # {c.type}" for c in channels] or ["- name: none"]
    return "\n".join(lines) + "\n"


def _log_loaded(ruleset: RuleSet, channels: List[Channel]) -> None:
    log.info("alerting: %d alert rule(s), %d recording rule(s), %d channel(s)", len(ruleset.alerts),
             len(ruleset.records), len(channels))


LOGGED_PER_CYCLE = 10  # a storm logs this many transitions a cycle, then one line with the rest


def _log_transitions(notifications: List[Notification]) -> None:
    """One line per alert that fired or resolved (journal fields ALERTNAME, TARGET, GPU), at
    most LOGGED_PER_CYCLE a cycle so that a storm cannot flood the journal."""
    for n in notifications[:LOGGED_PER_CYCLE]:
        labels = n.alert.labels
        where = ", ".join(f"{k}={labels[k]}" for k in ("server", "gpu", "device", "mountpoint") if k in labels)
        extra = {"ALERTNAME": labels.get("alertname", "")}
        if "server" in labels:
            extra["TARGET"] = labels["server"]
        if "gpu" in labels:
            extra["GPU"] = labels["gpu"]
        log.info("alert %s %s%s (%s)", labels.get("alertname", "?"), n.status, f" on {where}" if where else "",
                 labels.get("severity", ""), extra=extra)
    if len(notifications) > LOGGED_PER_CYCLE:
        rest = notifications[LOGGED_PER_CYCLE:]
        firing = sum(1 for n in rest if n.status == "firing")
        log.info("... and %d more alert transitions this cycle (%d firing, %d resolved)", len(rest), firing,
                 len(rest) - firing)


def _per(family: MetricFamily, label: str, counts: Dict[str, int], always: Iterable[str] = ()) -> MetricFamily:
    """One sample per key of `counts` (and a zero for each of `always` not in it)."""
    for key in sorted(set(counts) | set(always)):
        family.add({label: key}, counts.get(key, 0))
    return family
