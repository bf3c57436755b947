"""Run the completion probe for one target on its own schedule, in its own thread, and export
what it measured. A probe never overlaps itself (one thread per target), backs off while the
target refuses connections, and never delays a collection cycle: `collect()` only reads the
recorded results."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import threads
from .. import regex
from ..model import MetricFamily, Problem, counter, gauge
from ..collectors.lifecycle import TargetLife
from ..plugins import Context, register_per_target
from ..config import TargetConfig
from .completion import ProbeResult, ProbeSpec, run_probe

log = logging.getLogger(__name__)

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TPOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ERROR_KINDS = ("timeout", "http_status", "empty", "broken_stream", "connect")


class Histogram:
    """A cumulative histogram, exported in Prometheus' layout."""

    def __init__(self, buckets: Sequence[float]):
        self.bounds = tuple(buckets) + (float("inf"),)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def family(self, name: str, help: str, labels: Dict[str, str]) -> MetricFamily:
        fam = MetricFamily(name, "histogram", help)
        for bound, n in zip(self.bounds, self.counts):
            le = "+Inf" if bound == float("inf") else repr(bound)
            fam.add({**labels, "le": le}, n, "_bucket")
        fam.add(labels, self.sum, "_sum")
        fam.add(labels, self.count, "_count")
        return fam


def error_kind(result: ProbeResult) -> str:
    if result.error.startswith("http_"):
        return "http_status"
    if result.error in ("refused", "connect"):
        return "connect"
    return result.error


class ProbeCollector:
    """The probe thread and its metrics for one target."""

    inline = True  # reads memory or /proc only (see runner.Collector)

    def __init__(self, server: str, spec: ProbeSpec, interval: float = 60.0, max_backoff: float = 600.0,
                 canary_regex: str = "", canary_baseline: bool = False, state_dir: str = "",
                 run: Callable[[ProbeSpec], ProbeResult] = run_probe, clock: Callable[[], float] = time.monotonic,
                 slow_after: float = 1.0, waiting: Callable[[], bool] = lambda: False):
        self.name = f"probe:{server}"
        self.server = server
        self.spec = spec
        self.interval = interval
        self.max_backoff = max_backoff
        self.canary = regex.compile(canary_regex) if canary_regex else None  # RE2: linear in the answer
        self.baseline_path = os.path.join(state_dir, f"canary-{re.sub(r'[^A-Za-z0-9_.-]', '_', server)}.txt") \
            if canary_baseline and state_dir else ""
        self.run = run
        self.clock = clock
        # the target has never answered, or is down or restarting (its own alerts say so): nothing to
        # measure, nothing counted; a probe would only fail and page a second time for one incident
        self.waiting = waiting
        self.problems: List = []
        self.ttft, self.tpot, self.duration = Histogram(TTFT_BUCKETS), Histogram(TPOT_BUCKETS), Histogram(DURATION_BUCKETS)
        self.errors: Dict[str, int] = {k: 0 for k in ERROR_KINDS}
        self.runs = 0
        self.slow_after = slow_after  # [slo] ttft_seconds: the latency SLI counts probes slower than this
        self.slow = 0
        self.tokens_total = 0
        self.last: Optional[ProbeResult] = None
        self.canary_match: Optional[bool] = None
        self.failures_in_a_row = 0
        self._lock = threading.Lock()
        self._made: Tuple[int, List[MetricFamily]] = (-1, [])  # (runs when made, the families then)
        self._stop = threading.Event()
        self._thread = threads.daemon(self._loop, f"probe-{server}")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.waiting():  # never up, down or restarting: not a failure of the model
                self._stop.wait(min(self.interval, 5.0))
                continue
            try:
                result = self.run(self.spec)
            except Exception as e:  # a probe bug must not end probing: counted as a failure of its own kind
                log.warning("probe %s: unexpected %s: %s", self.server, type(e).__name__, str(e)[:200],
                            extra={"TARGET": self.server})
                result = ProbeResult(False, "internal", detail=type(e).__name__)
            if result.error != "skipped":  # nothing to probe (no model loaded): neither a success nor a failure
                self.record(result)
            delay = self.interval
            if not result.success and result.error in ("refused", "connect"):
                # the target is down: probe less often until it answers again
                delay = min(self.max_backoff, self.interval * 2 ** min(self.failures_in_a_row, 10))
            self._stop.wait(delay)

    def record(self, result: ProbeResult) -> None:
        with self._lock:
            self.runs += 1
            self.last = result
            if result.success:
                self.failures_in_a_row = 0
                ttft = result.ttft or 0.0  # a successful probe always has its first token
                self.ttft.observe(ttft)
                if ttft > self.slow_after:
                    self.slow += 1
                if result.tpot is not None:
                    self.tpot.observe(result.tpot)
                self.duration.observe(result.duration)
                self.tokens_total += result.tokens
                self.canary_match = self._check_canary(result.text)
            else:
                self.failures_in_a_row += 1
                kind = error_kind(result)
                self.errors[kind] = self.errors.get(kind, 0) + 1
                log.info("probe %s failed: %s", self.server, describe(result), extra={"TARGET": self.server})

    def _check_canary(self, text: str) -> Optional[bool]:
        if self.canary is not None:
            return self.canary.search(text) is not None
        if not self.baseline_path:
            return None
        try:
            with open(self.baseline_path, encoding="utf-8") as f:
                return f.read() == text
        except FileNotFoundError:
            with open(self.baseline_path, "w", encoding="utf-8") as f:
                f.write(text)  # the first answer is the baseline (temperature 0, fixed seed)
            log.info("probe %s: recorded the canary baseline in %s", self.server, self.baseline_path)
            return True

    def collect(self) -> List[MetricFamily]:
        self.problems = []
        with self._lock:
            if self._made[0] != self.runs:  # a probe ran since (record() is the only writer)
                self._made = (self.runs, self._families())
            families, last = self._made[1], self.last
        if last is not None and not last.success:
            self.problems.append(_problem(self.server, last))
        return list(families)

    def _families(self) -> List[MetricFamily]:
        """The probes' families as of the last one (under the lock). Made again only after a
        probe: a probe runs every minute and a cycle every 5 s, and the three histograms' ~40
        series made afresh each cycle were most of the cycle thread's time in this collector.
        The same families go into each snapshot until then; no reader changes a family it is
        given (merge_families copies before adding to one)."""
        lbl = {"server": self.server}
        fams = [
            self.ttft.family("llm_agent_probe_ttft_seconds", "Time to first token of the completion probe.", lbl),
            self.tpot.family("llm_agent_probe_tpot_seconds", "Time per output token of the completion probe.", lbl),
            self.duration.family("llm_agent_probe_duration_seconds", "Total time of successful completion probes.", lbl),
            counter("llm_agent_probes_total", "Completion probes run.").add(lbl, self.runs),
            counter("llm_agent_probe_slow_total", "Successful probes whose time to first token missed the [slo] "
                                                  "ttft_seconds objective (the latency SLI).").add(lbl, self.slow),
            counter("llm_agent_probe_tokens_total", "Tokens received by completion probes (their cost to the model).")
            .add(lbl, self.tokens_total),
        ]
        errors = counter("llm_agent_probe_errors_total", "Failed completion probes by kind.")
        for kind, n in sorted(self.errors.items()):
            errors.add({**lbl, "kind": kind}, n)
        fams.append(errors)
        if self.last is not None:
            fams.append(gauge("llm_agent_probe_success", "Whether the last completion probe succeeded (1) or not (0).")
                        .add(lbl, 1 if self.last.success else 0))
        if self.canary_match is not None:
            fams.append(gauge("llm_agent_probe_canary_match",
                              "Whether the last probe answer matched the canary (regex or recorded baseline).")
                        .add(lbl, 1 if self.canary_match else 0))
        return fams

    def close(self) -> None:
        self._stop.set()


def describe(result: ProbeResult) -> str:
    """'connection refused', 'HTTP 500: <body>', 'timeout: no complete answer within 10s'."""
    kind, detail = result.error, result.detail.strip()
    if kind.startswith("http_"):
        return f"HTTP {kind[5:]}" + (f": {detail}" if detail else "")
    if not detail or kind.replace("_", " ") in detail:
        return detail or kind.replace("_", " ")
    return f"{kind.replace('_', ' ')}: {detail}"


def _problem(server: str, result: ProbeResult) -> Problem:
    return Problem("warning", f"target {server}", f"completion probe failed: {describe(result)}",
                   "the model does not answer as it should; check the server's log")


def probe_spec(c: Any, target: TargetConfig) -> ProbeSpec:
    """The probe's request for `target` (its API from the target's kind unless [probes] api
    says); the benchmark and the quality set send the same kind of request."""
    api = c.probes.api
    auto = {"llamacpp": "completion", "ollama": "ollama"}.get(target.kind, "chat")
    return ProbeSpec(target.url, api if api != "auto" else auto, c.probes.prompt, c.probes.max_tokens,
                     timeout=c.probes.timeout, model=c.probes.model, api_key=target.api_key,
                     only_loaded=c.probes.only_loaded_models)


@register_per_target("probe")
def _build(ctx: Context, target: TargetConfig, life: Optional[TargetLife] = None) -> Optional[ProbeCollector]:
    c = ctx.config
    if not c.probes.enabled or not target.probe:
        return None
    return ProbeCollector(target.name, probe_spec(c, target), c.probes.interval, canary_regex=c.probes.canary_regex,
                          canary_baseline=c.probes.canary_baseline, state_dir=ctx.state_dir,
                          slow_after=c.slo.ttft_seconds,
                          waiting=(lambda: life.state != "up") if life is not None else (lambda: False))
