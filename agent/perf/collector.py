"""Scheduled benchmarks and the quality set for one target, on their own thread; `collect()`
only reads what they recorded (like the probe). And the deriver that follows each target's
serving environment (model, build, GPU model, driver) from the cycle's own series.

The benchmark waits until the server has had no request running or waiting for `idle_for`
(asked every few seconds, only while a run is due), yields the moment a foreign request
shows (Guard), and is retried `retry_after` later; its tokens and seconds are counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from .. import threads
from ..collectors.engines import engine_sources, source_total
from ..collectors.http import FetchError, HttpClient
from ..collectors.llamacpp import parse_props
from ..plugins import Context, register_deriver, register_per_target
from ..config import TargetConfig
from ..expfmt import parse_text
from ..model import MetricFamily, Snapshot, counter, gauge
from ..probes.collector import probe_spec
from ..digest import sha256_hex
from ..probes.completion import ProbeSpec, run_probe
from .benchmark import FIGURES, BenchRun, BenchSpec, Guard, run_benchmark
from .book import Environment, PerfBook, compare
from .quality import QualityCase, run_quality

log = logging.getLogger(__name__)
RUNNING = engine_sources("llm_agent_requests_running")
WAITING = engine_sources("llm_agent_requests_waiting")
OUTCOMES = ("completed", "yielded", "failed")
MAX_SAMPLES = 200_000  # what the guard parses of a target's /metrics, polled 4x/s during a run


def server_busy(client: HttpClient, metrics_path: str, timeout: float = 2.0) -> Optional[float]:
    """Requests running plus waiting, as the server's own metrics say (None: it cannot tell)."""
    try:
        body = client.get(metrics_path, timeout, 16 << 20).body
    except FetchError:
        return None
    parsed = parse_text(body.decode("utf-8", "replace"), max_samples=MAX_SAMPLES)
    if parsed.exceeded:
        return None  # a body this large is not a serving engine's: cannot tell
    by_name = {f.name: f for f in parsed.families}
    running, waiting = source_total(by_name, RUNNING), source_total(by_name, WAITING)
    if running is None and waiting is None:
        return None
    return (running or 0.0) + (waiting or 0.0)


def server_context(client: HttpClient, kind: str, timeout: float = 2.0) -> Optional[int]:
    """The context per slot the server says it has: llama-server's /props (n_ctx of a slot),
    vLLM's /v1/models (max_model_len); None where it does not say."""
    try:
        if kind == "llamacpp":
            return parse_props(client.get("/props", timeout, 1 << 20).json()).context_tokens
        if kind == "openmetrics":
            models = client.get("/v1/models", timeout, 1 << 20).json()
            lengths = [m.get("max_model_len") for m in models.get("data", []) if isinstance(m, dict)]
            return min((n for n in lengths if isinstance(n, int) and n > 0), default=None)
    except (FetchError, ValueError, AttributeError, TypeError):
        return None
    return None


class PerfCollector:
    """The benchmark and quality schedule of one target, and their series."""

    inline = True  # reads memory only (see runner.Collector)

    def __init__(self, server: str, probe: ProbeSpec, book: PerfBook, spec: BenchSpec, interval: float,
                 idle_for: float, tolerance: float, quality: List[QualityCase], quality_interval: float,
                 busy: Callable[[], Optional[float]], bench_enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic, run=run_benchmark, probe_fn=run_probe,
                 start: bool = True, context: Callable[[], Optional[int]] = lambda: None):
        self.name = f"perf:{server}"
        self.server = server
        self.probe = probe
        self.book = book
        self.spec = spec
        self.interval = interval
        self.idle_for = idle_for
        self.tolerance = tolerance
        self.quality = quality
        self.quality_interval = quality_interval
        self.busy = busy
        self.context = context  # the server's context per slot, asked before each run
        self.bench_enabled = bench_enabled
        self.clock = clock
        self._run = run
        self._probe_fn = probe_fn
        self.problems: List = []
        self.outcomes = {k: 0 for k in OUTCOMES}
        self.tokens = 0
        self.seconds = 0.0
        self.quality_runs = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a stop, or a run asked for
        self._now = threading.Event()  # `llm-agent bench`: run at the next idle moment
        self.idle_since: Optional[float] = None
        self._next_bench = clock() + min(interval, 300.0)  # the first soon after start, when idle
        self._next_quality = clock() + 60.0 if quality else float("inf")
        self._thread = threads.daemon(self._loop, f"perf-{server}")
        book.attach(server, bench_enabled, idle_for, self._wake.set)  # the API asks the book, never this collector
        if start:
            self._thread.start()

    def request_run(self) -> None:
        """Benchmark at the next idle moment rather than at the schedule."""
        self._now.set()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.sleep_for())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception as e:  # a bug here must not end the schedule
                log.warning("perf %s: %s: %s", self.server, type(e).__name__, str(e)[:200], extra={"TARGET": self.server})

    def sleep_for(self) -> float:
        """Until the next thing due (the quality set, a benchmark's turn); while a benchmark is
        due, a look every few seconds for the server idle long enough. (A look every 5 s whatever
        was due cost four targets 0.8 ms of CPU per cycle: tests/bench/bench_realtime.py.)"""
        look = min(5.0, max(0.5, self.idle_for / 4))
        due = min(self._next_quality, self._next_bench if self.bench_enabled else math.inf)
        wait = due - self.clock()
        if wait <= 0 or self._now.is_set() or self.book.requested(self.server):
            return look
        return max(0.5, min(wait, 300.0))  # at most 5 minutes: the clock may jump

    def tick(self) -> None:
        """One look: the quality set when due; a benchmark when due and the server idle long enough."""
        if self.book.take_request(self.server):
            self._now.set()
        now = self.clock()
        if now >= self._next_quality:
            self.run_quality()
            self._next_quality = now + self.quality_interval
        due = self.bench_enabled and (now >= self._next_bench or self._now.is_set())
        if not due:
            self.idle_since = None
            return
        busy = self.busy()
        if busy is None or busy > 0:
            self.idle_since = None  # unknown counts as busy: never benchmark blind
            return
        self.idle_since = self.idle_since if self.idle_since is not None else now
        if now - self.idle_since >= self.idle_for or self._now.is_set():
            self.run_benchmark()

    def run_benchmark(self) -> BenchRun:
        context = self.context()
        with Guard(self.busy) as guard:
            run = self._run(self.probe, self.spec, guard, self._probe_fn, context=context)
        self._now.clear()
        self.idle_since = None
        with self._lock:
            self.outcomes[run.outcome] += 1
            self.tokens += run.tokens
            self.seconds += run.seconds
        # a yielded run is tried again after the next idle spell, a failed one at the schedule
        self._next_bench = self.clock() + (self.idle_for if run.outcome == "yielded" else self.interval)
        self.book.add_run(self.server, run)
        log.info("benchmark %s: %s%s%s", self.server, run.outcome,
                 "; " + ", ".join(f"{k} {v:.4g}" for k, v in run.figures.items()) if run.figures else
                 f" ({run.detail})" if run.detail else "", f" ({run.fitted})" if run.fitted else "",
                 extra={"TARGET": self.server})
        return run

    def run_quality(self) -> Tuple[float, Dict[str, bool]]:
        score, cases, tokens = run_quality(self.probe, self.quality, self._probe_fn)
        with self._lock:
            self.quality_runs += 1
            self.tokens += tokens
        self.book.add_quality(self.server, score, cases)
        return score, cases

    def collect(self) -> List[MetricFamily]:
        lbl = {"server": self.server}
        with self._lock:
            runs = counter("llm_agent_bench_runs_total", "Benchmark runs by outcome (completed, yielded to a user "
                                                         "request, failed).")
            for outcome, n in sorted(self.outcomes.items()):
                runs.add({**lbl, "outcome": outcome}, n)
            fams = [runs,
                    counter("llm_agent_bench_tokens_total", "Tokens the benchmarks and the quality set cost the "
                                                            "server (prompt and generated).").add(lbl, self.tokens),
                    counter("llm_agent_bench_seconds_total", "Seconds spent benchmarking the server.").add(lbl, self.seconds)]
        fams += self._bench_families(lbl) + self._quality_families(lbl)
        return fams

    def _bench_families(self, lbl: Dict[str, str]) -> List[MetricFamily]:
        last = self.book.last_run(self.server, completed=True)
        if last is None:
            return []
        env = Environment.from_dict(last["environment"])
        result = gauge("llm_agent_bench_result", "The last completed benchmark's figures (tokens/s, seconds), "
                                                 "by figure.")
        for name in FIGURES:
            if name in last["figures"]:
                result.add({**lbl, "model": env.model, "figure": name}, last["figures"][name])
        fams = [result, gauge("llm_agent_bench_last_run_timestamp_seconds", "When the last completed benchmark "
                                                                             "started (Unix time).").add(lbl, last["at"])]
        base = self.book.baseline(self.server, env)
        if base is None:
            return fams
        baseline = gauge("llm_agent_bench_baseline", "The baseline of each figure for the current environment "
                                                     "(model, build, GPU, driver).")
        slowdown = gauge("llm_agent_bench_slowdown_ratio", "The last benchmark against the baseline: >1 is worse "
                                                           "(baseline/current for speeds, current/baseline for latencies).")
        change = self.book.last_change(self.server)
        since = change["what"] if change and change["at"] > base.recorded_at else "nothing (same model, build, GPU, driver)"
        for c in compare(last["figures"], base, self.tolerance):
            baseline.add({**lbl, "figure": c.figure, "how": base.how}, c.baseline)
            slowdown.add({**lbl, "figure": c.figure, "current": f"{c.current:.4g}", "baseline": f"{c.baseline:.4g}",
                          "changed": since}, c.slowdown)
        return fams + [baseline, slowdown]

    def _quality_families(self, lbl: Dict[str, str]) -> List[MetricFamily]:
        last = self.book.last_quality(self.server)
        if last is None:
            return []
        cases = gauge("llm_agent_quality_case_passed", "Whether each quality case passed in the last run (1) or not (0).")
        for name, passed in sorted(last["cases"].items()):
            cases.add({**lbl, "case": name}, 1 if passed else 0)
        fams = [gauge("llm_agent_quality_score", "The fraction of quality cases the last run passed.").add(lbl, last["score"]),
                cases, counter("llm_agent_quality_runs_total", "Quality set runs.").add(lbl, self.quality_runs)]
        base = self.book.quality_baseline(self.server)
        if base is not None:
            fams.append(gauge("llm_agent_quality_baseline", "The score the quality set is held to (its first runs' "
                                                            "best, or the recorded baseline).").add(lbl, base))
        return fams

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.book.detach(self.server, self._wake.set)


MAX_JOINED = 512  # characters of a joined list of models or builds in an environment, its labels and book


def joined(values: set) -> str:
    """The names joined; a list too long for a label (a server listing thousands of models, or a
    churning one) is named by its size and a digest, so a change still shows and nothing grows."""
    text = ",".join(sorted(values - {""}))
    if len(text) <= MAX_JOINED:
        return text
    return f"{len(values - {''})} names, sha256 {sha256_hex(text, 12)}"


class ServingEnvironment:
    """Deriver: each target's model and build (llm_agent_target_info), the GPU model and the
    driver (NVML's series) into the performance book; a change is exported for an hour as
    llm_agent_serving_environment_changed (info alert LlmServingEnvironmentChanged)."""

    name = "serving_environment"
    reads = ("llm_agent_target_info", "llm_agent_nvml_info", "llm_agent_gpu_up")

    def __init__(self, book: PerfBook, clock: Callable[[], float] = time.time):
        self.book = book
        self.clock = clock

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        drivers = {s.label("driver_version") for s in view.samples("llm_agent_nvml_info")} - {""}
        gpus = sorted({s.label("modelName") for s in view.samples("llm_agent_gpu_up")} - {""})
        info = gauge("llm_agent_serving_environment_info", "What each target serves on: model, build, GPU model, "
                                                           "driver; always 1.")
        changed = gauge("llm_agent_serving_environment_changed", "A change of model, build, GPU or driver in the last "
                                                                 "hour (1), with what changed.")
        # one environment per server: a llama.cpp router has a target_info sample per loaded model,
        # taken one at a time they would look like a model change every cycle
        served: Dict[str, Tuple[set, set]] = {}
        for s in view.samples("llm_agent_target_info"):
            models, builds = served.setdefault(s.label("server"), (set(), set()))
            models.add(s.label("model"))
            builds.add(s.label("build"))
        for server, (models, builds) in sorted(served.items()):
            env = Environment(joined(models), joined(builds), ",".join(gpus), ",".join(sorted(drivers)))
            what = self.book.observe_environment(server, env)
            if what:
                log.warning("serving environment of %s changed: %s", server, "; ".join(what), extra={"TARGET": server})
            current = self.book.environment(server)
            info.add({"server": server, "model": current.model, "build": current.build, "gpu": current.gpu,
                      "driver": current.driver}, 1)
            last = self.book.last_change(server)
            if last is not None and self.clock() - last["at"] < 3600:
                changed.add({"server": server, "what": last["what"]}, 1)
        return [info, changed]


def _book(ctx: Context) -> Optional[PerfBook]:
    return ctx.perf_book if ctx.state_dir else None


@register_per_target("perf")
def _build(ctx: Context, target: TargetConfig, life: object = None) -> Optional[PerfCollector]:
    c = ctx.config
    book = _book(ctx)
    quality = [QualityCase.from_settings(q) for q in c.quality if not q.targets or target.name in q.targets]
    if c.probes.canary_regex:  # the canary is one case of the quality set
        quality.append(QualityCase("canary", c.probes.prompt, regex=c.probes.canary_regex, max_tokens=c.probes.max_tokens))
    if book is None or not target.probe or not (c.bench.enabled or quality):
        return None
    client = HttpClient(target.url, {"Authorization": f"Bearer {target.api_key}"} if target.api_key else None)
    spec = BenchSpec(c.bench.prompt_tokens, c.bench.generate_tokens, c.bench.requests, c.bench.max_concurrency,
                     c.bench.timeout)
    return PerfCollector(target.name, probe_spec(c, target), book, spec, c.bench.interval, c.bench.idle_for,
                         c.bench.tolerance, quality, c.bench.quality_interval,
                         lambda: server_busy(client, target.metrics_path), bench_enabled=c.bench.enabled,
                         context=lambda: server_context(client, target.kind))


@register_deriver("serving_environment", keep=True)
def _build_environment(ctx: Context) -> Optional[ServingEnvironment]:
    book = _book(ctx)
    return ServingEnvironment(book) if book is not None else None
