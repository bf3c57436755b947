"""Recording rules, rule-file groups (interval, limit, several rules of one name), the reach
the in-memory history allows, and PromQL's runtime errors inside the engine."""

import random
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.rules.engine import Engine, Group, RecordingRule
from agent.promql.evaluator import EvalError, Evaluator
from agent.rules.loader import load_rules
from agent.promql.parser import PromQLError, parse
from agent.rulefile import parse_text
from tests.unit.test_engine import World, rule

CORPUS = [line.strip() for line in (Path(__file__).parent.parent / "fixtures" / "promql" / "corpus.txt").read_text()
          .splitlines() if line.strip() and not line.startswith("#")]


def tokens(name, server, value):
    return (name, {"server": server}, value)


def test_a_recording_rule_feeds_the_alert_rules_of_the_same_cycle():
    w = World()
    record = RecordingRule("server:load:sum", parse("sum by (server) (load)"), {"team": "x"})
    alert = rule("Busy", "server:load:sum > 5")
    e = Engine([Group("recording_rules", [record]), Group("rules", [alert])], w.history)
    notes = w.cycle(e, [tokens("load", "a", 3.0), tokens("load", "a", 3.0)[:1] + ({"server": "a", "k": "2"}, 4.0)])
    assert notes == [("firing", "Busy", "a")]
    assert e.active()[0].labels["team"] == "x"  # the recorded series' labels reach the alert
    assert e.recorded[record.key] == [((("__name__", "server:load:sum"), ("server", "a"), ("team", "x")), 7.0)]


def test_recorded_series_are_not_marked_stale_by_the_next_snapshot():
    w = World()
    record = RecordingRule("r:x", parse("x * 2"))
    alert = rule("Big", "r:x > 1", **{"for": '"10s"'})
    e = Engine([Group("recording_rules", [record]), Group("rules", [alert])], w.history)
    for _ in range(3):
        notes = w.cycle(e, [("x", {"i": "1"}, 5.0)])
    assert notes == [("firing", "Big", "")]


def test_a_recording_rule_that_stops_matching_makes_its_series_stale():
    w = World()
    record = RecordingRule("r:x", parse("x > 3"))
    e = Engine([Group("recording_rules", [record])], w.history)
    e.history.register(parse("r:x"), 0)
    w.cycle(e, [("x", {"i": "1"}, 5.0)])
    assert Evaluator(w.history).eval(parse("r:x"), w.t - 5)
    w.cycle(e, [("x", {"i": "1"}, 1.0)])
    assert Evaluator(w.history).eval(parse("r:x"), w.t - 5) == []


def test_recording_rule_labels_that_collide_are_an_error_not_a_silent_merge():
    w = World()
    record = RecordingRule("r:x", parse("x"), {"i": "same"})
    e = Engine([Group("recording_rules", [record])], w.history)
    w.cycle(e, [("x", {"i": "1"}, 1.0), ("x", {"i": "2"}, 2.0)])
    assert e.failures["r:x"] == 1
    assert "same labelset" in e.last_error["r:x"]


def test_recorded_results_are_served_with_the_agents_families(tmp_path):
    from agent.alerting import Alerting
    from agent.model import MetricFamily, Sample, Snapshot

    config = parse_config('[alerting]\ndefault_rules = false\n[[recording_rules]]\nrecord = "job:x:sum"\n'
                          'expr = "sum by (job) (x)"\n[[recording_rules]]\nrecord = "x"\nexpr = "vector(1)"\n')
    alerting = Alerting(config, str(tmp_path))
    try:
        fam = MetricFamily("x", "gauge", "")
        fam.samples.extend([Sample("x", (("job", "a"),), 2.0), Sample("x", (("job", "a"), ("i", "2")), 3.0)])
        alerting.process(Snapshot(1000.0, (fam,)))
        served = alerting.recorded_families({"x"})
        assert [(f.name, [(s.labels, s.value) for s in f.samples]) for f in served] == [("job:x:sum", [((("job", "a"),), 5.0)])]
        assert alerting.engine.failures["x"] == 1  # a collector already serves "x": left out, counted
    finally:
        alerting.close(0)


def test_a_group_interval_runs_its_rules_less_often():
    w = World()
    record = RecordingRule("r:n", parse("count(x)"))
    e = Engine([Group("slow", [record], interval=15)], w.history)
    runs = []
    for _ in range(7):
        w.cycle(e, [("x", {}, 1.0)])
        runs.append(e.recorded.get(record.key) is not None)
        e.recorded.clear()
    assert runs == [True, False, False, True, False, False, True]


def test_a_group_limit_fails_the_rule_that_exceeds_it():
    w = World()
    e = Engine([Group("g", [rule("Many", "x > 0")], limit=1)], w.history)
    w.cycle(e, [("x", {"i": "1"}, 1.0), ("x", {"i": "2"}, 1.0)])
    assert e.active() == [] and "exceeded limit of 1 with 2 alerts" in e.last_error["Many"]


def test_rule_file_rules_keep_their_own_labels_and_may_share_a_name(tmp_path):
    text = ("groups:\n  - name: g\n    rules:\n      - alert: Hot\n        expr: t > 80\n        labels: {severity: warning}\n"
            "      - alert: Hot\n        expr: t > 90\n        labels: {severity: critical}\n      - alert: Plain\n        expr: t > 0\n")
    path = tmp_path / "r.yml"
    path.write_text(text)
    config = parse_config(f'[alerting]\ndefault_rules = false\nrule_files = ["{path}"]\n')
    ruleset = load_rules(config)
    w = World()
    e = Engine(ruleset.groups, w.history)
    w.cycle(e, [("t", {}, 95.0)])
    got = sorted((a.labels["alertname"], a.labels.get("severity", "-")) for a in e.active())
    assert got == [("Hot", "critical"), ("Hot", "warning"), ("Plain", "-")]  # no severity invented


@pytest.mark.parametrize("expr,reason", [
    ("rate(x[1d])", "reads 1d back"),
    ("x offset 8h", "reads 8h back"),
    ("max_over_time(rate(x[5m])[7h:1m])", "reads 7h5m back"),
    ("x @ 1700000000", "fixed time"),
    ("max_over_time(x[6h:1s])", "21,600 steps"),
])
def test_rules_that_reach_further_than_memory_are_refused_at_load_with_the_reason(expr, reason):
    with pytest.raises(ConfigError) as e:
        parse_config(f'[[rules]]\nname = "X"\nexpr = "{expr}"\n', "agent.toml")
    assert "agent.toml:3: rules[0].expr: " in str(e.value) and reason in str(e.value)


def test_memory_history_can_be_raised_and_default_rules_fit_the_default():
    parse_config('[alerting]\nmemory_history = "26h"\n[[rules]]\nname = "X"\nexpr = "x - x offset 1d"\n')
    assert load_rules(parse_config("")).alerts  # the defaults reach 6h, inside the default 7h


def test_a_rule_file_rule_reaching_too_far_names_its_file_and_line(tmp_path):
    path = tmp_path / "r.yml"
    path.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[30d])\n")
    with pytest.raises(ConfigError) as e:
        parse_config(f'[alerting]\nrule_files = ["{path}"]\n')
    assert f"{path}:4: A: reads 30d back" in str(e.value)


def test_rule_file_yaml_errors_have_lines():
    with pytest.raises(ValueError) as e:
        parse_text("groups:\n  - name: g\n    rules:\n  - [\n", "f.yml")
    assert str(e.value).startswith("f.yml:")


def test_parser_and_evaluator_fail_only_with_their_own_errors_on_mangled_input():
    """Fuzz: corpus expressions cut, spliced and sprinkled with tokens never crash the parser
    or the evaluator with anything but PromQLError / EvalError."""
    rng = random.Random(11)
    bits = ["(", ")", "[5m]", "[1m:]", "{", "}", ",", '"', "offset", "@", "by", "on(x)", "group_left", "bool", "-", "^",
            "==", "1e9", "0x", "`", "#", "\\", "sum", "topk(", ":", "1h30m", "'a\\x", "start()", "]"]
    w = World()
    w.cycle(Engine([], w.history), [("x", {"i": "1"}, 1.0)])
    for _ in range(3000):
        a, b = rng.choice(CORPUS), rng.choice(CORPUS)
        cut = rng.randrange(len(a) + 1)
        text = a[:cut] + rng.choice(bits) + b[rng.randrange(len(b) + 1):]
        try:
            tree = parse(text)
        except PromQLError:
            continue
        try:
            Evaluator(w.history).eval(tree, w.t)
        except EvalError:
            pass


def test_annotations_follow_the_value_and_a_reload_renders_new_templates():
    w = World()
    r = rule("Hot", "t > 80", annotations='{ summary = "at {{ $value }}" }')
    e = Engine([r], w.history)
    w.cycle(e, [("t", {}, 90.0)])
    w.cycle(e, [("t", {}, 90.0)])
    assert e.active()[0].annotations["summary"] == "at 90"
    w.cycle(e, [("t", {}, 95.0)])
    assert e.active()[0].annotations["summary"] == "at 95"
    changed = rule("Hot", "t > 80", annotations='{ summary = "now {{ $value }}" }')
    e2 = Engine([changed], w.history, previous=e)
    w.cycle(e2, [("t", {}, 95.0)])
    assert e2.active()[0].annotations["summary"] == "now 95"


def test_a_yaml_alias_bomb_is_refused_not_expanded():
    rule_line = "      - &r {alert: A, expr: up}\n"
    many = "      - *r\n" * 200
    group = "  - &g\n    name: g\n    rules:\n" + rule_line + many
    groups = "".join(f"  - {{name: g{i}, rules: [*r, *r, *r, *r, *r, *r, *r, *r, *r, *r" + ", *r" * 190 + "]}\n"
                     for i in range(150))
    with pytest.raises(ValueError, match="more than 20,000 rules in one file"):
        parse_text("groups:\n" + group + groups, "bomb.yml")


def test_adding_a_rule_above_keeps_the_state_of_the_rules_below(tmp_path):
    from agent.rules.loader import file_groups

    one = parse_text("groups:\n  - name: g\n    rules:\n      - alert: B\n        expr: t > 1\n", "r.yml")
    two = parse_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: t > 5\n"
                     "      - alert: B\n        expr: t > 1\n", "r.yml")
    w = World()
    e = Engine(file_groups(tuple(one)), w.history)
    assert w.cycle(e, [("t", {}, 3.0)]) == [("firing", "B", "")]
    e2 = Engine(file_groups(tuple(two)), w.history, previous=e)
    assert w.cycle(e2, [("t", {}, 3.0)]) == []  # B goes on firing: no resolve, no second page


def test_promtool_series_notation_expands_and_a_runaway_count_is_refused():
    from agent.rules.unittest import TestFileError, expand_values

    assert expand_values("1+2x2 _ 5-1x1 3x1 _x2") == [1.0, 3.0, 5.0, None, 5.0, 4.0, 3.0, 3.0, None, None]
    with pytest.raises(TestFileError, match="more than 1,000,000 samples"):
        expand_values("1+1x100000000")
