"""Is a live process actually serving? Hang and stall detection for one target.

- Hung: the process behind the port is alive (a stopped process counts) but the target's
  health check has not answered for `hang_after` seconds, timed from the start of the first
  request that timed out (not from the cycle that noticed it). After a timeout the target is
  checked again at once (`recheck`: the daemon runs its next cycle now rather than at the
  tick), with a health request that times out exactly when `hang_after` is reached, so the
  verdict lands hang_after after the first silent request, whatever the interval.
- Stalled: requests are being processed but no token has been generated for `stall_after`
  seconds (counters flat), or /metrics times out while /health still answers.
- Wedged: the server answers (its /health, or its /metrics for a server without one) while
  requests run or wait, and none of the engine's progress counters (generated and prompt
  tokens, finished requests, scheduling steps: whichever it exports) has moved for
  `wedge_after` seconds: vLLM's engine core stuck behind a live API server, a llama.cpp slot
  that hangs. A saturated engine still moves them (tokens flow while the queue grows), so it
  is never wedged.
On the moment a target becomes hung or stalled, a Python server's stacks are dumped with
py-spy in the background (agent/stacks.py).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from ..model import MetricFamily, Problem, gauge
from ..collectors.process import ProcessCollector, is_python


MIN_RECHECK = 0.5  # seconds a re-check's health request is given, however close hang_after is


class Liveness:
    def __init__(self, server: str, clock: Callable[[], float], process: Optional[ProcessCollector] = None,
                 stacks=None, hang_after: float = 5.0, stall_after: float = 60.0,
                 recheck: Callable[[], None] = lambda: None, wedge_after: float = 30.0):
        self.server = server
        self.wedge_after = wedge_after
        self._progress: Dict[str, float] = {}  # the progress counters as last read
        self.frozen_since: Optional[float] = None  # since when work is queued and no counter moved
        self.frozen: List[str] = []  # the counters watched (all frozen while wedged)
        self.wedged = False
        self.recheck = recheck
        self.clock = clock
        self.process = process
        self.stacks = stacks
        self.hang_after = hang_after
        self.stall_after = stall_after
        self.timeout_since: Optional[float] = None
        self.metrics_timeout_since: Optional[float] = None
        self.last_progress: Optional[float] = None
        self.hung = False
        self.stalled = False

    def health_deadline(self, start: float, deadline: float) -> float:
        """The deadline for this cycle's health request: while a hang is suspected (the last
        one timed out), the moment hang_after is reached, so the verdict is not a whole
        request timeout late; at least MIN_RECHECK seconds to answer."""
        if self.timeout_since is None or self.hung:
            return deadline
        return min(deadline, max(start + MIN_RECHECK, self.timeout_since + self.hang_after))

    def observe(self, health_timed_out: bool, metrics_timed_out: bool = False, busy: Optional[bool] = None,
                progressed: bool = False, asked_at: Optional[float] = None) -> None:
        """One cycle's findings; `asked_at` is when the health request that timed out was sent."""
        now = self.clock()
        first = asked_at if asked_at is not None else now
        self.timeout_since = (self.timeout_since if self.timeout_since is not None else first) if health_timed_out else None
        self.metrics_timeout_since = (self.metrics_timeout_since or now) if metrics_timed_out else None
        if progressed or not busy:
            self.last_progress = now
        elif self.last_progress is None:
            self.last_progress = now
        waited = self.timeout_since is not None and now - self.timeout_since >= self.hang_after
        hung = waited and self.process is not None and self.process.alive()  # /proc read only when needed
        flat = bool(busy) and now - (self.last_progress or now) >= self.stall_after
        slow_metrics = self.metrics_timeout_since is not None and now - self.metrics_timeout_since >= self.stall_after
        stalled = not hung and (flat or slow_metrics)
        if (hung and not self.hung) or (stalled and not self.stalled):
            self._dump("hung" if hung else "stalled")
        self.hung, self.stalled = hung, stalled
        if health_timed_out and not hung and self.process is not None and self.process.alive():
            self.recheck()  # a live process that did not answer: decide at hang_after, not at the next tick

    def observe_progress(self, answered: bool, queued: Optional[bool], progress: Dict[str, float]) -> None:
        """This cycle's work in the engine: whether it answered, whether requests run or wait,
        and its progress counters."""
        now = self.clock()
        moved = any(self._progress.get(name) != value for name, value in progress.items()) or not self._progress
        self._progress = dict(progress)
        if not answered or not queued or not progress or moved:
            self.frozen_since = None if not (answered and queued and progress) else now
        elif self.frozen_since is None:
            self.frozen_since = now
        self.frozen = sorted(progress)
        wedged = self.frozen_since is not None and now - self.frozen_since >= self.wedge_after and not self.hung
        if wedged and not self.wedged:
            self._dump("wedged")
        self.wedged = wedged

    def _dump(self, reason: str) -> None:
        proc = self.process.proc if self.process is not None else None
        if self.stacks is not None and proc is not None and is_python(proc):
            self.stacks.capture(self.server, proc.pid, f"{self.server} {reason}")

    def families(self) -> List[MetricFamily]:
        lbl = {"server": self.server}
        fams = [gauge("llm_agent_target_stalled", "Whether the target is processing requests without producing tokens (1).")
                .add(lbl, 1 if self.stalled else 0)]
        if self.frozen:
            fams.append(gauge("llm_agent_target_wedged", "Whether the engine answers while requests run or wait and "
                                                         "none of its progress counters moves (1), naming them.")
                        .add({**lbl, "counters": ", ".join(self.frozen)}, 1 if self.wedged else 0))
        if self.process is not None and self.process.local:
            fams.append(gauge("llm_agent_target_hung", "Whether the target's process is alive but its health check "
                                                        "keeps timing out (1).").add(lbl, 1 if self.hung else 0))
        return fams

    def problems(self) -> List[Problem]:
        found = []
        dump = self.stacks.latest.get(self.server) if self.stacks is not None else None
        where = f"; stacks: {dump.summary} (full dump: {dump.path})" if dump is not None and dump.path else ""
        if self.hung:
            found.append(Problem("critical", f"target {self.server}",
                                 f"hung: the process is alive but has not answered for {self.hang_after:g}s{where}",
                                 "look at the stacks; restart the server if it does not recover"))
        if self.wedged:
            found.append(Problem("critical", f"target {self.server}",
                                 f"wedged: it answers, requests are queued, and {', '.join(self.frozen)} have not moved "
                                 f"for {self.wedge_after:g}s{where}", "look at the stacks and the GPU; restart the server"))
        if self.stalled:
            found.append(Problem("critical", f"target {self.server}",
                                 f"stalled: requests are in progress but no tokens for {self.stall_after:g}s{where}",
                                 "look at the stacks and the GPU (XID errors, utilisation)"))
        return found
