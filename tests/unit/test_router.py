"""Routing by severity, matchers and send_resolved; grouping with Alertmanager's semantics
(group_by, group_wait, group_interval, repeat_interval, durable across a restart); Alertmanager
channels get each alert and re-sends while firing."""

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
    """(channel, status, the alerts' names and states) of every outbox row, in order."""
    out = []
    with outbox.store.lock:
        rows = outbox.store.db.execute("SELECT channel, status, payload FROM outbox ORDER BY id").fetchall()
    for c, s, p in rows:
        doc = json.loads(p)
        alerts = doc["alerts"] if "alerts" in doc else [doc]
        out.append((c, s, ",".join(f"{a['labels']['alertname']}{'' if a['status'] == 'firing' else '/r'}" for a in alerts)))
    return out


def delivered(outbox):
    """Every row waiting on the Alertmanager channel, taken and finished as a delivery does."""
    rows = []
    while True:
        taken = outbox.take("am", 10)
        if not taken:
            return rows
        outbox.finish(taken)
        rows += taken


def test_routing(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    channels = [Channel("pager", "pagerduty", routing_key="k", severities=("critical",)),
                Channel("llama-team", "slack", urls=["http://x/y"], matchers=("server=~llama.*",), send_resolved=False),
                Channel("all", "webhook", urls=["http://x/z"])]
    router = Router(channels, outbox)
    router.route([Notification("firing", alert("Down", "critical", server="llama-1"), 5.0),
                  Notification("firing", alert("Hot", "warning", gpu="0"), 5.0),
                  Notification("resolved", alert("Slow", "warning", server="llama-2"), 5.0)])
    router.flush(5.0)
    assert queued(outbox) == [("pager", "firing", "Down"), ("llama-team", "firing", "Down"), ("all", "firing", "Down"),
                              ("all", "firing", "Hot"), ("all", "resolved", "Slow/r")]


def gpus_hot(n, t, status="firing"):
    return [Notification(status, alert("GpuHot", "critical", gpu=str(i)), t) for i in range(n)]


def test_eight_gpus_at_once_are_one_message_and_later_changes_wait_for_the_group_interval(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("slack", "slack", urls=["http://x/y"])], outbox)  # defaults: by alertname, 0s, 1m, 4h
    router.route(gpus_hot(8, 100.0))
    router.flush(100.0)
    assert queued(outbox) == [("slack", "firing", ",".join(["GpuHot"] * 8))], "the first page leaves at once"
    outbox.finish(outbox.take("slack", 10))
    router.route(gpus_hot(1, 110.0, "resolved"))
    router.flush(110.0)
    assert queued(outbox) == [], "a change waits for the group interval"
    router.flush(160.0)
    [(_, status, names)] = queued(outbox)
    assert status == "firing" and names.count("GpuHot/r") == 1 and names.count("GpuHot") == 8
    outbox.finish(outbox.take("slack", 10))
    router.flush(160.0 + 4 * 3600 - 1)
    assert queued(outbox) == []
    router.flush(160.0 + 4 * 3600)
    assert queued(outbox) == [("slack", "firing", ",".join(["GpuHot"] * 7))], "repeated after repeat_interval"


def test_group_wait_gathers_alerts_and_survives_a_restart(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    channel = Channel("mail", "email", options={}, group_wait=30.0, group_by=("alertname", "server"))
    router = Router([channel], Outbox(store))
    router.route([Notification("firing", alert("Down", "critical", server="a"), 100.0)])
    router.flush(100.0)
    router.route([Notification("firing", alert("Down", "critical", server="a", replica="2"), 110.0),
                  Notification("firing", alert("Down", "critical", server="b"), 110.0)])
    router.flush(110.0)
    store.close()  # a crash in group_wait: the groups are in the database
    store = Store(str(tmp_path / "s.db"))
    outbox = Outbox(store)
    router = Router([channel], outbox)
    router.flush(129.0)
    assert queued(outbox) == []
    router.flush(130.0)
    assert queued(outbox) == [("mail", "firing", "Down,Down")], "server=a's two alerts, after its group_wait"
    router.flush(140.0)
    assert [q[2] for q in queued(outbox)] == ["Down,Down", "Down"], "then server=b's, 30 s after it came"


def test_send_resolved_false_hides_resolves_but_the_group_learns_them(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("s", "slack", urls=["http://x/y"], send_resolved=False, group_interval=0.0)], outbox)
    router.route(gpus_hot(2, 100.0))
    router.flush(100.0)
    router.route(gpus_hot(2, 105.0, "resolved"))
    router.flush(105.0)
    assert [q[2] for q in queued(outbox)] == ["GpuHot,GpuHot"], "no resolve sent"
    router.flush(105.0 + 5 * 3600)
    assert len(queued(outbox)) == 1, "and nothing repeated: the group is gone"


def test_every_label_groups_each_alert_alone_and_held_alerts_are_left_out(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("w", "webhook", urls=["http://x/z"], group_by=("...",), group_interval=0.0)], outbox)
    hot = gpus_hot(3, 100.0)
    router.route(hot)
    router.flush(100.0, held={hot[2].alert.fingerprint})
    assert [q[2] for q in queued(outbox)] == ["GpuHot", "GpuHot"]


def test_an_alert_that_stops_firing_without_a_resolve_is_sent_resolved(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("w", "webhook", urls=["http://x/z"], group_interval=0.0)], outbox)
    hot = gpus_hot(2, 100.0)
    router.route(hot)
    router.flush(100.0, firing_now={n.alert.fingerprint for n in hot})
    router.flush(105.0, firing_now={hot[0].alert.fingerprint})  # the other's rule was removed by a reload
    assert [q[2] for q in queued(outbox)] == ["GpuHot,GpuHot", "GpuHot,GpuHot/r"]


def test_alertmanager_gets_firing_alerts_again_each_resend_interval(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("am", "alertmanager", urls=["http://am:9093"])], outbox, resend=60)
    a = alert("Down", "critical")
    router.route([Notification("firing", a, 100.0)])
    router.resend_due([a], 130.0)
    assert len(queued(outbox)) == 1  # not yet (and a pending repeat is coalesced anyway)
    outbox.finish(outbox.take("am", 10))  # delivered
    router.resend_due([a], 161.0)
    assert queued(outbox) == [("am", "firing", "Down")]


def test_alertmanager_gets_a_resolve_again_each_resend_interval_for_fifteen_minutes(tmp_path):
    """An Alertmanager whose clock is behind the agent's keeps a firing alert whose resolve it
    got (endsAt in its future): a later copy, same endsAt, ends it."""
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("am", "alertmanager", urls=["http://am:9093"])], outbox, resend=60)
    a = alert("Down", "critical")
    router.route([Notification("firing", a, 100.0)])
    outbox.finish(outbox.take("am", 10))
    router.route([Notification("resolved", a, 130.0)])
    router.resend_due([], 150.0)
    assert queued(outbox) == [("am", "resolved", "Down/r")]  # one row: the copy waits for the first
    router.resend_due([], 190.0)
    assert len(queued(outbox)) == 1  # a waiting copy is replaced, never queued twice
    sent = outbox.take("am", 10)
    outbox.finish(sent)
    assert json.loads(sent[0].payload)["ends_at"] == 130.0  # when it ended, not when it was re-sent
    times = [t for t in range(191, 130 + 1200, 10) if (router.resend_due([], float(t)), delivered(outbox))[1]]
    assert times == [251, 311, 371, 431, 491, 551, 611, 671, 731, 791, 851, 911, 971]  # none 15 min after the end


def test_an_alert_firing_again_stops_its_resolve_being_re_sent(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("am", "alertmanager", urls=["http://am:9093"])], outbox, resend=60)
    a = alert("Down", "critical")
    router.route([Notification("firing", a, 100.0), Notification("resolved", a, 130.0)])
    router.route([Notification("firing", a, 140.0)])
    delivered(outbox)
    router.resend_due([], 500.0)
    assert queued(outbox) == []


def test_a_reload_that_makes_the_channel_another_kind_stops_its_resolves_being_re_sent(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "s.db")))
    router = Router([Channel("am", "alertmanager", urls=["http://am:9093"])], outbox, resend=60)
    a = alert("Down", "critical")
    router.route([Notification("firing", a, 100.0), Notification("resolved", a, 130.0)])
    delivered(outbox)
    router.configure([Channel("am", "webhook", urls=["http://x/z"])], 60)  # a group's channel now
    router.resend_due([], 500.0)
    assert queued(outbox) == []


def test_groups_survive_a_full_disk_in_memory_and_are_saved_when_it_returns(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    outbox = Outbox(store)
    channel = Channel("slack", "slack", urls=["http://x/y"], group_wait=60.0)
    router = Router([channel], outbox)
    real = store.write
    store.write = lambda kind, work: False if kind == "alert_groups" else real(kind, work)
    router.route(gpus_hot(3, 100.0))
    router.flush(100.0)
    assert router.grouper.counts() == {"slack": 1}, "held in memory"
    store.write = real
    router.grouper.sync()
    store.close()
    again = Router([channel], Outbox(Store(str(tmp_path / "s.db"))))
    again.flush(160.0)
    assert queued(again.outbox) == [("slack", "firing", "GpuHot,GpuHot,GpuHot")], "saved once the disk took it"
