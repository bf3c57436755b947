"""Routing by severity, matchers and send_resolved; Alertmanager re-sends while firing."""

import json

from agent.notify.base import Channel
from agent.notify.outbox import Outbox
from agent.notify.router import Router
from agent.rules.engine import Alert, Notification
from agent.store import Store


def alert(name="GpuHot", severity="warning", **labels):
    return Alert(name, {"alertname": name, "severity": severity, **labels}, (), {}, "firing", 1.0, 1.0, 1.0,
                 last_sent=1.0)


def queued(outbox):
    with outbox.store.lock:
        return [(c, s, json.loads(p)["labels"]["alertname"]) for c, s, p in
                outbox.store.db.execute("SELECT channel, status, payload FROM outbox ORDER BY id")]


def test_routing(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    channels = [Channel("pager", "pagerduty", routing_key="k", severities=("critical",)),
                Channel("llama-team", "slack", urls=["http://x/y"], matchers=("server=~llama.*",), send_resolved=False),
                Channel("all", "webhook", urls=["http://x/z"])]
    router = Router(channels, outbox)
    router.route([Notification("firing", alert("Down", "critical", server="llama-1"), 5.0),
                  Notification("firing", alert("Hot", "warning", gpu="0"), 5.0),
                  Notification("resolved", alert("Slow", "warning", server="llama-2"), 5.0)])
    assert queued(outbox) == [("pager", "firing", "Down"), ("llama-team", "firing", "Down"), ("all", "firing", "Down"),
                              ("all", "firing", "Hot"), ("all", "resolved", "Slow")]


def test_alertmanager_gets_firing_alerts_again_each_resend_interval(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("am", "alertmanager", urls=["http://am:9093"])], outbox, resend=60)
    a = alert("Down", "critical")
    router.route([Notification("firing", a, 100.0)])
    router.resend_firing([a], 130.0)
    assert len(queued(outbox)) == 1  # not yet (and a pending repeat is coalesced anyway)
    outbox.finish(outbox.take("am", 10))  # delivered
    router.resend_firing([a], 161.0)
    assert queued(outbox) == [("am", "firing", "Down")]
