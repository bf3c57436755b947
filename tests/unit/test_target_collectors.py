"""Target collectors against local servers that misbehave on purpose: malformed and huge
bodies, a server that accepts and never answers, one that trickles, one that vanishes.
(The real llama-server is exercised in tests/integration.)"""

import json
import time
from pathlib import Path

import pytest

from agent.collectors.engines import EngineSeries, load_table
from agent.collectors.llamacpp import LlamaCppCollector
from agent.collectors.openmetrics import OpenMetricsCollector
from agent.config import TargetConfig
from agent.model import Snapshot
from agent.runner import Runner
from tests.support.clock import ManualClock
from tests.support.httpservers import RouteServer, SilentServer, static

FIX = Path(__file__).parent.parent / "fixtures"



def snap_of(collector):
    return Snapshot(0.0, tuple(collector.collect()))


class Cycles:
    """The collector and the engine-neutral deriver (which works out tokens/s) in a real
    runner, one cycle per call, on a manual clock."""

    def __init__(self, collector, clock):
        self.runner = Runner([collector], timeout=5, clock=clock, derivers=[EngineSeries(load_table())])

    def __call__(self) -> Snapshot:
        return self.runner.run()

    def close(self):
        self.runner.close()


def llama_routes(metrics=None, health=(200, b'{"status":"ok"}')):
    return {
        "/health": static(health[1], health[0], "application/json"),
        "/metrics": static(metrics if metrics is not None else (FIX / "llamacpp" / "metrics.txt").read_bytes()),
        "/slots": static((FIX / "llamacpp" / "slots.json").read_bytes(), ctype="application/json"),
        "/props": static((FIX / "llamacpp" / "props.json").read_bytes(), ctype="application/json"),
    }


def test_vllm_passthrough_with_server_label_and_rates():
    body = (FIX / "vllm" / "metrics.txt").read_text()
    with RouteServer({"/metrics": lambda h: (200, state["body"].encode(), "text/plain")}) as srv:
        state = {"body": body}
        clock = ManualClock()
        c = OpenMetricsCollector(TargetConfig("vllm", srv.url, "openmetrics", labels={"zone": "a"}), clock=clock)
        cycle = Cycles(c, clock)
        snap = cycle()
        running = snap.samples("vllm:num_requests_running")[0]
        assert running.labels[:2] == (("server", "vllm"), ("zone", "a"))
        assert running.label("model_name") == "meta-llama/Llama-3.1-8B-Instruct"
        assert snap.value("llm_agent_target_up") == 1
        assert snap.samples("llm_agent_generation_tokens_per_second") == []  # one point is not a rate
        clock.now += 5
        state["body"] = body.replace("88211.0", "88711.0")
        snap = cycle()
        model = "meta-llama/Llama-3.1-8B-Instruct"
        assert snap.value("llm_agent_generation_tokens_per_second", server="vllm", engine="vllm",
                          model=model) == pytest.approx(100.0)
        assert snap.value("llm_agent_prompt_tokens_per_second", server="vllm") == 0.0
        clock.now += 5
        state["body"] = body.replace("88211.0", "10.0")  # the server restarted
        snap = cycle()
        assert snap.value("llm_agent_target_restarts_total") == 1
        cycle.close()


def test_existing_server_label_is_kept_as_exported_server():
    with RouteServer({"/metrics": static(b'm{server="inner"} 1\n')}) as srv:
        snap = snap_of(OpenMetricsCollector(TargetConfig("outer", srv.url, "openmetrics")))
        assert snap.samples("m")[0].labels == (("server", "outer"), ("exported_server", "inner"))


def test_malformed_body_keeps_good_lines_and_counts_bad_ones():
    with RouteServer(llama_routes(metrics=b"# TYPE good gauge\ngood 1\nbad{ 2\n\x00\x01garbage\n")) as srv:
        c = LlamaCppCollector(TargetConfig("l", srv.url))
        snap = snap_of(c)
        assert snap.value("good") == 1
        assert snap.value("llm_agent_target_parse_errors_total") == 2
        assert any("malformed" in p.message for p in c.problems)


def test_huge_body_is_refused_and_counted():
    with RouteServer(llama_routes(metrics=b"x 1\n" * 300_000)) as srv:
        c = LlamaCppCollector(TargetConfig("l", srv.url), max_bytes=1 << 20)
        snap = snap_of(c)
        assert snap.value("llm_agent_target_up") == 1  # /health answered
        assert snap.value("llm_agent_target_scrape_errors_total", reason="too_large") == 1
        assert snap.samples("x") == []


def test_hung_target_costs_one_timeout():
    with SilentServer() as srv:
        c = LlamaCppCollector(TargetConfig("hung", srv.url, timeout=0.5))
        start = time.monotonic()
        snap = snap_of(c)
        elapsed = time.monotonic() - start
        assert snap.value("llm_agent_target_up") == 0
        assert snap.value("llm_agent_target_scrape_errors_total", reason="timeout") == 1
        assert elapsed < 1.5, f"one timeout (0.5s), not four: took {elapsed:.2f}s"


def test_trickling_body_is_cut_at_the_deadline():
    with SilentServer(trickle=True) as srv:
        c = OpenMetricsCollector(TargetConfig("slow", srv.url, "openmetrics", timeout=0.6))
        start = time.monotonic()
        snap = snap_of(c)
        assert time.monotonic() - start < 2.0
        assert snap.value("llm_agent_target_up") == 0
        assert snap.value("llm_agent_target_scrape_errors_total", reason="timeout") == 1


def test_refused_connection_is_down_with_a_fix():
    with RouteServer({}) as srv:
        url = srv.url
    c = LlamaCppCollector(TargetConfig("gone", url))
    snap = snap_of(c)
    assert snap.value("llm_agent_target_up") == 0
    assert snap.value("llm_agent_target_scrape_errors_total", reason="refused") == 1
    assert c.problems[0].severity == "critical" and "start the server" in c.problems[0].fix


def test_metrics_disabled_is_reported_as_exactly_that():
    routes = llama_routes()
    routes["/metrics"] = static((FIX / "llamacpp" / "metrics_501.json").read_bytes(), 501, "application/json")
    routes["/slots"] = static((FIX / "llamacpp" / "slots_501.json").read_bytes(), 501, "application/json")
    with RouteServer(routes) as srv:
        c = LlamaCppCollector(TargetConfig("nometrics", srv.url))
        snap = snap_of(c)
        assert snap.value("llm_agent_target_up") == 1
        assert snap.value("llm_agent_target_metrics_enabled") == 0
        problem = next(p for p in c.problems if "--metrics" in p.message)
        assert problem.severity == "warning" and "add --metrics" in problem.fix
        assert any("--slots" in p.fix for p in c.problems)


def test_loading_model_is_up_but_not_ready():
    routes = llama_routes(health=(503, (FIX / "llamacpp" / "health_loading.json").read_bytes()))
    with RouteServer(routes) as srv:
        c = LlamaCppCollector(TargetConfig("loading", srv.url))
        snap = snap_of(c)
        assert snap.value("llm_agent_target_up") == 1
        assert snap.value("llm_agent_target_ready") == 0
        assert any("loading" in p.message for p in c.problems)


def test_props_are_read_once_not_every_cycle():
    with RouteServer(llama_routes()) as srv:
        c = LlamaCppCollector(TargetConfig("l", srv.url))
        for _ in range(3):
            snap = snap_of(c)
        assert srv.hits["/props"] == 1 and srv.hits["/metrics"] == 3
        assert snap.samples("llm_agent_target_info")[0].label("model") == "tiny.gguf"
        assert snap.value("llm_agent_target_context_tokens") == 512


def test_api_key_is_sent_and_never_in_problems():
    seen = {}

    def metrics(handler):
        seen["auth"] = handler.headers.get("Authorization")
        return 500, b"internal", "text/plain"

    with RouteServer({"/metrics": metrics}) as srv:
        c = OpenMetricsCollector(TargetConfig("k", srv.url, "openmetrics", api_key="sk-very-secret"))
        snap_of(c)
        assert seen["auth"] == "Bearer sk-very-secret"
        assert all("sk-very-secret" not in repr(p) for p in c.problems)


def test_connection_is_kept_alive_across_requests():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    peers = set()

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            peers.add(self.client_address)
            body = b"ready 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = OpenMetricsCollector(TargetConfig("k", f"http://127.0.0.1:{httpd.server_address[1]}", "openmetrics"))
        for _ in range(5):
            assert snap_of(c).value("ready") == 1
        assert len(peers) == 1, "five scrapes over one connection"
        c.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_tokens_per_second_is_a_one_minute_rate_and_vanishes_when_the_scrape_fails():
    body = (FIX / "vllm" / "metrics.txt").read_text()
    total = {"v": 88211.0, "status": 200}
    route = lambda h: (total["status"], body.replace("88211.0", f"{total['v']:.1f}").encode(), "text/plain")  # noqa: E731
    with RouteServer({"/metrics": route}) as srv:
        clock = ManualClock()
        cycle = Cycles(OpenMetricsCollector(TargetConfig("vllm", srv.url, "openmetrics"), clock=clock), clock)
        rates = []
        for burst in (0, 0, 80, 0, 0, 0):  # one busy 5-second cycle among idle ones
            clock.now += 5
            total["v"] += burst
            rates.append(cycle().value("llm_agent_generation_tokens_per_second"))
        assert rates[0] is None and rates[1] == 0.0
        assert rates[2:] == [pytest.approx(80 / 10), pytest.approx(80 / 15), pytest.approx(80 / 20),
                             pytest.approx(80 / 25)], "averaged over the minute, not 16 for one cycle then 0"
        for _ in range(12):  # a minute later the burst has left the window
            clock.now += 5
            rate = cycle().value("llm_agent_generation_tokens_per_second")
        assert rate == 0.0
        clock.now += 5
        total["v"] = 40.0  # a restart: the counter starts again from zero
        assert cycle().value("llm_agent_generation_tokens_per_second") == pytest.approx(40 / 60)
        total["status"] = 500
        clock.now += 5
        snap = cycle()
        assert snap.value("llm_agent_target_up") == 0
        assert snap.samples("llm_agent_generation_tokens_per_second") == []
        total["status"] = 200
        clock.now += 5
        assert cycle().samples("llm_agent_generation_tokens_per_second") == [], "after a gap: two new readings"
        clock.now += 5
        assert cycle().value("llm_agent_generation_tokens_per_second") == 0.0
        cycle.close()


def test_busy_slots_come_from_metrics_and_props_so_slots_is_not_asked_each_cycle():
    """/slots and /metrics are both tasks on llama-server's main loop: with /metrics'
    requests_processing and /props' total_slots, the agent asks for /slots no more."""
    metrics = (FIX / "llamacpp" / "metrics.txt").read_bytes().replace(b"llamacpp:requests_processing 0",
                                                                       b"llamacpp:requests_processing 3")
    with RouteServer(llama_routes(metrics)) as srv:
        c = LlamaCppCollector(TargetConfig("llama", srv.url))
        for _ in range(3):
            snap = snap_of(c)
        assert snap.value("llm_agent_target_slots", state="busy") == 3
        assert snap.value("llm_agent_target_slots", state="idle") == 1, "total_slots 4 in the captured /props"
        assert "/slots" not in srv.hits and srv.hits["/metrics"] == 3 and srv.hits["/health"] == 3
    routes = llama_routes()
    routes["/props"] = static(json.dumps({"n_ctx": 512, "build_info": "b1"}).encode(), ctype="application/json")
    with RouteServer(routes) as srv:  # an older build without total_slots: /slots as before
        snap = snap_of(LlamaCppCollector(TargetConfig("old", srv.url)))
        assert snap.value("llm_agent_target_slots", state="idle") == 4 and srv.hits["/slots"] == 1


def test_a_router_churning_model_names_keeps_counts_for_the_listed_models_only():
    props = json.loads((FIX / "llamacpp" / "props.json").read_text())
    props["role"] = "router"
    state = {"n": 0}

    def models(_handler):
        state["n"] += 1
        listed = [{"id": f"m{state['n']}-{i}", "status": {"value": "loaded" if i % 2 else "unloaded"}}
                  for i in range(2_000)]
        return 200, json.dumps({"data": listed}).encode(), "application/json"

    routes = {**llama_routes(), "/props": static(json.dumps(props).encode(), ctype="application/json"),
              "/models": models}
    with RouteServer(routes) as srv:
        c = LlamaCppCollector(TargetConfig("router", srv.url))
        for _ in range(5):
            snap = snap_of(c)
        assert len(c.models) == 2_000
        assert len(c._loads) <= 1_000 and len(c._unloads) <= 1_000  # not 5,000 names and growing
        assert snap.samples("llm_agent_model_loaded")
        # and it did not make a thousand /metrics requests a cycle for the "loaded" ones
        assert srv.hits["/metrics"] <= 5 * 32
        assert snap.value("llm_agent_target_series_dropped_total", reason="loaded_models_limit") == 5 * (1_000 - 32)
