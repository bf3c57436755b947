"""One benchmark of one target, engine-neutral (through the probe's streamed request), that
never hurts users.

Figures, each from fixed prompts at temperature 0 with a fixed seed:
- prompt_tokens_per_second: a long prompt (`prompt_tokens`), one token out: prompt tokens
  (as the server counted them, where it says) over the time to the first token;
- generation_tokens_per_second_c1: `generate_tokens` tokens, one request at a time;
- generation_tokens_per_second_cN: the same at the server's slot count (at most
  `max_concurrency`), all tokens over the wall time;
- ttft_p50_seconds, ttft_p95_seconds: over `requests` short requests, one at a time.

The guard (`Guard`) reads what the server says it is doing (requests running and waiting,
from the engine-neutral table) and the benchmark hangs up the moment a request that is not
its own runs or waits: the run is "yielded", counted, and tried again later. Every request's
tokens and time are counted as the benchmark's cost.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .. import threads
from ..probes.completion import ProbeResult, ProbeSpec, run_probe

FIGURES = ("prompt_tokens_per_second", "generation_tokens_per_second_c1", "generation_tokens_per_second_cN",
           "ttft_p50_seconds", "ttft_p95_seconds")
HIGHER_IS_BETTER = {"prompt_tokens_per_second", "generation_tokens_per_second_c1", "generation_tokens_per_second_cN"}
PROMPT_SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank. "  # ~13 tokens in most tokenizers


@dataclass(frozen=True)
class BenchSpec:
    prompt_tokens: int = 512
    generate_tokens: int = 128
    requests: int = 8
    concurrency: int = 2  # the server's slots, at most [bench] max_concurrency
    timeout: float = 60.0


@dataclass
class BenchRun:
    """What one run measured, and what it cost."""

    outcome: str  # completed | yielded | failed
    figures: Dict[str, float] = field(default_factory=dict)
    tokens: int = 0  # prompt and generated tokens the run cost the server
    seconds: float = 0.0
    detail: str = ""
    started_at: float = 0.0  # wall clock
    fitted: str = ""  # how the run was fitted to the server's context per slot ("" : as configured)


class Yielded(Exception):
    """A user request arrived: the benchmark hung up."""


def long_prompt(tokens: int, per_sentence: float = 13.0) -> str:
    """A fixed prompt of about `tokens` tokens (`per_sentence`: what one sentence costs in this
    server's tokenizer; ~13 in most)."""
    return PROMPT_SENTENCE * max(1, int(tokens // max(1.0, per_sentence)))


CALIBRATION_SENTENCES = 4
MARGIN = 16  # tokens of the context left free: the chat template's own, and the answer's first


def fit(spec: BenchSpec, context: Optional[int], per_sentence: float) -> "tuple[BenchSpec, str]":
    """The spec fitted to `context` tokens per slot (None: unknown, as configured): generation
    at most a quarter of the context, the long prompt what is left after a margin. Returns the
    spec and what was changed, in words (the run's result says what it used)."""
    if not context:
        return spec, ""
    generate = max(4, min(spec.generate_tokens, context // 4))
    prompt = max(int(per_sentence), min(spec.prompt_tokens, context - MARGIN - 1))
    if (generate, prompt) == (spec.generate_tokens, spec.prompt_tokens):
        return spec, ""
    return (dataclasses.replace(spec, prompt_tokens=prompt, generate_tokens=generate),
            f"fitted to {context} tokens of context per slot: prompt ~{prompt} tokens, {generate} generated "
            f"(configured {spec.prompt_tokens} and {spec.generate_tokens})")


class Guard:
    """Watches the server while a benchmark runs: `busy()` says how many requests run and
    wait there (None when it cannot tell); the benchmark's own are subtracted. Polled on its
    own thread every `every` seconds; the moment a foreign request shows, `cancel` is set and
    every request in flight hangs up at its next token.

    The server's count is a snapshot taken somewhere inside the poll, so it is compared with
    the most of our own requests in flight at any moment of the poll (`peak`), never with the
    count after it: one of ours that ended while the poll was answered is still in the
    snapshot, and is not a user."""

    def __init__(self, busy: Callable[[], Optional[float]], every: float = 0.25):
        self.busy = busy
        self.every = every
        self.cancel = threading.Event()
        self.mine = 0  # the benchmark's requests in flight
        self.peak = 0  # the most of them in flight since the current poll began
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Guard":
        self._thread = threads.daemon(self._watch, "bench-guard")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            with self.lock:
                self.peak = self.mine
            seen = self.busy()
            with self.lock:
                mine = self.peak
            if seen is not None and seen > mine:
                self.cancel.set()
                return

    def started(self) -> None:
        with self.lock:
            self.mine += 1
            self.peak = max(self.peak, self.mine)

    def finished(self) -> None:
        with self.lock:
            self.mine -= 1


def run_benchmark(base: ProbeSpec, spec: BenchSpec, guard: Guard,
                  probe: Callable[[ProbeSpec], ProbeResult] = run_probe,
                  clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                  context: Optional[int] = None) -> BenchRun:
    """Run every figure's requests; stop at the first sign of a user (yielded) or failure.
    `context`: the server's context per slot, where it says: the run is fitted to it (a
    production server with many small slots refuses a 512-token prompt)."""
    run = BenchRun("completed", started_at=wall())
    start = clock()
    common = dataclasses.replace(base, timeout=spec.timeout, cancel=guard.cancel, ignore_eos=True)

    def one(prompt: str, max_tokens: int) -> ProbeResult:
        if guard.cancel.is_set():
            raise Yielded()
        guard.started()
        try:
            result = probe(dataclasses.replace(common, prompt=prompt, max_tokens=max_tokens))
        finally:
            guard.finished()
        run.tokens += result.tokens + (result.prompt_tokens or 0)
        if result.error == "cancelled" or guard.cancel.is_set():
            raise Yielded()
        if not result.success:
            raise RuntimeError(f"{result.error}: {result.detail}"[:200])
        return result

    try:
        per_sentence = 13.0
        if context:  # what a sentence costs in this server's tokenizer, as the server counts it
            calib = one(PROMPT_SENTENCE * CALIBRATION_SENTENCES, 1)
            if calib.prompt_tokens:
                per_sentence = max(1.0, calib.prompt_tokens / CALIBRATION_SENTENCES)
        spec, run.fitted = fit(spec, context, per_sentence)
        pp = one(long_prompt(spec.prompt_tokens, per_sentence), 1)
        prompt_n = pp.prompt_tokens or spec.prompt_tokens
        run.figures["prompt_tokens_per_second"] = prompt_n / pp.ttft if pp.ttft else 0.0
        gen = one("Count slowly from one to one thousand.", spec.generate_tokens)
        run.figures["generation_tokens_per_second_c1"] = _generation_rate([gen])
        n = max(1, spec.concurrency)
        t0 = clock()
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(lambda _: one("Count slowly from one to one thousand.", spec.generate_tokens),
                                    range(n)))
        run.figures["generation_tokens_per_second_cN"] = sum(r.tokens for r in results) / max(1e-9, clock() - t0)
        ttfts = [one("Reply with the single word OK.", 4).ttft or 0.0 for _ in range(max(2, spec.requests))]
        from statistics import median  # start-up cost: the module pulls in fractions and decimal
        run.figures["ttft_p50_seconds"] = median(ttfts)
        run.figures["ttft_p95_seconds"] = _p95(ttfts)
    except Yielded:
        run.outcome, run.figures, run.detail = "yielded", {}, "a user request arrived: hung up"
    except RuntimeError as e:
        run.outcome, run.figures, run.detail = "failed", {}, str(e)
    run.seconds = clock() - start
    return run


def _generation_rate(results: List[ProbeResult]) -> float:
    """Tokens per second after the first token (the decode speed), from the server's stream."""
    r = results[0]
    if r.tpot:
        return 1.0 / r.tpot
    return r.tokens / r.duration if r.duration else 0.0


def _p95(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
