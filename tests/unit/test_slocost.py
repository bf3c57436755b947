"""SLO and cost series, and the default burn-rate rule firing on probe failures."""

import time

from agent.collectors.slocost import SloCost
from agent.config import TargetConfig, parse_config
from agent.model import Snapshot, gauge


def view(gpus=8, tokens_per_second=(60.0, 40.0)):
    """This cycle's results as the deriver sees them: GPUs and per-target token rates."""
    up = gauge("llm_agent_gpu_up", "")
    for i in range(gpus):
        up.add({"gpu": str(i)}, 1)
    rate = gauge("llm_agent_generation_tokens_per_second", "")
    for i, r in enumerate(tokens_per_second):
        rate.add({"server": f"s{i}"}, r)
    return Snapshot(0.0, (up, rate))


def test_objectives_and_cost():
    config = parse_config('[slo]\navailability = 0.99\n[cost]\ngpu_hour_price = 2.0\nhost_hour_price = 1.0\n'
                          'month_budget = 1000.0\n')
    targets = [TargetConfig("a", "http://x:1"), TargetConfig("b", "http://x:2", slo_availability=0.999)]
    now = time.mktime((2026, 11, 25, 6, 0, 0, 0, 0, -1))  # 06:00 local, a 30-day month
    clock = iter([now, now + 60]).__next__
    c = SloCost(config.slo, config.cost, lambda: targets, clock)
    snap = Snapshot(0.0, tuple(c.derive(view())))
    assert snap.value("llm_agent_slo_error_budget", server="a") == 0.01
    assert snap.value("llm_agent_slo_error_budget", server="b") == 0.001
    assert snap.value("llm_agent_cost_per_hour") == 17.0  # 8 GPUs x 2 + 1
    assert snap.value("llm_agent_cost_today") == 17.0 * 6
    assert snap.value("llm_agent_cost_month_projection") == 17.0 * 24 * 30
    assert snap.value("llm_agent_cost_month_budget") == 1000.0
    assert snap.samples("llm_agent_cost_per_1k_tokens") == []  # one reading is not yet a rate
    snap = Snapshot(0.0, tuple(c.derive(view())))
    assert round(snap.value("llm_agent_cost_per_1k_tokens"), 6) == round(17.0 / (100 * 3600) * 1000, 6)


def test_no_price_no_cost_series():
    c = SloCost(parse_config("").slo, parse_config("").cost, lambda: [])
    assert [f.name for f in c.derive(view())] == ["llm_agent_slo_error_budget", "llm_agent_slo_latency_error_budget",
                                             "llm_agent_slo_objective"]


def test_fast_burn_rule_fires_on_failing_probes():
    from agent.model import MetricFamily, Sample
    from agent.rules.engine import Engine
    from agent.rules.history import History
    from agent.rules.loader import load_rules

    rules = load_rules(parse_config("")).alerts
    burn = [r for r in rules if r.name == "LlmSloBurnFast"]

    def run(seconds, success):
        history = History()
        engine = Engine(burn, history)
        fired = []
        for i in range(0, seconds, 60):  # probes one a minute
            t = 10_000.0 + i
            fams = (MetricFamily("llm_agent_probe_success", "gauge", "",
                                 [Sample("llm_agent_probe_success", (("server", "a"),), success(i // 60))]),
                    MetricFamily("llm_agent_probes_total", "counter", "",
                                 [Sample("llm_agent_probes_total", (("server", "a"),), i // 60 + 1)]),
                    MetricFamily("llm_agent_slo_error_budget", "gauge", "",
                                 [Sample("llm_agent_slo_error_budget", (("server", "a"),), 0.005)]))
            history.ingest(Snapshot(t, fams))
            fired += [(n.status, n.alert.labels["server"]) for n in engine.evaluate(t)]
        return fired

    assert ("firing", "a") in run(3600, lambda n: n % 2), "an hour of probes failing half the time"
    # issue 26: a young agent (10 minutes, 10 probes) never pages from a handful of failures
    assert run(600, lambda n: 0) == []


def test_fast_latency_burn_rule_fires_on_slow_probes():
    from agent.model import MetricFamily, Sample
    from agent.rules.engine import Engine
    from agent.rules.history import History
    from agent.rules.loader import load_rules

    rules = load_rules(parse_config("")).alerts
    engine_rules = [r for r in rules if r.name == "LlmLatencySloBurnFast"]
    history = History()
    engine = Engine(engine_rules, history)
    fired = []
    for i in range(60):  # an hour of probes, every one slower than the objective (14.4x of a 5% budget is 72%)
        t = 10_000.0 + 60 * i
        def fam(name, value):
            return MetricFamily(name, "counter", "", [Sample(name, (("server", "a"),), value)])
        fams = (fam("llm_agent_probes_total", i + 1), fam("llm_agent_probe_slow_total", i + 1),
                MetricFamily("llm_agent_slo_latency_error_budget", "gauge", "",
                             [Sample("llm_agent_slo_latency_error_budget", (("server", "a"),), 0.05)]))
        history.ingest(Snapshot(t, fams))
        fired += [(n.status, n.alert.labels["server"]) for n in engine.evaluate(t)]
    assert ("firing", "a") in fired
