"""The performance book: each target's benchmark runs and quality runs, its baselines, and
what its serving environment is, in `state_dir/perf/` (JSON, written whole and atomically).

A baseline belongs to one environment: (target, model, server build, GPU model, driver). It
is the median of each figure over the last N completed runs in that environment, recorded by
`llm-agent baseline record` or, when an environment has none, from its first N runs (the
"candidate"). A new model, build or driver is an event of its own and starts a new candidate;
old baselines are kept, so going back to a driver finds its baseline again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .benchmark import FIGURES, HIGHER_IS_BETTER, BenchRun

log = logging.getLogger(__name__)
KEEP_RUNS = 200  # per target: at a run every 6 hours, seven weeks
ENV_FIELDS = ("model", "build", "gpu", "driver")


@dataclass(frozen=True)
class Environment:
    model: str = ""
    build: str = ""
    gpu: str = ""
    driver: str = ""

    def key(self) -> str:
        return "|".join(f"{k}={getattr(self, k)}" for k in ENV_FIELDS)

    def changes_from(self, before: "Environment") -> List[str]:
        """'driver 550.54.15 -> 560.35.03', for each field that changed (an unknown one does not count)."""
        out = []
        for k in ENV_FIELDS:
            old, new = getattr(before, k), getattr(self, k)
            if old and new and old != new:
                out.append(f"{k} {old} -> {new}")
        return out

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Environment":
        return cls(**{k: str(doc.get(k, "")) for k in ENV_FIELDS})


@dataclass
class Baseline:
    environment: Environment
    figures: Dict[str, float]
    recorded_at: float
    runs: int
    how: str  # "recorded" (by an operator) | "candidate" (from the environment's first runs)


@dataclass(frozen=True)
class Comparison:
    figure: str
    current: float
    baseline: float
    slowdown: float  # >= 1 is worse: baseline/current for speeds, current/baseline for latencies
    regressed: bool


def compare(figures: Dict[str, float], baseline: Optional[Baseline], tolerance: float) -> List[Comparison]:
    """Each figure against the baseline's; `regressed` when worse by more than `tolerance`."""
    if baseline is None:
        return []
    out = []
    for name in FIGURES:
        cur, base = figures.get(name), baseline.figures.get(name)
        if cur is None or base is None or cur <= 0 or base <= 0:
            continue
        slowdown = base / cur if name in HIGHER_IS_BETTER else cur / base
        out.append(Comparison(name, cur, base, slowdown, slowdown > 1 + tolerance))
    return out


@dataclass
class TargetBook:
    runs: List[Dict[str, Any]] = field(default_factory=list)  # oldest first: {"at", "outcome", "figures", ...}
    baselines: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # environment key -> Baseline as a dict
    environment: Dict[str, str] = field(default_factory=dict)
    environment_changes: List[Dict[str, Any]] = field(default_factory=list)  # {"at", "what"}, the last few
    quality: List[Dict[str, Any]] = field(default_factory=list)  # {"at", "score", "cases": {name: passed}}


class PerfBook:
    """Thread-safe: the benchmark threads write runs, the cycle reads and observes environments,
    the API records baselines."""

    def __init__(self, state_dir: str, baseline_runs: int = 3, clock: Callable[[], float] = time.time):
        self.dir = os.path.join(state_dir, "perf") if state_dir else ""
        self.baseline_runs = baseline_runs
        self.clock = clock
        self._lock = threading.Lock()
        self._books: Dict[str, TargetBook] = {}
        self.write_errors = 0
        # the targets with a benchmark schedule now (server -> whether benchmarks are on, their idle_for),
        # and the runs asked for through the API, taken by the target's benchmark thread
        self._schedules: Dict[str, Tuple[bool, float]] = {}
        self._requested: Set[str] = set()
        self._wakes: Dict[str, Callable[[], None]] = {}

    # -- the schedule's door: the API asks, the target's benchmark thread takes -------------------

    def attach(self, server: str, bench_enabled: bool, idle_for: float,
               wake: Callable[[], None] = lambda: None) -> None:
        """A target's schedule; `wake` is called when a run is asked for (its collector sleeps until then)."""
        with self._lock:
            self._schedules[server] = (bench_enabled, idle_for)
            self._wakes[server] = wake

    def detach(self, server: str, wake: Optional[Callable[[], None]] = None) -> None:
        """A target's schedule ends; given its `wake`, only if no newer collector took the name
        over (a reload builds the new one before it closes the old)."""
        with self._lock:
            if wake is not None and self._wakes.get(server) != wake:
                return
            self._schedules.pop(server, None)
            self._wakes.pop(server, None)
            self._requested.discard(server)

    def schedule(self, server: str) -> Optional[Tuple[bool, float]]:
        """(benchmarks on, idle_for) of a target that has a schedule now, else None."""
        with self._lock:
            return self._schedules.get(server)

    def scheduled(self) -> List[str]:
        with self._lock:
            return sorted(self._schedules)

    def request_run(self, server: str) -> None:
        """`llm-agent bench`: benchmark at the next idle moment rather than at the schedule."""
        with self._lock:
            if server not in self._schedules:
                return
            self._requested.add(server)
            wake = self._wakes.get(server)
        if wake is not None:
            wake()

    def requested(self, server: str) -> bool:
        """Whether a run was asked for and not yet taken."""
        with self._lock:
            return server in self._requested

    def take_request(self, server: str) -> bool:
        with self._lock:
            if server in self._requested:
                self._requested.discard(server)
                return True
            return False

    # -- files ----------------------------------------------------------------------------------

    def _path(self, server: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in server)
        return os.path.join(self.dir, f"{safe}.json")

    def _book(self, server: str) -> TargetBook:
        book = self._books.get(server)
        if book is None:
            book = self._books[server] = self._read(server)
        return book

    def _read(self, server: str) -> TargetBook:
        if not self.dir:
            return TargetBook()
        try:
            with open(self._path(server), encoding="utf-8") as f:
                doc = json.load(f)
            return TargetBook(**{k: doc[k] for k in TargetBook.__dataclass_fields__ if k in doc})
        except FileNotFoundError:
            return TargetBook()
        except (OSError, ValueError, TypeError) as e:
            log.warning("perf: %s unreadable (%s); starting a new one", self._path(server), e)
            return TargetBook()

    def _write(self, server: str) -> None:
        if not self.dir:
            return
        book = self._books[server]
        try:
            os.makedirs(self.dir, exist_ok=True)
            tmp = self._path(server) + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(asdict(book), f)
            os.replace(tmp, self._path(server))
        except OSError as e:  # a full disk: kept in memory, written with the next change
            self.write_errors += 1
            log.warning("perf: cannot write %s: %s", self._path(server), e)

    # -- environments ------------------------------------------------------------------------

    def observe_environment(self, server: str, env: Environment) -> List[str]:
        """The environment seen this cycle; what changed since the last one ([] if nothing)."""
        with self._lock:
            book = self._book(server)
            before = Environment.from_dict(book.environment)
            if env == before:
                return []
            merged = Environment(**{k: getattr(env, k) or getattr(before, k) for k in ENV_FIELDS})
            changes = merged.changes_from(before)
            if merged == before:
                return []
            book.environment = asdict(merged)
            if changes:
                book.environment_changes = (book.environment_changes + [{"at": self.clock(), "what": "; ".join(changes)}])[-10:]
            self._write(server)
            return changes

    def environment(self, server: str) -> Environment:
        with self._lock:
            return Environment.from_dict(self._book(server).environment)

    def last_change(self, server: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            changes = self._book(server).environment_changes
            return dict(changes[-1]) if changes else None

    # -- runs and baselines ------------------------------------------------------------------

    def add_run(self, server: str, run: BenchRun) -> None:
        with self._lock:
            book = self._book(server)
            env = Environment.from_dict(book.environment)
            book.runs = (book.runs + [{"at": run.started_at, "outcome": run.outcome, "figures": run.figures,
                                       "tokens": run.tokens, "seconds": run.seconds, "detail": run.detail,
                                       "fitted": run.fitted,
                                       "environment": asdict(env)}])[-KEEP_RUNS:]
            key = env.key()
            if run.outcome == "completed" and key not in book.baselines:
                same = self._completed(book, env)
                if len(same) >= self.baseline_runs:  # the environment's first runs: its candidate baseline
                    book.baselines[key] = asdict(self._median(env, same[-self.baseline_runs:], "candidate"))
            self._write(server)

    def record_baseline(self, server: str, last: int = 0) -> Baseline:
        """The median of the last `last` (default: baseline_runs) completed runs in the current
        environment becomes its baseline. ValueError when there are none."""
        with self._lock:
            book = self._book(server)
            env = Environment.from_dict(book.environment)
            same = self._completed(book, env)
            if not same:
                raise ValueError(f"no completed benchmark of {server} in its current environment "
                                 f"({env.key()}); run `llm-agent bench {server}` first")
            base = self._median(env, same[-(last or self.baseline_runs):], "recorded")
            book.baselines[env.key()] = asdict(base)
            self._write(server)
            return base

    def baseline(self, server: str, env: Optional[Environment] = None) -> Optional[Baseline]:
        with self._lock:
            book = self._book(server)
            env = env or Environment.from_dict(book.environment)
            doc = book.baselines.get(env.key())
            if doc is None:
                return None
            return Baseline(Environment.from_dict(doc["environment"]), dict(doc["figures"]), doc["recorded_at"],
                            doc["runs"], doc["how"])

    def last_run(self, server: str, completed: bool = False) -> Optional[Dict[str, Any]]:
        with self._lock:
            for run in reversed(self._book(server).runs):  # newest first: asked every cycle
                if not completed or run["outcome"] == "completed":
                    return dict(run)
            return None

    def runs(self, server: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._book(server).runs]

    def servers(self) -> List[str]:
        """Targets with something in the book (its files are named after them)."""
        with self._lock:
            names = {n for n, b in self._books.items() if b.runs or b.quality or b.environment}
        if self.dir and os.path.isdir(self.dir):
            names |= {n[:-5] for n in os.listdir(self.dir) if n.endswith(".json")}
        return sorted(names)

    def reload(self, server: str) -> None:
        """Read the file again (another process, `llm-agent baseline record`, changed it)."""
        with self._lock:
            self._books.pop(server, None)

    def _completed(self, book: TargetBook, env: Environment) -> List[Dict[str, Any]]:
        return [r for r in book.runs if r["outcome"] == "completed" and Environment.from_dict(r["environment"]) == env]

    def _median(self, env: Environment, runs: List[Dict[str, Any]], how: str) -> Baseline:
        figures = {}
        for name in FIGURES:
            values = [r["figures"][name] for r in runs if name in r["figures"]]
            if values:
                from statistics import median  # start-up cost: the module pulls in fractions and decimal
                figures[name] = median(values)
        return Baseline(env, figures, self.clock(), len(runs), how)

    # -- quality -----------------------------------------------------------------------------

    def add_quality(self, server: str, score: float, cases: Dict[str, bool]) -> None:
        with self._lock:
            book = self._book(server)
            book.quality = (book.quality + [{"at": self.clock(), "score": score, "cases": cases}])[-KEEP_RUNS:]
            self._write(server)

    def quality_baseline(self, server: str) -> Optional[float]:
        """The score the quality set is held to: the best of the first runs in this environment
        (its candidate), or the score recorded with the benchmark baseline."""
        with self._lock:
            book = self._book(server)
            doc = book.baselines.get(Environment.from_dict(book.environment).key())
            if doc is not None and "quality" in doc.get("figures", {}):
                return float(doc["figures"]["quality"])
            first = book.quality[: self.baseline_runs]
            return max(q["score"] for q in first) if len(first) >= self.baseline_runs else None

    def last_quality(self, server: str) -> Optional[Dict[str, Any]]:
        """The last quality run (what each cycle exports: no copy of the whole list)."""
        with self._lock:
            runs = self._book(server).quality
            return dict(runs[-1]) if runs else None


def figures_table(comparisons: List[Comparison]) -> List[Tuple[str, str, str, str]]:
    """Rows for the CLI and the report: figure, current, baseline, change."""
    rows = []
    for c in comparisons:
        change = (1 / c.slowdown - 1) if c.figure in HIGHER_IS_BETTER else (c.slowdown - 1)
        rows.append((c.figure, f"{c.current:.4g}", f"{c.baseline:.4g}",
                     f"{change * 100:+.1f}%" + ("  REGRESSED" if c.regressed else "")))
    return rows
