"""Run every collector side by side, each against its own timeout, and build the Snapshot.

The runner owns isolation and self-metrics (node_exporter's `execute()`): a collector that
raises loses only its own series, one that overruns costs one timeout and is skipped (and
counted) while it is still busy, and every collector always gets
`llm_agent_collector_success` and `llm_agent_collector_duration_seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Protocol, Sequence, Tuple

from . import threads
from .model import CollectorStatus, MetricFamily, Problem, Shapes, Snapshot, counter, gauge, merge_families

log = logging.getLogger(__name__)


class Deriver(Protocol):
    """Something worked out from this cycle's results (tokens/s into cost per token, NVML's
    per-process memory joined with the process behind each target): `derive(view)` reads
    only the merged families of this cycle's collectors and of the derivers before it (tokens
    per second from the engine-neutral counters, then cost per token), never another
    collector's live state, and runs after them, in the runner's thread, isolated and timed
    like a collector.
    `reads` names the families it needs: only those are merged into its view."""

    name: str
    reads: Tuple[str, ...]

    def derive(self, view: Snapshot) -> Iterable[MetricFamily]: ...


class Collector(Protocol):
    """One source. `collect()` returns fresh families; `problems` (optional) describes what
    the last collect found wrong, for `check`; `close()` (optional) releases resources;
    `inline = True` (optional) marks a collector that only reads memory or /proc and cannot
    block: it runs in the runner's own thread, saving a thread hand-off per cycle."""

    name: str

    def collect(self) -> Iterable[MetricFamily]: ...


class _Outcome(NamedTuple):
    """One collector's run: what it returned and what it cost."""

    families: List[MetricFamily]
    problems: Tuple[Problem, ...]
    duration: float  # wall seconds
    cpu: float  # seconds of its thread's CPU
    error: str


def _run_one(collector: Collector, view: Optional[Snapshot] = None) -> _Outcome:
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        families = list(collector.derive(view) if view is not None else collector.collect())  # type: ignore[attr-defined]
        error = ""
    except Exception as e:  # isolation is the point: no collector takes the agent down
        log.warning("collector %s failed: %s", collector.name, e, exc_info=log.isEnabledFor(logging.DEBUG))
        families, error = [], f"{type(e).__name__}: {e}"
    problems = tuple(getattr(collector, "problems", ()) or ())
    return _Outcome(families, problems, time.perf_counter() - start, time.thread_time() - cpu, error)


HEDGE_AFTER = 0.05  # seconds a collector may hold every lane before another lane starts


class _Lanes:
    """This cycle's threaded collectors, run one after another on as few threads as keep them
    isolated. A thread per collector woke a dozen threads at once on every cycle, and their
    GIL hand-offs cost more CPU than the collectors' own work (bench_agent.py: 13-16 ms per
    cycle with a thread each, 12 ms in one lane). One lane takes the queue in turn; whenever
    every lane has been inside one collector for HEDGE_AFTER (a slow or hung source), another
    lane starts on the rest, so a hung source delays the others by HEDGE_AFTER at most,
    never by its timeout."""

    def __init__(self, pool: ThreadPoolExecutor, todo: List[Tuple[Collector, Future]], hedge_after: float):
        self.pool = pool
        self.queue = deque(todo)
        self.hedge_after = hedge_after
        self.cond = threading.Condition()
        self.busy_since: Dict[int, float] = {}  # lane -> when its current collector started
        self.lanes = 0
        if self.queue:
            self._start_lane()

    def _start_lane(self) -> None:
        self.lanes += 1
        self.busy_since[self.lanes] = time.monotonic()  # counts as busy until it takes its first
        self.pool.submit(self._lane, self.lanes)

    def _lane(self, lane: int) -> None:
        while True:
            with self.cond:
                if not self.queue:
                    self.busy_since.pop(lane, None)
                    self.cond.notify_all()
                    return
                collector, fut = self.queue.popleft()
                self.busy_since[lane] = time.monotonic()
            try:
                fut.set_result(_run_one(collector))
            except BaseException as e:  # _run_one catches Exception; this is KeyboardInterrupt and kin
                fut.set_exception(e)
            # no notify here: the waiter wakes once, when a lane finds the queue empty (above), not
            # after each collector (a wake-up costs ~0.13 ms of CPU on a small VM, and a cycle has a
            # dozen collectors); it looks at the lanes' progress at its hedge deadline anyway

    def wait(self, futures: Sequence[Future], deadline: float) -> None:
        """Until every future is done or the deadline passes, starting lanes as needed."""
        with self.cond:
            while not all(f.done() for f in futures):
                now = time.monotonic()
                if now >= deadline:
                    while self.queue:  # never started (every lane hung): they run afresh next cycle
                        self.queue.popleft()[1].cancel()
                    return
                # the lane that took a collector last: when it too is held up, every lane is
                held_up_at = max(self.busy_since.values(), default=now) + self.hedge_after
                if self.queue and now >= held_up_at:
                    self._start_lane()  # the rest must not wait on a slow source
                    held_up_at = now + self.hedge_after
                wake = min(deadline, held_up_at) if self.queue else deadline
                self.cond.wait(max(0.001, wake - now))


class Runner:
    """Collects from `collectors` once per `run()`; keeps in-flight work across cycles."""

    def __init__(self, collectors: Sequence[Collector], timeout: float,
                 clock: Callable[[], float] = time.time, max_threads: int = 32, derivers: Sequence[Deriver] = (),
                 hedge_after: float = HEDGE_AFTER):
        self.collectors = list(collectors)
        self.derivers = list(derivers)
        self.timeout = timeout
        self.hedge_after = hedge_after
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="collector",
                                        initializer=threads.name_os_thread)
        self._inflight: Dict[str, Future] = {}
        self.derive_cpu = 0.0  # the last run's CPU in its derivers, in the calling thread
        self._overruns: Dict[str, int] = {}
        self._cpu: Dict[str, float] = {}
        self._errors: Dict[str, int] = {}
        self.conflicts_total = 0
        self._shapes = Shapes()  # what the last merge learnt of each family (model.Shapes)
        self._view_shapes = Shapes()  # and the derivers' view's

    def set_collectors(self, collectors: Sequence[Collector]) -> None:
        """Swap the collector set (discovery found new targets, or a reload); closes the
        collectors that are not in the new set."""
        kept = {id(c) for c in collectors}
        names = {c.name for c in collectors}
        for old in self.collectors:
            if id(old) not in kept:
                getattr(old, "close", lambda: None)()
        for per_name in (self._inflight, self._overruns, self._errors, self._cpu):  # bounded by today's set
            for name in [n for n in per_name if n not in names]:
                del per_name[name]
        self.collectors = list(collectors)

    def run(self, extra: Iterable[MetricFamily] = ()) -> Snapshot:
        """One cycle: collect everything, then merge it with `extra` into a Snapshot."""
        now = self.clock()
        begun = time.monotonic()
        started: Dict[str, Future] = {}
        statuses: List[CollectorStatus] = []
        inline = []
        todo: List[Tuple[Collector, Future]] = []
        for c in self.collectors:
            if getattr(c, "inline", False):
                inline.append(c)
                continue
            busy = self._inflight.get(c.name)
            if busy is not None and not busy.done():
                self._overruns[c.name] = self._overruns.get(c.name, 0) + 1
                statuses.append(CollectorStatus(c.name, False, 0.0, "previous run still busy"))
                continue
            started[c.name] = self._inflight[c.name] = Future()
            todo.append((c, started[c.name]))
        lanes = _Lanes(self._pool, todo, self.hedge_after)
        groups: List[Tuple[str, List[MetricFamily]]] = []
        problems: List[Problem] = []
        for c in inline:  # while the others work in their lane
            self._record(c.name, _run_one(c), groups, problems, statuses)
        lanes.wait(list(started.values()), begun + self.timeout)
        for name, fut in started.items():
            if not fut.done() or fut.cancelled():
                self._overruns[name] = self._overruns.get(name, 0) + 1
                statuses.append(CollectorStatus(name, False, self.timeout, f"timed out after {self.timeout:g}s"))
                problems.append(Problem("warning", f"collector {name}", f"did not finish within {self.timeout:g}s",
                                        "a source is hanging; its series are missing until it answers"))
                continue
            self._record(name, fut.result(), groups, problems, statuses)
        derive_from = time.thread_time()
        if self.derivers:  # stage two: worked out from this cycle's results alone
            wanted = {name for d in self.derivers for name in d.reads}
            view = Snapshot(now, tuple(merge_families([[f for _, g in groups for f in g if f.name in wanted]],
                                                      self._view_shapes)[0]))
            for d in self.derivers:  # in order: each sees what the ones before it derived
                outcome = _run_one(d, view)  # type: ignore[arg-type]
                self._record(d.name, outcome, groups, problems, statuses)
                view = view.with_families([f for f in outcome.families if f.name in wanted and view.family(f.name) is None])
        self.derive_cpu = time.thread_time() - derive_from  # the cycle's split of its CPU (daemon.cycle)
        statuses.sort(key=lambda s: s.name)
        own = self._self_metrics(statuses)
        # the agent's own families first, what targets pass through last: in a clash, ours win
        foreign = {c.name for c in self.collectors if getattr(c, "foreign", False)}
        ordered = [own, list(extra)] + [g for n, g in groups if n not in foreign] + [g for n, g in groups if n in foreign]
        families, conflicts = merge_families(ordered, self._shapes)
        if conflicts:
            self.conflicts_total += len(conflicts)
            log.warning("dropped %d conflicting series, first: %s", len(conflicts), conflicts[0])
            problems.append(Problem("warning", "exposition", f"{len(conflicts)} conflicting series dropped: {conflicts[0]}",
                                    "two targets export the same series; give them distinct names or labels"))
        # this cycle's count, known only after the merge; the sample is ours to set
        own[-1].samples[0].value = float(self.conflicts_total)
        return Snapshot(now, tuple(families), tuple(statuses), tuple(problems))

    def _record(self, name: str, outcome: _Outcome, groups: List[Tuple[str, List[MetricFamily]]], problems: List[Problem],
                statuses: List[CollectorStatus]) -> None:
        groups.append((name, outcome.families))
        problems.extend(outcome.problems)
        statuses.append(CollectorStatus(name, not outcome.error, outcome.duration, outcome.error))
        self._cpu[name] = self._cpu.get(name, 0.0) + outcome.cpu
        if outcome.error:
            self._errors[name] = self._errors.get(name, 0) + 1
            problems.append(Problem("warning", f"collector {name}", f"failed: {outcome.error}"))

    def _self_metrics(self, statuses: Sequence[CollectorStatus]) -> List[MetricFamily]:
        success = gauge("llm_agent_collector_success", "Whether the collector succeeded in the last cycle (1) or not (0).")
        duration = gauge("llm_agent_collector_duration_seconds", "How long the collector took in the last cycle.")
        overruns = counter("llm_agent_collector_overruns_total",
                           "Cycles in which the collector timed out or was skipped because its previous run was still busy.")
        errors = counter("llm_agent_collector_errors_total", "Cycles in which the collector raised an error.")
        cpu = counter("llm_agent_collector_cpu_seconds_total", "CPU time the collector's runs have spent in their thread.")
        for s in statuses:
            lbl = {"collector": s.name}
            success.add(lbl, 1 if s.success else 0)
            duration.add(lbl, s.duration)
            overruns.add(lbl, self._overruns.get(s.name, 0))
            errors.add(lbl, self._errors.get(s.name, 0))
            cpu.add(lbl, self._cpu.get(s.name, 0.0))
        conflicts = counter("llm_agent_snapshot_conflicts_total",
                            "Series dropped because two sources exported the same series or clashing types.")
        conflicts.add({}, self.conflicts_total)
        return [success, duration, overruns, errors, cpu, conflicts]

    def close(self) -> None:
        """Close every collector and stop the worker threads (not waiting for hung ones)."""
        for c in self.collectors:
            try:
                getattr(c, "close", lambda: None)()
            except Exception as e:  # closing must not stop shutdown
                log.debug("closing %s: %s", c.name, e)
        self._pool.shutdown(wait=False)
