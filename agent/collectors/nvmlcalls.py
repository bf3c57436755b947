"""NVML calls that may never return.

A wedged driver or GPU makes an NVML call block forever (nvidia-smi hangs the same way). So
the per-GPU readings run in a reader thread the collector can leave behind: the collector
waits for each cycle's readings until a deadline; a GPU whose call has not returned by then is
*stuck* (which call, since when), is left out, and is not called again until that call
returns; the other GPUs are read by a fresh reader. At most one thread is ever blocked per
stuck GPU, so threads cannot pile up however long the hang lasts.

A stuck call is named from the reader thread's own stack when it is found stuck (the
outermost `nvml*` frame: the function the collector called), not noted on each call: a wrapper
around every call cost more than the calls (~40 per GPU per cycle) with the fake module, and
was paid on every cycle for the rare hang.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from .. import threads


def running_call(thread: threading.Thread) -> str:
    """The NVML function `thread` is inside now: the outermost frame named nvml* on its stack
    (pynvml's own helpers, or a fake's, lie inside it)."""
    frame = sys._current_frames().get(thread.ident or 0)
    name = "(between calls)"
    while frame is not None:
        if frame.f_code.co_name.startswith("nvml"):
            name = frame.f_code.co_name
        frame = frame.f_back
    return name


@dataclass
class Stuck:
    """A GPU whose NVML call has not returned."""
    call: str
    since: float  # monotonic time the GPU's reading began: the call began then or a little after


@dataclass
class _Job:
    """One cycle's readings for a reader: GPUs in order, each GPU's result as it finishes."""
    gpus: List[Any]
    done: List[Tuple[Any, Any]] = field(default_factory=list)  # (gpu, its result)
    current: Optional[Any] = None  # the GPU being read now
    since: float = 0.0  # when its reading began (monotonic)
    error: Optional[BaseException] = None
    finished: threading.Event = field(default_factory=threading.Event)


class GpuReader:
    """Reads GPUs through `read(gpu)` in a thread of its own, each cycle until a deadline;
    a GPU whose call outlives it is noted stuck and skipped until the call returns."""

    def __init__(self, read: Callable[[Any], Any], key: Callable[[Any], int],
                 clock: Callable[[], float] = time.monotonic):
        self.read = read
        self.key = key
        self.clock = clock
        self.stuck: Dict[int, Stuck] = {}  # GPU key -> what it is stuck in
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._jobs: List[_Job] = []
        self._wake = threading.Event()
        self._left: Optional[threading.Thread] = None
        self.left_behind = 0  # readers left blocked in a call (one per stuck GPU, at most)

    def readings(self, gpus: Sequence[Any], wait: float) -> List[Tuple[Any, Any]]:
        """This cycle's results for the GPUs not stuck, in order; those whose call outlives
        `wait` seconds are noted stuck and left out. Raises what `read` raised."""
        remaining = [g for g in gpus if self.key(g) not in self.stuck]
        results: List[Tuple[Any, Any]] = []
        deadline = self.clock() + wait
        while remaining:
            job = _Job(list(remaining))
            thread = self._ensure_thread()
            with self._lock:
                self._jobs.append(job)
            self._wake.set()
            job.finished.wait(max(0.0, deadline - self.clock()))
            with self._lock:
                done = list(job.done)
                current = job.current if not job.finished.is_set() else None
                since = job.since
            results.extend(done)
            if job.error is not None:
                raise job.error
            if current is None:
                break
            self.stuck[self.key(current)] = Stuck(running_call(thread), since)
            self._leave(thread, job)
            finished = {self.key(g) for g, _ in done}
            remaining = [g for g in remaining if self.key(g) not in finished and g is not current]
            if self.clock() >= deadline:
                break  # the rest wait for the next cycle
        return results

    def _ensure_thread(self) -> threading.Thread:
        if self._thread is None or not self._thread.is_alive():
            self._wake = threading.Event()
            self._thread = threads.daemon(self._run, "nvml-reader", self._wake)
            self._thread.start()
        return self._thread

    def _leave(self, thread: threading.Thread, job: _Job) -> None:
        """The reader is blocked in a call: it is left to finish that call and then end; the
        next cycle starts another."""
        job.gpus.clear()  # it reads nothing after the stuck call returns
        self._thread = None
        self.left_behind += 1
        with self._lock:
            self._jobs.clear()
        self._wake.set()  # (a no-op for the blocked thread; the next one gets a new event)

    def _run(self, wake: threading.Event) -> None:
        me = threading.current_thread()
        while True:
            wake.wait()
            with self._lock:
                if self._thread is not me:
                    return  # left behind: a newer reader took over
                wake.clear()
                job = self._jobs.pop(0) if self._jobs else None
            if job is None:
                continue
            try:
                while job.gpus:
                    gpu = job.gpus.pop(0)
                    job.current, job.since = gpu, self.clock()
                    result = self.read(gpu)
                    with self._lock:
                        job.current = None
                        if self._thread is not me:  # left behind while in that call: the GPU is free again
                            self.stuck.pop(self.key(gpu), None)
                            self.left_behind -= 1
                            return
                        job.done.append((gpu, result))
            except BaseException as e:  # noqa: BLE001 - handed to the collector, which decides
                with self._lock:
                    job.current = None
                    if self._thread is not me:
                        self.stuck.pop(self.key(gpu), None)
                        self.left_behind -= 1
                        return
                job.error = e
            job.finished.set()

    def stuck_for(self) -> List[Tuple[int, Stuck, float]]:
        """(GPU key, what it is stuck in, seconds so far) for each stuck GPU."""
        now = self.clock()
        return [(k, s, now - s.since) for k, s in sorted(self.stuck.items())]

    def close(self) -> None:
        with self._lock:
            self._thread = None
            self._jobs.clear()
        self._wake.set()


__all__ = ["GpuReader", "Stuck", "running_call"]
