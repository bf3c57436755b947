"""Benchmarks, baselines, the quality set and the history rules, with injected figures: the
mechanism and the comparisons, never absolute speeds (tests/integration/test_perf_llama.py
runs them against a real llama-server)."""

import contextlib
import json
import os
import threading
import time

import pytest

from agent.model import MetricFamily, Snapshot, gauge
from agent.perf.benchmark import BenchRun, BenchSpec, Guard, run_benchmark
from agent.perf.book import Environment, PerfBook, compare
from agent.perf.collector import PerfCollector, ServingEnvironment
from agent.perf.quality import QualityCase, check, first_number, run_quality
from agent.probes.completion import ProbeResult, ProbeSpec
from tests.support.default_rules import fire
from tests.support.peers import wait_until

SPEC = BenchSpec(prompt_tokens=64, generate_tokens=16, requests=3, concurrency=2, timeout=5)
FIGS = {"prompt_tokens_per_second": 1000.0, "generation_tokens_per_second_c1": 50.0,
        "generation_tokens_per_second_cN": 90.0, "ttft_p50_seconds": 0.1, "ttft_p95_seconds": 0.2}


def fake_probe(ttft=0.05, tpot=0.02, tokens=16, prompt_tokens=64, calls=None, fail=False):
    def probe(spec: ProbeSpec) -> ProbeResult:
        if calls is not None:
            calls.append(spec)
        if fail:
            return ProbeResult(False, "http_500", detail="boom")
        return ProbeResult(True, ttft=ttft, tpot=tpot, duration=ttft + tpot * spec.max_tokens, tokens=spec.max_tokens,
                           text="OK", prompt_tokens=prompt_tokens)
    return probe


def completed(figures, at=1000.0):
    return BenchRun("completed", dict(figures), tokens=500, seconds=3.0, started_at=at)


# -- the benchmark -------------------------------------------------------------------------------

def test_figures_come_from_fixed_requests_at_temperature_zero_with_their_cost_counted():
    calls = []
    with Guard(lambda: 0.0) as guard:
        run = run_benchmark(ProbeSpec("http://x"), SPEC, guard, fake_probe(calls=calls))
    assert run.outcome == "completed"
    assert run.figures["prompt_tokens_per_second"] == pytest.approx(64 / 0.05)
    assert run.figures["generation_tokens_per_second_c1"] == pytest.approx(1 / 0.02)
    assert run.figures["ttft_p50_seconds"] == pytest.approx(0.05)
    assert run.tokens > 0 and all(c.ignore_eos and c.seed == 42 for c in calls)
    assert len(calls) == 1 + 1 + SPEC.concurrency + SPEC.requests
    assert max(c.max_tokens for c in calls) == SPEC.generate_tokens, "tokens bounded by the spec"


def test_a_user_request_makes_the_benchmark_hang_up_and_yield():
    busy = [0.0]
    started = threading.Event()

    def slow_probe(spec):
        started.set()
        busy[0] = 2.0  # our request and a user's
        assert spec.cancel.wait(5), "the guard hangs up on the user's behalf"
        return ProbeResult(False, "cancelled")

    with Guard(lambda: busy[0], every=0.01) as guard:
        run = run_benchmark(ProbeSpec("http://x"), SPEC, guard, slow_probe)
    assert run.outcome == "yielded" and run.figures == {}


def test_one_of_ours_ending_while_the_server_answers_the_guard_is_not_a_user():
    """The server counts our request when it takes its snapshot; the request ends before the
    poll's answer arrives. Compared with the count after the poll, ours looked foreign and a
    run yielded to no one (seen in CI against a real llama-server, polled every 5 ms)."""
    polled = threading.Event()
    guard = Guard(lambda: None, every=0.001)

    def busy():
        seen = float(guard.mine)  # the server's snapshot: our request still runs
        guard.finished()  # ...and ends before the answer arrives
        polled.set()
        return seen

    guard.busy = busy
    guard.started()
    with guard:
        assert polled.wait(5)
    assert not guard.cancel.is_set(), "our own request, counted at the snapshot, is not a user"
    guard = Guard(lambda: 2.0, every=0.001)
    guard.started()
    with guard:
        assert guard.cancel.wait(5), "one more than ours at their most is a user"


def test_a_failing_server_fails_the_run_with_the_reason():
    with Guard(lambda: 0.0) as guard:
        run = run_benchmark(ProbeSpec("http://x"), SPEC, guard, fake_probe(fail=True))
    assert run.outcome == "failed" and "http_500" in run.detail


# -- baselines and comparisons -------------------------------------------------------------------

def test_regression_beyond_the_tolerance_in_either_direction():
    book = PerfBook("")
    for _ in range(3):
        book.add_run("llama", completed(FIGS))
    base = book.baseline("llama")
    assert base is not None and base.how == "candidate" and base.figures == FIGS
    slower = dict(FIGS, generation_tokens_per_second_c1=40.0, ttft_p95_seconds=0.22)  # -20% speed, +10% latency
    verdicts = {c.figure: c for c in compare(slower, base, 0.15)}
    assert verdicts["generation_tokens_per_second_c1"].regressed and verdicts["generation_tokens_per_second_c1"].slowdown == 1.25
    assert not verdicts["ttft_p95_seconds"].regressed, "10% is inside the 15% tolerance"
    assert not verdicts["prompt_tokens_per_second"].regressed


def test_a_new_driver_is_an_event_and_starts_its_own_baseline(tmp_path):
    book = PerfBook(str(tmp_path), baseline_runs=2)
    old = Environment("m.gguf", "b100", "NVIDIA H100", "550.54.15")
    assert book.observe_environment("llama", old) == []
    book.add_run("llama", completed(FIGS))
    book.add_run("llama", completed(FIGS))
    assert book.baseline("llama").how == "candidate"
    new = Environment("m.gguf", "b100", "NVIDIA H100", "560.35.03")
    assert book.observe_environment("llama", new) == ["driver 550.54.15 -> 560.35.03"]
    assert book.baseline("llama") is None, "the new environment has no baseline yet"
    book.add_run("llama", completed(dict(FIGS, ttft_p50_seconds=0.3)))
    assert book.baseline("llama") is None, "one run is not yet a candidate"
    recorded = book.record_baseline("llama", last=1)
    assert recorded.how == "recorded" and recorded.figures["ttft_p50_seconds"] == 0.3
    again = PerfBook(str(tmp_path), baseline_runs=2)  # a restart reads the book back
    assert again.baseline("llama", old).figures == FIGS and again.baseline("llama").figures["ttft_p50_seconds"] == 0.3
    assert again.last_change("llama")["what"] == "driver 550.54.15 -> 560.35.03"


def test_recording_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="llm-agent bench llama"):
        PerfBook(str(tmp_path)).record_baseline("llama")


def test_a_full_disk_keeps_the_book_in_memory(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "perf").write_text("not a directory")  # every write fails
    book = PerfBook(str(state), baseline_runs=1)
    book.add_run("llama", completed(FIGS))
    assert book.write_errors >= 1 and book.baseline("llama").figures == FIGS


def test_a_corrupt_book_is_set_aside_not_fatal(tmp_path):
    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "llama.json").write_text("{torn")
    assert PerfBook(str(tmp_path)).runs("llama") == []


# -- the collector: schedule, idleness, series -----------------------------------------------------

def collector(tmp_path, busy, clock, book=None, **kw):
    book = book or PerfBook(str(tmp_path), baseline_runs=kw.pop("baseline_runs", 2))
    return PerfCollector("llama", ProbeSpec("http://x"), book, SPEC, interval=3600, idle_for=60, tolerance=0.15,
                         quality=kw.pop("quality", []), quality_interval=3600, busy=busy, clock=clock,
                         probe_fn=kw.pop("probe_fn", fake_probe()), start=False, **kw)


def test_a_due_benchmark_waits_for_idle_for_and_never_runs_blind(tmp_path):
    now, busy = [0.0], [1.0]
    c = collector(tmp_path, lambda: busy[0], lambda: now[0])
    now[0] = 400.0  # past the first run's delay
    c.tick()
    assert sum(c.outcomes.values()) == 0, "busy: not now"
    busy[0] = None
    c.tick()
    assert sum(c.outcomes.values()) == 0, "cannot tell: never blind"
    busy[0] = 0.0
    c.tick()
    now[0] += 59
    c.tick()
    assert sum(c.outcomes.values()) == 0, "idle 59 s of the 60 needed"
    now[0] += 1
    c.tick()
    assert c.outcomes["completed"] == 1 and c.tokens > 0
    now[0] += 120
    c.tick()
    assert c.outcomes["completed"] == 1, "the next one at the schedule"
    c.request_run()  # llm-agent bench
    c.tick()
    assert c.outcomes["completed"] == 2


def test_the_schedule_sleeps_until_something_is_due_and_a_request_wakes_it(tmp_path):
    """Nothing due: the thread sleeps until the next run (5 minutes at most), not a look every
    5 s; a due benchmark looks every idle_for / 4 for the server to be idle; `llm-agent bench`
    (through the book, as the API asks) wakes the sleeping thread at once."""
    now = [0.0]
    book = PerfBook(str(tmp_path))
    c = collector(tmp_path, lambda: 1.0, lambda: now[0], book=book)  # first run 300 s after start
    assert c.sleep_for() == 300.0
    now[0] = 200.0
    assert c.sleep_for() == 100.0
    now[0] = 301.0
    c.tick()  # due, busy
    assert c.sleep_for() == 5.0, "due: a look every few seconds for idleness"
    book.request_run("llama")
    assert c._wake.is_set() and c.sleep_for() == 5.0

    runs = []
    live = PerfCollector("live", ProbeSpec("http://x"), book, SPEC, interval=3600, idle_for=60, tolerance=0.15,
                         quality=[], quality_interval=3600, busy=lambda: 0.0, probe_fn=fake_probe(),
                         run=lambda *a, **k: runs.append(1) or BenchRun(outcome="failed", detail="test"))
    try:
        time.sleep(0.2)  # asleep: its first run is 300 s away
        book.request_run("live")
        wait_until(lambda: runs, 3, what="the requested run")
    finally:
        live.close()


def test_a_reload_that_rebuilds_a_targets_collector_keeps_its_schedule(tmp_path):
    """The new collector is built before the old one is closed: closing the old must not take
    the name's schedule (and its `llm-agent bench` door) from the new one."""
    book = PerfBook(str(tmp_path))
    old = collector(tmp_path, lambda: 1.0, lambda: 0.0, book=book)
    new = collector(tmp_path, lambda: 1.0, lambda: 0.0, book=book)
    old.close()
    assert book.schedule("llama") == (True, 60)
    book.request_run("llama")
    assert new._wake.is_set()
    new.close()
    assert book.schedule("llama") is None


def test_series_carry_figures_baseline_and_a_regression_with_what_changed(tmp_path):
    now = [0.0]
    book = PerfBook(str(tmp_path), baseline_runs=2)
    book.observe_environment("llama", Environment("m.gguf", "b1", "H100", "550"))
    c = collector(tmp_path, lambda: 0.0, lambda: now[0], book=book)
    for _ in range(2):
        book.add_run("llama", completed(FIGS))
    book.observe_environment("llama", Environment("m.gguf", "b1", "H100", "550"))
    book.add_run("llama", completed(dict(FIGS, generation_tokens_per_second_cN=60.0), at=2000.0))
    snap = Snapshot(0, tuple(c.collect()))
    assert snap.value("llm_agent_bench_result", figure="generation_tokens_per_second_cN") == 60.0
    assert snap.value("llm_agent_bench_baseline", figure="generation_tokens_per_second_cN") == 90.0
    [slow] = [s for s in snap.samples("llm_agent_bench_slowdown_ratio") if s.label("figure").endswith("_cN")]
    assert slow.value == pytest.approx(1.5) and slow.label("current") == "60" and slow.label("baseline") == "90"
    frames = [(t, [f for f in snap.families if f.name == "llm_agent_bench_slowdown_ratio"]) for t in range(0, 30, 5)]
    assert fire(("LlmPerformanceRegression",), frames) == [("LlmPerformanceRegression", "firing")]


def test_the_environment_is_followed_from_the_cycle_and_a_change_pages_info(tmp_path):
    book = PerfBook(str(tmp_path))
    derive = ServingEnvironment(book, clock=lambda: 5000.0)

    def view(driver):
        return Snapshot(0, (gauge("llm_agent_target_info", "").add({"server": "llama", "model": "m", "build": "b1"}, 1),
                            gauge("llm_agent_nvml_info", "").add({"driver_version": driver}, 1),
                            gauge("llm_agent_gpu_up", "").add({"gpu": "0", "modelName": "NVIDIA H100"}, 1)))

    first = Snapshot(0, tuple(derive.derive(view("550.54.15"))))
    assert first.samples("llm_agent_serving_environment_changed") == []
    assert first.samples("llm_agent_serving_environment_info")[0].label("gpu") == "NVIDIA H100"
    book.clock = lambda: 5000.0
    changed = Snapshot(0, tuple(derive.derive(view("560.35.03"))))
    [s] = changed.samples("llm_agent_serving_environment_changed")
    assert s.label("what") == "driver 550.54.15 -> 560.35.03"
    frames = [(t, list(changed.families)) for t in range(0, 20, 5)]
    assert fire(("LlmServingEnvironmentChanged",), frames) == [("LlmServingEnvironmentChanged", "firing")]


# -- the quality set -------------------------------------------------------------------------------

def test_answers_are_checked_by_regex_exact_text_or_number():
    assert check(QualityCase("c", "p", regex="(?i)paris"), "It is Paris.")[0]
    assert not check(QualityCase("c", "p", regex="(?i)paris"), "Lyon")[0]
    assert check(QualityCase("c", "p", exact="blue"), "  blue\n")[0]
    assert not check(QualityCase("c", "p", exact="blue"), "blue.")[0]
    assert check(QualityCase("c", "p", number=42.0), "The answer is 42.")[0]
    assert check(QualityCase("c", "p", number=3.14, tolerance=0.01), "about 3.141")[0]
    assert not check(QualityCase("c", "p", number=42.0), "forty-two")[0]
    assert first_number("1,234 tokens") == 1234 and first_number("3,5") == 3.5 and first_number("x") is None


def test_fuzzed_answers_never_break_the_checks():
    import random

    rng = random.Random(3)
    cases = [QualityCase("r", "p", regex=r"\d+"), QualityCase("e", "p", exact="x"), QualityCase("n", "p", number=1.0)]
    for _ in range(3000):
        answer = "".join(rng.choice("0123456789.,-+eE x\n\u00e9") for _ in range(rng.randint(0, 20)))
        for case in cases:
            assert isinstance(check(case, answer)[0], bool)


def test_the_score_is_the_fraction_passed_and_a_drop_below_the_baseline_pages(tmp_path):
    answers = {"capital": "Paris", "sum": "42", "echo": "red"}

    def probe(spec):
        name = next(k for k in answers if k in spec.prompt)
        return ProbeResult(True, ttft=0.1, tokens=2, text=answers[name])

    cases = [QualityCase("capital", "capital?", regex="Paris"), QualityCase("sum", "sum?", number=42.0),
             QualityCase("echo", "echo?", exact="red")]
    score, results, tokens = run_quality(ProbeSpec("http://x"), cases, probe)
    assert score == 1.0 and all(results.values()) and tokens == 6
    book = PerfBook(str(tmp_path), baseline_runs=1)
    c = collector(tmp_path, lambda: 0.0, lambda: 0.0, book=book, quality=cases, probe_fn=probe)
    c.run_quality()
    answers["echo"] = "blue"  # a new quantisation answers differently
    c.run_quality()
    snap = Snapshot(0, tuple(c.collect()))
    assert snap.value("llm_agent_quality_score") == pytest.approx(2 / 3)
    assert snap.value("llm_agent_quality_baseline") == 1.0
    assert snap.value("llm_agent_quality_case_passed", case="echo") == 0
    names = ("llm_agent_quality_score", "llm_agent_quality_baseline")
    frames = [(t, [f for f in snap.families if f.name in names]) for t in range(0, 400, 15)]
    assert fire(("LlmQualityDrop",), frames) == [("LlmQualityDrop", "firing")]


def test_the_canary_is_a_case_of_the_quality_set(tmp_path):
    from agent.plugins import Context
    from agent.config import TargetConfig, parse_config
    from agent.perf.collector import _build

    config = parse_config('[probes]\ncanary_regex = "OK"\n[bench]\nenabled = false\n'
                          '[[quality]]\nname = "sum"\nprompt = "2+2"\nexpect_number = 4\n')
    ctx = Context(config, state_dir=str(tmp_path), perf_book=PerfBook(str(tmp_path)))
    c = _build(ctx, TargetConfig("llama", "http://127.0.0.1:1"))
    try:
        assert [q.name for q in c.quality] == ["sum", "canary"] and c.quality[1].regex == "OK"
    finally:
        c.close()


def test_quality_config_errors_name_the_key_and_line():
    from agent.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"\(string\):5: quality\[0\]\.expect_number: give one of"):
        parse_config('[[quality]]\nname = "a"\nprompt = "p"\nexpect_regex = "x"\nexpect_number = 3\n')
    with pytest.raises(ConfigError, match="expect_regex"):
        parse_config('[[quality]]\nname = "a"\nprompt = "p"\nexpect_regex = "(unclosed"\n')
    with pytest.raises(ConfigError, match="no \\[\\[targets\\]\\] entry is named 'nope'"):
        parse_config('[[targets]]\nname = "t"\nurl = "http://x:1"\n[[quality]]\nname = "a"\nprompt = "p"\n'
                     'targets = ["nope"]\n')


def test_perf_book_file_is_plain_json_an_operator_can_read(tmp_path):
    book = PerfBook(str(tmp_path))
    book.add_run("llama", completed(FIGS))
    doc = json.loads((tmp_path / "perf" / "llama.json").read_text())
    assert doc["runs"][0]["figures"] == FIGS and os.path.getsize(tmp_path / "perf" / "llama.json") < 10_000


# -- history rules: a week of a series against its last half hour, from the history file -------------

def test_a_throughput_drop_against_its_week_is_found_in_the_history_file_and_pages(tmp_path):
    """Eight days of tokens/s (a daily wave and noise) written to a real history file at 5-minute
    steps, the last 40 minutes 45% lower: the history rule's z-score falls below -3 and
    LlmThroughputAnomaly fires after its 30 minutes; an idle server is not compared."""
    import math
    import random

    from agent.perf.anomaly import HistoryRules, load_history_rules
    from agent.tsdb.query import Querier
    from agent.tsdb.store import HistoryStore

    t0 = 1_767_225_600.0
    now = [t0]
    store = HistoryStore(str(tmp_path / "history.db"), clock=lambda: now[0])
    rng = random.Random(5)
    steps = 8 * 288
    tokens = 0.0
    for i in range(steps):
        now[0] = t0 + 300 * i
        tps = 100 + 15 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3)
        if i >= steps - 8:
            tps *= 0.55
        tokens += tps * 300
        lbl = {"server": "llama", "engine": "llamacpp", "model": "m"}
        fams = (gauge("llm_agent_generation_tokens_per_second", "").add(lbl, tps),
                gauge("llm_agent_requests_running", "").add(lbl, 2),
                MetricFamily("llm_agent_generation_tokens_total", "counter", "").add(lbl, tokens))
        store.append(Snapshot(now[0], fams))
        store.maintain(now[0])
        store.settle()
    querier = Querier(store, lambda: now[0])
    rules = [r for r in load_history_rules() if r.record == "llm_agent:generation_tokens_per_second:zscore_7d"]
    history = HistoryRules(lambda expr, t, steps: querier.instant(expr, t, steps=steps)[0], rules, clock=lambda: now[0],
                           start=False, session=querier.session)  # as the daemon builds it
    history.evaluate()
    [fam] = [f for f in history.families() if f.name == rules[0].record]
    z = fam.samples[0].value
    assert z < -3, z
    frames = [(now[0] + t, [fam]) for t in range(0, 2000, 60)]
    assert fire(("LlmThroughputAnomaly",), frames) == [("LlmThroughputAnomaly", "firing")]
    history.evaluate(now[0] - 3 * 86400)  # three days ago: an ordinary afternoon
    normal = [f for f in history.families() if f.name == rules[0].record]
    assert normal and abs(normal[0].samples[0].value) < 3
    store.close()


def test_every_history_rule_parses_and_a_failing_one_is_counted_not_fatal():
    from agent.perf.anomaly import HistoryRules, load_history_rules
    from agent.promql.parser import parse

    rules = load_history_rules()
    assert len(rules) >= 8
    for r in rules:
        parse(r.expr)

    inside, sessions = [], []

    @contextlib.contextmanager
    def session():
        sessions.append("open")
        yield
        sessions[-1] = "closed"

    def query(expr, t, steps):
        inside.append(sessions[-1:] == ["open"])
        if "cost" in expr:
            raise RuntimeError("too many samples")
        return {"resultType": "vector", "result": [{"metric": {"server": "a"}, "value": [t, "1.5"]}]}

    h = HistoryRules(query, rules, start=False, session=session)
    h.evaluate(1000.0)
    assert sessions == ["closed"] and inside == [True] * len(rules), "a round's queries share one session, closed"
    snap = Snapshot(0, tuple(h.families()))
    assert snap.value("llm_agent_history_rule_failures_total", rule="llm_agent:cost_per_1k_tokens:trend_ratio_7d") == 1
    assert snap.value("llm_agent:probe_ttft_seconds:zscore_7d", server="a") == 1.5


def test_the_api_never_makes_a_book_for_a_name_a_client_made_up(tmp_path):
    from agent.serve.perf_api import PerfAPI

    book = PerfBook(str(tmp_path))
    book.add_run("llama", completed(FIGS))
    api = PerfAPI(book, lambda client, method, headers: None, lambda: 0.15)
    for i in range(50):
        code, body, _ = api.handle("GET", f"/api/v1/perf?target=made-up-{i}", "127.0.0.1")
        assert code == 404 and b"llama" in body
        assert api.handle("POST", f"/api/v1/perf/baseline?target=made-up-{i}", "127.0.0.1")[0] == 404
    assert book.servers() == ["llama"] and set(book._books) == {"llama"}
    code, body, _ = api.handle("GET", "/api/v1/perf", "127.0.0.1")
    assert code == 200 and json.loads(body)["targets"]["llama"]["last_run"]["outcome"] == "completed"


def test_a_hostile_metrics_body_leaves_the_guard_unable_to_tell_not_stuck():
    from agent.perf.collector import MAX_SAMPLES, server_busy
    from tests.support.httpservers import RouteServer, static

    from agent.collectors.http import HttpClient

    huge = b"".join(b"vllm:num_requests_running{i=\"%d\"} 0\n" % i for i in range(MAX_SAMPLES + 10))
    with RouteServer({"/metrics": static(huge)}) as srv:
        assert server_busy(HttpClient(srv.url), "/metrics") is None, "unknown counts as busy: no benchmark"
    with RouteServer({"/metrics": static(b"vllm:num_requests_running 2\nvllm:num_requests_waiting 1\n")}) as srv:
        assert server_busy(HttpClient(srv.url), "/metrics") == 3


def test_a_routers_models_are_one_environment_not_a_change_every_cycle(tmp_path):
    book = PerfBook(str(tmp_path))
    derive = ServingEnvironment(book)
    info = gauge("llm_agent_target_info", "")
    info.add({"server": "router", "model": "beta", "build": "b1"}, 1).add({"server": "router", "model": "alpha", "build": "b1"}, 1)
    for _ in range(3):
        snap = Snapshot(0, tuple(derive.derive(Snapshot(0, (info,)))))
    assert snap.samples("llm_agent_serving_environment_changed") == [] and book.last_change("router") is None
    assert snap.samples("llm_agent_serving_environment_info")[0].label("model") == "alpha,beta"


def test_a_server_with_thousands_of_models_has_a_bounded_environment(tmp_path):
    """Issue 27: a router churning 100,000 model names: the serving environment (a label, a book
    on disk, a change event each cycle) is named by the list's size and digest past 512 characters."""
    book = PerfBook(str(tmp_path), 3, lambda: 1000.0)
    deriver = ServingEnvironment(book, clock=lambda: 1000.0)
    for cycle in range(3):
        info = gauge("llm_agent_target_info", "")
        for i in range(20_000):
            info.add({"server": "router", "model": f"c{cycle}-model-{i}", "build": "b1"}, 1)
        fams = deriver.derive(Snapshot(1000.0, (info,)))
    labels = [v for f in fams for s in f.samples for _, v in s.labels]
    assert max(len(v) for v in labels) <= 600, max(len(v) for v in labels)
    assert sum(p.stat().st_size for p in (tmp_path / "perf").iterdir()) < 20_000
