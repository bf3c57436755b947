"""Alerting, wired: each cycle's snapshot goes into the History, the Engine evaluates the
rules, the Router puts state changes in the Outbox, and the Dispatcher delivers them."""

from __future__ import annotations

import logging
import os
import time
from typing import Dict, List, Optional

from .config import Config
from .model import MetricFamily, Snapshot, counter, gauge
from .notify.base import Channel, iso
from .notify.dispatcher import Dispatcher
from .notify.outbox import Outbox
from .notify.router import Router
from .rules.engine import Engine, Notification
from .rules.history import History
from .rules.loader import load_rules
from .store import Store

log = logging.getLogger(__name__)
DB_NAME = "state.db"


def resolve_state_dir(config: Config, environ: Optional[Dict[str, str]] = None) -> str:
    """The configured state directory if it can be written; else systemd's $STATE_DIRECTORY,
    else ~/.local/state/llm-agent (a user trying the agent out without root)."""
    env = os.environ if environ is None else environ
    wanted = config.get("agent.state_dir")
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
    for d in config.sections["notify"]:
        urls = ([d["url"]] if d["url"] else []) + list(d["urls"])
        out.append(Channel(name=d["name"], type=d["type"], urls=urls, routing_key=d["routing_key"],
                           severities=tuple(d["severities"]), matchers=tuple(d["matchers"]),
                           send_resolved=d["send_resolved"], timeout=d["timeout"], max_age=d["max_age"],
                           hostname=config.hostname))
    return out


class Alerting:
    def __init__(self, config: Config, state_dir: str, clock=time.time, stacks=None):
        self.clock = clock
        self.stacks = stacks  # StackStore: py-spy summaries attached to a target's alerts
        self._stacks_sent: Dict[str, str] = {}  # alert fingerprint -> dump already announced
        self.store = Store(os.path.join(state_dir, DB_NAME))
        self.history = History()
        self.outbox = Outbox(self.store)
        self.engine: Engine
        self.router: Router
        self.dispatcher: Optional[Dispatcher] = None
        self.configure(config)

    def configure(self, config: Config) -> None:
        """(Re)build rules and channels; alert state, history and the outbox carry over."""
        rules, inhibit = load_rules(config)
        self.engine = Engine(rules, self.history, inhibit, config.get("alerting.no_data_timeout"), self.store)
        channels = channels_from(config)
        resend = config.get("alerting.alertmanager_resend")
        if self.dispatcher is not None:
            self.dispatcher.stop(drain=0)
        self.router = Router(channels, self.outbox, resend)
        self.dispatcher = Dispatcher(self.outbox, channels, resend, self.clock).start()
        log.info("alerting: %d rule(s), %d channel(s)", len(rules), len(channels))

    def process(self, snapshot: Snapshot) -> None:
        """Evaluate the rules on this cycle's snapshot and queue what changed."""
        self.history.ingest(snapshot)
        notifications = self.engine.evaluate(snapshot.timestamp)
        notifications += self._attach_stacks(notifications, snapshot.timestamp)
        self.router.route(notifications)
        self.router.resend_firing(self.engine.active(), snapshot.timestamp)

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

    def families(self) -> List[MetricFamily]:
        firing = gauge("llm_agent_alert_firing", "Alerts firing now (1), with their labels; inhibited ones included.")
        states = gauge("llm_agent_alerts", "Active alerts by state.")
        counts = {"pending": 0, "firing": 0}
        for alert in self.engine.active():
            counts[alert.state] += 1
            if alert.state == "firing":
                firing.add({**alert.labels, "inhibited": "true" if alert.inhibited else "false"}, 1)
        for state, n in counts.items():
            states.add({"state": state}, n)
        failures = counter("llm_agent_rule_evaluation_failures_total", "Rule evaluations that failed, by rule.")
        for rule, n in sorted(self.engine.failures.items()):
            failures.add({"rule": rule}, n)
        now = self.clock()
        depth = gauge("llm_agent_outbox_depth", "Notifications waiting in the outbox, by channel.")
        oldest = gauge("llm_agent_outbox_oldest_age_seconds", "Age of the oldest notification waiting, by channel.")
        waiting = self.outbox.waiting()  # one query per cycle for both series
        for channel in self.dispatcher.channels if self.dispatcher else {}:
            n, first = waiting.get(channel, (0, now))
            depth.add({"channel": channel}, n)
            oldest.add({"channel": channel}, max(0.0, now - first))
        results = counter("llm_agent_notifications_total", "Notification deliveries by channel and result "
                                                            "(delivered, retried, failed, dead).")
        for (channel, result), n in sorted((self.dispatcher.results if self.dispatcher else {}).items()):
            results.add({"channel": channel, "result": result}, n)
        return [firing, states, failures, depth, oldest, results,
                gauge("llm_agent_rule_evaluation_duration_seconds", "Time the last evaluation of every rule took.")
                .add({}, self.engine.last_duration),
                gauge("llm_agent_history_series", "Series kept in the rules' history.").add({}, self.history.series_count),
                gauge("llm_agent_history_samples", "Samples kept in the rules' history.").add({}, self.history.sample_count()),
                counter("llm_agent_history_dropped_series_total", "Series not kept because the history was full (100,000 series).")
                .add({}, self.history.dropped_series),
                counter("llm_agent_outbox_write_errors_total", "Failed writes to the outbox database (a full disk, say).")
                .add({}, self.outbox.write_errors)]

    def api_alerts(self) -> dict:
        """Prometheus' /api/v1/alerts shape."""
        alerts = [{"labels": a.labels, "annotations": a.annotations, "state": a.state,
                   "activeAt": iso(a.active_at), "value": repr(a.value)} for a in self.engine.active()]
        return {"status": "success", "data": {"alerts": alerts}}

    def close(self, drain: float = 5.0) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop(drain)
        self.store.close()
