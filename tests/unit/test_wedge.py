"""Issue 30: an engine that is wedged while it answers. Fakes of vLLM, SGLang and llama.cpp (their
captured /metrics, with requests queued) freeze every progress counter while /health (or
/metrics) keeps answering: wedged after [health] wedge_after, naming the frozen counters; the
same fakes saturated (the queue grows, tokens flow) are never wedged."""

import re
from pathlib import Path

import pytest

from agent.collectors.liveness import Liveness
from agent.collectors.llamacpp import LlamaCppCollector
from agent.collectors.openmetrics import OpenMetricsCollector
from agent.config import TargetConfig
from tests.support.clock import ManualClock
from tests.support.httpservers import RouteServer
from tests.unit.test_target_collectors import Cycles, llama_routes

FIX = Path(__file__).parent.parent / "fixtures"
QUEUED = {"vllm": "vllm:num_requests_running", "sglang": "sglang:num_running_reqs",
          "llamacpp": "llamacpp:requests_processing"}
COUNTER = re.compile(r"^((?:vllm|sglang|llamacpp):[a-z_]+_total(?:\{[^}]*\})?) ([0-9.eE+-]+)$", re.M)


def body(engine: str, step: int, moving: bool) -> bytes:
    """The engine's captured /metrics with 3 requests queued; its counters advanced by `step`
    when `moving` (the engine works), left as captured when not (wedged)."""
    text = (FIX / engine / "metrics.txt").read_text()
    text = re.sub(rf"^({re.escape(QUEUED[engine])}(?:{{[^}}]*}})?) [0-9.]+$", r"\g<1> 3", text, flags=re.M)
    if moving:
        text = COUNTER.sub(lambda m: f"{m.group(1)} {float(m.group(2)) + 7 * step}", text)
    return text.encode()


def collector(engine: str, server: RouteServer, clock: ManualClock, live: Liveness):
    if engine == "llamacpp":
        return LlamaCppCollector(TargetConfig("t", server.url), clock=clock, liveness=live)
    return OpenMetricsCollector(TargetConfig("t", server.url, "openmetrics"), clock=clock, liveness=live)


def run(engine: str, moving: bool, cycles: int = 8, every: float = 5.0):
    clock = ManualClock()
    state = {"n": 0}

    def metrics(_handler):
        state["n"] += 1
        return 200, body(engine, state["n"], moving), "text/plain"

    routes = {**llama_routes(), "/metrics": metrics} if engine == "llamacpp" else {"/metrics": metrics}
    live = Liveness("t", clock, None, wedge_after=30.0)
    with RouteServer(routes) as srv:
        cycle = Cycles(collector(engine, srv, clock, live), clock)
        seen = []
        try:
            for _ in range(cycles):
                snap = cycle()
                seen.append(snap.samples("llm_agent_target_wedged"))
                clock.now += every
        finally:
            cycle.close()
    return seen, live


@pytest.mark.parametrize("engine", ["vllm", "sglang", "llamacpp"])
def test_an_engine_that_answers_with_every_counter_frozen_is_wedged_after_wedge_after(engine):
    seen, live = run(engine, moving=False)
    values = [s[0].value for s in seen]
    assert values[:6] == [0, 0, 0, 0, 0, 0] and values[7] == 1  # frozen since the first cycle: 30 s later
    counters = seen[-1][0].label("counters")
    assert "generated tokens" in counters and "prompt tokens" in counters
    assert any(p.severity == "critical" and "wedged" in p.message for p in live.problems())


@pytest.mark.parametrize("engine", ["vllm", "sglang", "llamacpp"])
def test_a_saturated_engine_whose_tokens_flow_is_never_wedged(engine):
    seen, live = run(engine, moving=True, cycles=12)
    assert [s[0].value for s in seen] == [0] * 12
    assert not live.wedged


def test_an_idle_engine_with_frozen_counters_is_not_wedged():
    live = Liveness("t", lambda: 100.0, None, wedge_after=30.0)
    now = [100.0]
    live.clock = lambda: now[0]
    for _ in range(10):
        live.observe_progress(True, False, {"generated tokens": 5.0})
        now[0] += 10
    assert not live.wedged  # nothing queued: nothing to make progress on


def test_a_server_that_stops_answering_is_down_or_hung_not_wedged():
    now = [0.0]
    live = Liveness("t", lambda: now[0], None, wedge_after=30.0)
    for answered in [True] * 3 + [False] * 6:
        live.observe_progress(answered, True, {"generated tokens": 5.0})
        now[0] += 10
    assert not live.wedged
