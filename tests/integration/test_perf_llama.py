"""Benchmarks and the quality set against a real llama-server: the mechanism, the guard that
yields to a user's request, and `llm-agent bench` / `baseline` through a running agent. Its
speed on this machine varies: figures are checked for being measured, never for their size."""

import argparse
import threading

import requests

from agent.collectors.http import HttpClient
from agent.perf.benchmark import BenchSpec, Guard, run_benchmark
from agent.perf.collector import server_busy
from agent.perf.quality import QualityCase, run_quality
from agent.probes.completion import ProbeSpec
from tests.support.configs import TARGETS_ONLY
from tests.support.peers import wait_until
from tests.support.running import Running

SPEC = BenchSpec(prompt_tokens=64, generate_tokens=32, requests=4, concurrency=2, timeout=30)


def user_request(server, tokens=4000):
    """A user's long generation (ignore_eos: it really takes this many tokens)."""
    return requests.post(server.url + "/completion", json={"prompt": "Once upon a time", "n_predict": tokens,
                                                           "ignore_eos": True, "temperature": 0}, timeout=120)


def test_a_benchmark_measures_every_figure_and_counts_its_cost(llama_server):
    busy = lambda: server_busy(HttpClient(llama_server.url), "/metrics")  # noqa: E731
    assert busy() == 0, "an idle server says so through the engine-neutral table"
    with Guard(busy) as guard:
        run = run_benchmark(ProbeSpec(llama_server.url), SPEC, guard)
    assert run.outcome == "completed", run.detail
    assert set(run.figures) == {"prompt_tokens_per_second", "generation_tokens_per_second_c1",
                                "generation_tokens_per_second_cN", "ttft_p50_seconds", "ttft_p95_seconds"}
    assert all(v > 0 for v in run.figures.values())
    assert run.figures["ttft_p95_seconds"] >= run.figures["ttft_p50_seconds"]
    assert run.tokens >= 64 + 32 * 3, "prompt tokens as the server counted them, and every generated token"


def test_a_user_request_arriving_mid_run_makes_it_hang_up(tiny_model, tmp_path):
    """The user's request arrives at the benchmark's fifth request, as the real server reports
    it: the guard sees more requests than the benchmark's own and the run hangs up, while the
    user's request is served. (A larger context than the other tests' server, so that the
    user's request lasts longer than the guard's poll: the tiny model is fast.)"""
    from agent.probes.completion import run_probe
    from tests.support.peers import LlamaServer

    server = LlamaServer(tiny_model, log_dir=str(tmp_path), args=["--metrics", "--slots", "-c", "8192"]).start()
    busy = lambda: server_busy(HttpClient(server.url), "/metrics")  # noqa: E731
    answered, calls = [], []
    user = threading.Thread(target=lambda: answered.append(user_request(server, 4000)))

    def probe(spec):
        calls.append(spec)
        if len(calls) == 5:
            user.start()
            wait_until(lambda: (busy() or 0) >= 1 or answered, 30, 0.002, what="the server to report the user")
        return run_probe(spec)

    try:
        spec = BenchSpec(prompt_tokens=64, generate_tokens=32, requests=200, concurrency=2, timeout=30)
        with Guard(busy, every=0.005) as guard:
            run = run_benchmark(ProbeSpec(server.url), spec, guard, probe)
        if user.is_alive() or answered:
            user.join(60)
        assert run.outcome == "yielded", (run.outcome, run.detail, run.figures, len(calls))
        assert len(calls) >= 5, f"yielded at request {len(calls)}, before the user arrived: to no one"
        assert len(calls) < 4 + spec.requests, "hung up before the end"
        assert answered and answered[0].ok, "the user's request was served"
    finally:
        server.kill()


def test_the_quality_set_runs_at_temperature_zero_and_scores(llama_server):
    cases = [QualityCase("answers", "Say something.", regex=".+", max_tokens=8),
             QualityCase("impossible", "Say something.", exact="this exact sentence will not come back", max_tokens=8)]
    score, results, tokens = run_quality(ProbeSpec(llama_server.url), cases)
    assert results == {"answers": True, "impossible": False} and score == 0.5 and tokens > 0
    again = run_quality(ProbeSpec(llama_server.url), cases)
    assert again[:2] == (score, results), "temperature 0 and a fixed seed: the same verdicts"


def test_bench_and_baseline_through_the_running_agent(llama_server, tmp_path, capsys):
    from agent.commands import perf

    run = Running('[agent]\ninterval = "1s"\n' + TARGETS_ONLY + f'''
[probes]
enabled = false
[bench]
idle_for = "1s"
prompt_tokens = 64
generate_tokens = 16
requests = 3
max_concurrency = 2
baseline_runs = 2
[[targets]]
name = "tiny"
url = "{llama_server.url}"
''', str(tmp_path))
    try:
        args = argparse.Namespace(target="tiny", wait=120.0, url=f"http://127.0.0.1:{run.port}", user=None, last=0)
        for _ in range(2):
            assert perf.bench(args, run.agent.config) == 0
        out = capsys.readouterr().out
        assert "tiny: model tiny.gguf" in out and "last run: completed" in out
        wait_until(lambda: run.value("llm_agent_bench_runs_total", server="tiny", outcome="completed") == 2, 10,
                   what="two runs counted")
        wait_until(lambda: run.agent.snapshot.samples("llm_agent_bench_baseline"), 10, what="the candidate baseline")
        assert run.value("llm_agent_bench_tokens_total", server="tiny") > 0
        assert perf.baseline_record(args, run.agent.config) == 0
        assert "baseline of tiny recorded from 2 run(s)" in capsys.readouterr().out
        args.target = None  # every target with a completed run
        assert perf.baseline_record(args, run.agent.config) == 0
        assert "baseline of tiny recorded" in capsys.readouterr().out
        assert perf.baseline_compare(args, run.agent.config) == 0
        assert "generation_tokens_per_second_c1" in capsys.readouterr().out
        refused = requests.post(f"http://127.0.0.1:{run.port}/api/v1/perf/bench?target=nope", timeout=5)
        assert refused.status_code == 404 and "tiny" in refused.json()["error"]
    finally:
        run.stop()


def test_a_server_with_small_slots_is_benchmarked_within_its_context(tiny_model, tmp_path):
    """Issue 26: `-c 512 -np 2` (256 tokens a slot, as a production server with many slots):
    every run failed with HTTP 400 "exceeds the available context size". The run reads the
    context per slot from /props, fits its prompt and generation to it, and says so."""
    from agent.perf.collector import server_context
    from tests.support.peers import LlamaServer

    server = LlamaServer(tiny_model, log_dir=str(tmp_path), args=["--metrics", "--slots", "-c", "512", "-np", "2"]).start()
    try:
        client = HttpClient(server.url)
        context = server_context(client, "llamacpp")
        assert context == 256
        busy = lambda: server_busy(client, "/metrics")  # noqa: E731
        configured = BenchSpec(prompt_tokens=512, generate_tokens=128, requests=2, concurrency=2, timeout=60)
        with Guard(busy) as guard:
            unfitted = run_benchmark(ProbeSpec(server.url), configured, guard)
        assert unfitted.outcome == "failed" and "context" in unfitted.detail, "the server really refuses the configured run"
        with Guard(busy) as guard:
            run = run_benchmark(ProbeSpec(server.url), configured, guard, context=context)
    finally:
        server.kill()
    assert run.outcome == "completed", run.detail
    assert "fitted to 256 tokens of context per slot" in run.fitted and "configured 512 and 128" in run.fitted
    assert all(v > 0 for v in run.figures.values())
