"""The alert state machine on a History fed by hand: for, keep_firing_for, cooldown,
resolve, the no-data hold, inhibition, templates, and state across a restart."""

import json

import pytest

from agent.config import parse_config
from agent.rules.engine import Engine, InhibitRule
from agent.rules.history import History
from agent.rules.loader import build_rule
from agent.promql.parser import parse_matcher
from agent.store import Store


def rule(name, expr, **kw):
    text = f'[[rules]]\nname = "{name}"\nexpr = \'{expr}\'\n' + "".join(f"{k} = {v}\n" for k, v in kw.items())
    return build_rule(parse_config(text).rules[0])


class World:
    """A history we write series into, one cycle at a time (with staleness like a snapshot)."""

    def __init__(self):
        self.history = History()
        self.t = 1000.0

    def cycle(self, engine, series):
        return [(n.status, n.alert.labels["alertname"], n.alert.labels.get("server", ""))
                for n in self.notifications(engine, series)]

    def notifications(self, engine, series):
        from agent.model import MetricFamily, Sample, Snapshot

        fams = {}
        for name, labels, value in series:
            fams.setdefault(name, MetricFamily(name, "gauge", "")).samples.append(Sample(name, tuple(labels.items()), value))
        self.history.ingest(Snapshot(self.t, tuple(fams.values())))
        notes = engine.evaluate(self.t)
        self.t += 5
        return notes


def up(server, value):
    return ("llm_agent_target_up", {"server": server}, value)


def test_for_holds_pending_then_fires_once_then_resolves():
    w = World()
    e = Engine([rule("Down", "llm_agent_target_up == 0", **{"for": '"10s"'})], w.history)
    assert w.cycle(e, [up("a", 0)]) == []
    assert e.active()[0].state == "pending"
    assert w.cycle(e, [up("a", 0)]) == []
    assert w.cycle(e, [up("a", 0)]) == [("firing", "Down", "a")]
    assert w.cycle(e, [up("a", 0)]) == []  # once, not every cycle
    assert w.cycle(e, [up("a", 1)]) == [("resolved", "Down", "a")]
    assert e.active() == []


def test_pending_that_clears_never_notifies():
    w = World()
    e = Engine([rule("Down", "llm_agent_target_up == 0", **{"for": '"1m"'})], w.history)
    w.cycle(e, [up("a", 0)])
    assert w.cycle(e, [up("a", 1)]) == []
    assert e.active() == []


def test_keep_firing_for():
    w = World()
    e = Engine([rule("Down", "llm_agent_target_up == 0", keep_firing_for='"10s"')], w.history)
    assert w.cycle(e, [up("a", 0)]) == [("firing", "Down", "a")]
    assert w.cycle(e, [up("a", 1)]) == []
    assert w.cycle(e, [up("a", 1)]) == []
    assert w.cycle(e, [up("a", 1)]) == [("resolved", "Down", "a")]


def test_cooldown_renotifies_while_firing():
    w = World()
    e = Engine([rule("Down", "llm_agent_target_up == 0", cooldown='"10s"')], w.history)
    notes = [w.cycle(e, [up("a", 0)]) for _ in range(5)]
    assert notes == [[("firing", "Down", "a")], [], [("firing", "Down", "a")], [], [("firing", "Down", "a")]]


def test_a_vanished_series_holds_the_alert_instead_of_resolving():
    w = World()
    e = Engine([rule("Hot", "gpu_temp > 85")], w.history, no_data_timeout=12)
    t0 = [("gpu_temp", {"gpu": "0"}, 90.0), ("gpu_temp", {"gpu": "1"}, 50.0)]
    assert w.cycle(e, t0) == [("firing", "Hot", "")]
    # GPU 0's series vanishes (lost GPU): no resolve while GPU 1 still reports
    assert w.cycle(e, [("gpu_temp", {"gpu": "1"}, 50.0)]) == []
    assert w.cycle(e, [("gpu_temp", {"gpu": "1"}, 50.0)]) == []
    assert e.active()[0].state == "firing"
    alert = e.active()[0]
    # after no_data_timeout (12s since last seen) it resolves, and says why
    assert w.cycle(e, [("gpu_temp", {"gpu": "1"}, 50.0)]) == [("resolved", "Hot", "")]
    assert "no data" in alert.annotations["resolved_reason"]


def test_series_back_and_normal_resolves_at_once():
    w = World()
    e = Engine([rule("Hot", "gpu_temp > 85")], w.history)
    w.cycle(e, [("gpu_temp", {"gpu": "0"}, 90.0)])
    w.cycle(e, [])
    assert w.cycle(e, [("gpu_temp", {"gpu": "0"}, 60.0)]) == [("resolved", "Hot", "")]


def test_absent_fires_for_a_missing_series_and_resolves_when_it_appears():
    w = World()
    e = Engine([rule("NoUp", 'absent(llm_agent_target_up{server="a"})')], w.history)
    assert w.cycle(e, [up("b", 1)]) == [("firing", "NoUp", "a")]
    assert w.cycle(e, [up("a", 1)]) == [("resolved", "NoUp", "a")]


def test_labels_and_annotations_are_templated():
    w = World()
    r = rule("Hot", "gpu_temp > 85", severity='"critical"', labels='{ team = "infra" }',
             annotations='{ summary = "GPU {{ $labels.gpu }} at {{ $value | humanize }} C", '
                         'pct = "{{ $value | humanizePercentage }}" }')
    e = Engine([r], w.history)
    w.cycle(e, [("gpu_temp", {"gpu": "3"}, 91.25)])
    alert = e.active()[0]
    assert alert.labels == {"gpu": "3", "team": "infra", "alertname": "Hot", "severity": "critical"}
    assert alert.annotations == {"summary": "GPU 3 at 91.25 C", "pct": "9125%"}


def test_an_alert_that_fires_again_with_the_same_value_has_its_annotations():
    """Issue 26: the render memo outlived the alert, so the second firing went out with none."""
    w = World()
    e = Engine([rule("Down", "llm_agent_target_up == 0", annotations='{ summary = "{{ $labels.server }} is down" }')],
               w.history)
    for _ in range(3):
        notes = [n for n in w.notifications(e, [up("a", 0)]) if n.status == "firing"]
        assert [n.alert.annotations for n in notes] == [{"summary": "a is down"}]
        assert [n.status for n in w.notifications(e, [up("a", 1)])] == ["resolved"]


def test_a_reload_renders_carried_alerts_with_the_new_templates():
    w = World()
    e = Engine([rule("Down", "llm_agent_target_up == 0", annotations='{ summary = "old" }')], w.history)
    w.cycle(e, [up("a", 0)])
    e2 = Engine([rule("Down", "llm_agent_target_up == 0", annotations='{ summary = "new" }')], w.history, previous=e)
    w.cycle(e2, [up("a", 0)])
    assert e2.active()[0].annotations == {"summary": "new"}


def test_down_target_inhibits_its_other_alerts_but_not_others():
    w = World()
    rules = [rule("LlmTargetDown", "llm_agent_target_up == 0"), rule("Slow", "tokens_per_second < 10")]
    inhibit = [InhibitRule((parse_matcher("alertname=LlmTargetDown"),),
                           (parse_matcher("alertname!=LlmTargetDown"), parse_matcher("server=~.+")), ("server",))]
    e = Engine(rules, w.history, inhibit)
    notes = w.cycle(e, [up("a", 0), up("b", 1), ("tokens_per_second", {"server": "a"}, 1.0),
                        ("tokens_per_second", {"server": "b"}, 2.0)])
    assert sorted(notes) == [("firing", "LlmTargetDown", "a"), ("firing", "Slow", "b")]
    # the target comes back, still slow: now its Slow alert is announced
    notes = w.cycle(e, [up("a", 1), up("b", 1), ("tokens_per_second", {"server": "a"}, 1.0),
                        ("tokens_per_second", {"server": "b"}, 2.0)])
    assert sorted(notes) == [("firing", "Slow", "a"), ("resolved", "LlmTargetDown", "a")]


def test_inhibited_alert_that_clears_sends_no_resolve():
    w = World()
    rules = [rule("LlmTargetDown", "llm_agent_target_up == 0"), rule("Slow", "tokens_per_second < 10")]
    inhibit = [InhibitRule((parse_matcher("alertname=LlmTargetDown"),), (parse_matcher("alertname=Slow"),), ("server",))]
    e = Engine(rules, w.history, inhibit)
    w.cycle(e, [up("a", 0), ("tokens_per_second", {"server": "a"}, 1.0)])
    notes = w.cycle(e, [up("a", 0), ("tokens_per_second", {"server": "a"}, 50.0)])
    assert notes == []


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_firing_alert_is_not_paged_again_after_a_restart(tmp_path):
    w = World()
    s = Store(str(tmp_path / "state.db"))
    e = Engine([rule("Down", "llm_agent_target_up == 0")], w.history, store=s)
    assert w.cycle(e, [up("a", 0)]) == [("firing", "Down", "a")]
    s.close()
    s = Store(str(tmp_path / "state.db"))  # the agent restarts: new history, same database
    w2 = World()
    w2.t = w.t + 60
    e2 = Engine([rule("Down", "llm_agent_target_up == 0")], w2.history, store=s)
    assert e2.active()[0].state == "firing"
    assert w2.cycle(e2, [up("a", 0)]) == []  # still down: no second page
    s.close()


def test_a_firing_alert_whose_value_moves_is_written_once_a_minute_not_every_cycle(tmp_path):
    """A transaction (and fsync) per cycle per alert was the engine's largest cost at steady
    state; state changes are still written at once, the moving value within SAVE_EVERY."""
    from agent.rules.engine import SAVE_EVERY

    w = World()
    s = Store(str(tmp_path / "state.db"))
    writes = []
    real = s.write
    s.write = lambda kind, work: writes.append(w.t) or real(kind, work)
    e = Engine([rule("Hot", "temp > 80")], w.history, store=s)
    cycles = int(5 * SAVE_EVERY / 5)  # five minutes at 5 s
    for i in range(cycles):
        w.cycle(e, [("temp", {"gpu": "0"}, 81.0 + i)])
    assert 5 <= len(writes) <= 7, f"{len(writes)} writes in {cycles} cycles: the first, then one a minute"
    written = s.db.execute("SELECT doc FROM alert_state").fetchone()[0]
    assert w.t - 5 - json.loads(written)["last_seen"] < SAVE_EVERY
    before = len(writes)
    w.cycle(e, [("temp", {"gpu": "0"}, 20.0)])
    assert len(writes) == before + 1 and s.db.execute("SELECT count(*) FROM alert_state").fetchone()[0] == 0, \
        "a resolve is written at once"
    s.close()


def test_alert_that_cleared_while_the_agent_was_down_resolves(tmp_path):
    w = World()
    s = Store(str(tmp_path / "state.db"))
    e = Engine([rule("Down", "llm_agent_target_up == 0")], w.history, store=s)
    w.cycle(e, [up("a", 0)])
    s.close()
    s = Store(str(tmp_path / "state.db"))
    w2 = World()
    e2 = Engine([rule("Down", "llm_agent_target_up == 0")], w2.history, store=s)
    assert w2.cycle(e2, [up("a", 1)]) == [("resolved", "Down", "a")]
    s.close()


def test_a_removed_rule_resolves_its_firing_alerts(tmp_path):
    w = World()
    s = Store(str(tmp_path / "state.db"))
    e = Engine([rule("Down", "llm_agent_target_up == 0")], w.history, store=s)
    w.cycle(e, [up("a", 0)])
    e2 = Engine([rule("Other", "llm_agent_target_up == 5")], w.history, store=s)
    assert w.cycle(e2, [up("a", 0)]) == [("resolved", "Down", "a")]
    s.close()


def test_evaluation_error_keeps_state_and_counts():
    w = World()
    e = Engine([rule("Dup", "a + on(k) b")], w.history)
    w.cycle(e, [("a", {"k": "1", "x": "1"}, 1.0), ("a", {"k": "1", "x": "2"}, 1.0), ("b", {"k": "1"}, 1.0)])
    assert e.failures == {"Dup": 1} and "multiple matches" in e.last_error["Dup"]


def test_vanished_series_is_stale_for_instant_selectors_but_stays_in_ranges():
    from agent.model import MetricFamily, Sample, Snapshot
    from agent.promql.evaluator import Evaluator
    from agent.promql.parser import parse

    h = History()
    for sel, rng in [(parse("m"), 0.0), (parse("m[1m]").vector, 60.0)]:
        h.register(sel, rng)
    h.ingest(Snapshot(100.0, (MetricFamily("m", "gauge", "", [Sample("m", (("a", "1"),), 5.0)]),)))
    h.ingest(Snapshot(105.0, ()))
    assert Evaluator(h).eval(parse("m"), 105.0) == []
    assert Evaluator(h).eval(parse("max_over_time(m[1m])"), 105.0) == [((("a", "1"),), 5.0)]
    h.ingest(Snapshot(110.0, (MetricFamily("m", "gauge", "", [Sample("m", (("a", "1"),), 7.0)]),)))
    assert Evaluator(h).eval(parse("m"), 110.0) == [((("__name__", "m"), ("a", "1")), 7.0)]


def test_rules_with_an_interval_run_that_often_each_at_its_own_offset_and_still_fire():
    """Six rules every 30s over 5-second cycles: all at the start, then one per cycle, each 30s
    after its last run; `for` counts in time, so a slow rule fires within one interval of it."""
    from agent.rules.loader import load_rules

    slow = "".join(f'[[rules]]\nname = "Slow{i}"\nexpr = "x > 0"\nfor = "1m"\ninterval = "30s"\n' for i in range(6))
    config = parse_config('[alerting]\ndefault_rules = false\n[[rules]]\nname = "Fast"\nexpr = "x > 0"\n' + slow)
    world = World()
    engine = Engine(load_rules(config).groups, world.history, [])
    runs = []
    original = engine._evaluate_isolated
    engine._evaluate_isolated = lambda r, t, cache: runs.append((t, r.name)) or original(r, t, cache)
    fired = {}
    for _ in range(40):
        t = world.t
        for status, name, _server in world.cycle(engine, [("x", {}, 1.0)]):
            fired.setdefault(name, t) if status == "firing" else None
    by_cycle = {}
    for t, name in runs:
        by_cycle.setdefault(t, []).append(name)
    assert sorted(by_cycle[1000.0]) == ["Fast"] + [f"Slow{i}" for i in range(6)]
    assert all(len(names) == 2 and "Fast" in names for t, names in by_cycle.items() if t > 1000.0)
    for i in range(6):
        times = [t for t, name in runs if name == f"Slow{i}"]
        assert all(b - a == 30 for a, b in zip(times[1:], times[2:])), times
    assert fired["Fast"] == 1000.0  # no `for`: at once
    assert all(1060.0 <= fired[f"Slow{i}"] <= 1090.0 for i in range(6)), fired


def test_rule_export_writes_a_group_per_interval():
    from agent.rules.export import export_rules

    config = parse_config('[[rules]]\nname = "A"\nexpr = "x > 0"\n[[rules]]\nname = "B"\nexpr = "x > 1"\ninterval = "30s"\n')
    text = export_rules(config.rules)
    assert '- name: "llm-agent"\n    rules:\n      - alert: "A"' in text
    assert '- name: "llm-agent-30s"\n    interval: 30s\n    rules:\n      - alert: "B"' in text


def test_a_retired_server_resolves_at_once_and_starts_no_alert_from_old_samples():
    """Issue 26: a discovered server that is gone kept paging for the no-data timeout, and a
    window rule (avg_over_time) started a new alert from its last samples after it was dropped."""
    w = World()
    rules = [rule("Down", "llm_agent_target_up == 0"),
             rule("Errors", "1 - avg_over_time(llm_agent_probe_success[5m]) > 0.01"),
             rule("Gone", "llm_agent_target_gone == 1")]
    e = Engine(rules, w.history)
    w.cycle(e, [up("a", 0), ("llm_agent_probe_success", {"server": "a"}, 0)])
    assert {a.labels["alertname"] for a in e.active()} == {"Down", "Errors"}
    e.retired = {"a": "a is gone"}
    notes = w.notifications(e, [("llm_agent_target_gone", {"server": "a"}, 1)])
    assert sorted((n.status, n.alert.labels["alertname"]) for n in notes) == [
        ("firing", "Gone"), ("resolved", "Down"), ("resolved", "Errors")]
    assert all(n.alert.annotations["resolved_reason"] == "a is gone" for n in notes if n.status == "resolved")
    for _ in range(3):  # the 5-minute window still holds a's failures: nothing starts from them
        assert w.cycle(e, [("llm_agent_target_gone", {"server": "a"}, 1)]) == []
