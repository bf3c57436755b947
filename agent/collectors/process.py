"""The process behind a target's port: its resources, its restarts, and its exit the moment it
happens.

`find_listener()` maps a TCP port to the process listening on it (psutil). `ProcessCollector`
exports that process's RSS, CPU, file descriptors, threads, start time and GPU memory (from the
NVML collector's per-process table). `ExitWatcher` polls the known processes several times a
second and calls back when one exits, so a crash is paged in about a second instead of at the
next cycle.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import Callable, Dict, List, Optional, Set, Tuple
from urllib.parse import urlsplit

import psutil

from .. import threads
from ..model import MetricFamily, Snapshot, counter, gauge
from .gpu_owner import parse_cgroup
from .kernelfiles import KernelFile, open_fds, read_small
from .lifecycle import Exit
from .procfiles import parse_pid_stat
from .unitstate import UnitStates
from ..plugins import Context, register_deriver

log = logging.getLogger(__name__)


FIND_AGAIN = 15.0  # seconds before a port whose process was not found is searched again
# after its process exited (and for a new target), the port is searched every time for this
# long: a restarted server is found again within a cycle, so the exit watcher can page on its
# next crash at once (a 15 s wait cost a crash right after a restart up to a cycle's delay)
RESTART_WINDOW = 60.0
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def find_listener(port: int) -> Optional[int]:
    """The pid listening on TCP `port`, or None (not found, or not ours to see)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


def is_python(proc: psutil.Process) -> bool:
    """Whether the process is a Python interpreter (not merely installed under site-packages)."""
    try:
        names = [proc.name()] + [os.path.basename(a) for a in proc.cmdline()[:1]]
    except (psutil.Error, OSError):
        return False
    return any(n.lower().startswith("python") for n in names)


class ProcessCollector:
    """Metrics of the process serving one target."""

    inline = True  # reads memory or /proc only (see runner.Collector)

    def __init__(self, server: str, url: str, finder: Callable[[int], Optional[int]] = find_listener,
                 units: Optional[UnitStates] = None, clock: Callable[[], float] = time.monotonic, unit: str = ""):
        self.name = f"process:{server}"
        self.server = server
        self.port = urlsplit(url).port or 80
        self.local = urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1", "0.0.0.0")
        self.finder = finder
        self._next_find = 0.0
        self._searching_until = time.monotonic() + RESTART_WINDOW
        self.proc: Optional[psutil.Process] = None
        self.starts = 0
        self._identity: Optional[Tuple[psutil.Process, int]] = None  # the process and its start (ticks after boot)
        self._stat: Optional[KernelFile] = None  # the process's /proc/<pid>/stat, kept open while it lives
        self.problems: List = []
        self.units = units  # systemd, asked when the process exits: was it stopped on purpose?
        self.clock = clock
        self.configured_unit = unit  # [[targets]] unit: wins over what the cgroup says
        self.unit = unit  # the systemd service the current process runs in ("" : none, or not known)
        self.last_exit: Optional[Exit] = None
        self.on_found: Callable[[], None] = lambda: None  # the exit watcher's: a new process to watch now

    def current(self, check: bool = True) -> Optional[psutil.Process]:
        """The live process behind the port, re-found when the last one is gone."""
        if self.proc is not None:
            if not check:
                return self.proc
            try:
                if self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE:
                    return self.proc
            except psutil.Error:
                pass
            self._lost()
        if not self.local:
            return None
        now = time.monotonic()
        if now < self._next_find and now >= self._searching_until:
            return None
        pid = self.finder(self.port)
        if pid is None:
            # psutil.net_connections() reads every process's file descriptors: on a busy host,
            # milliseconds; a port nobody we can see listens on is looked at again in a while
            self._next_find = now + FIND_AGAIN
            return None
        try:
            self.proc = psutil.Process(pid)
            self.starts += 1
        except psutil.Error:
            return None
        self.on_found()
        # its unit, read now: once it has exited, /proc no longer says which service it was
        unit = self.configured_unit or parse_cgroup(read_small(f"/proc/{pid}/cgroup")).get("unit", "")
        self.unit = "" if unit.startswith("user@") else unit  # a user's manager is not the system's to ask
        return self.proc

    def _lost(self) -> None:
        """The process is gone: note how it ended (systemd stopping or restarting its unit, or
        not), then look for the next one on the port at every cycle for a while."""
        if self.proc is not None:
            planned = self.units.exit_was_planned(self.unit) if self.units is not None else None
            self.last_exit = Exit(self.clock(), planned, self.unit)
            if planned:
                log.info("target %s: its process %d exited as systemd stopped or restarted %s", self.server,
                         self.proc.pid, self.unit, extra={"TARGET": self.server})
        self.proc = None
        self._searching_until = time.monotonic() + RESTART_WINDOW  # it will likely be restarted

    def alive(self) -> bool:
        """Whether a process still holds the target's port (a stopped one counts as alive)."""
        return self.current() is not None

    def collect(self) -> List[MetricFamily]:
        proc = self.current(check=False)  # its liveness is read below, from the same /proc/<pid>/stat
        lbl = {"server": self.server}
        found = gauge("llm_agent_target_process_found", "Whether the process listening on the target's port was found (1) or not (0).")
        if proc is None:
            return [found.add(lbl, 0)]
        try:
            # /proc read directly (procfiles.py): psutil's oneshot cost ~3x as much, every cycle
            stat = parse_pid_stat(self._stat_file(proc.pid).read())
            if self._identity is None or self._identity[0] is not proc:
                self._identity = (proc, stat.start)
            if stat.state == "Z" or stat.start != self._identity[1]:
                raise ProcessLookupError(proc.pid)  # a zombie, or the pid now names another process
            values = [("resident_memory_bytes", "gauge", "Resident memory of the target's process.", stat.rss * PAGE),
                      ("cpu_seconds_total", "counter", "CPU time of the target's process.",
                       (stat.utime + stat.stime) / TICKS),
                      ("threads", "gauge", "Threads in the target's process.", stat.threads),
                      ("start_time_seconds", "gauge", "Start time of the target's process (a change is a restart).",
                       proc.create_time())]
        except (ProcessLookupError, ValueError, IndexError, psutil.Error):  # gone: its files read as b""
            self._lost()  # the next cycle looks for a new process on the port
            return [found.add(lbl, 0)]
        try:
            values.append(("open_fds", "gauge", "Open file descriptors of the target's process.",
                           open_fds(f"/proc/{proc.pid}/fd")))
        except OSError:  # another user's process: its descriptors are not ours to count
            pass
        fams = [found.add(lbl, 1), gauge("llm_agent_target_process_info", "The pid behind the target; always 1.")
                .add({**lbl, "pid": str(proc.pid)}, 1)]
        fams += [MetricFamily(f"llm_agent_target_process_{name}", mtype, help_).add(lbl, v)
                 for name, mtype, help_, v in values]
        fams.append(counter("llm_agent_target_process_changes_total",
                            "Times a new process was found behind the target's port.").add(lbl, self.starts))
        return fams

    def _stat_file(self, pid: int) -> KernelFile:
        path = f"/proc/{pid}/stat"
        if self._stat is None or self._stat.path != path:
            self.close()
            self._stat = KernelFile(path)
        return self._stat

    def close(self) -> None:
        if self._stat is not None:
            self._stat.close()
            self._stat = None


class ProcessGpuMemory:
    """llm_agent_target_process_gpu_memory_bytes{server}: this cycle's per-process GPU memory
    from NVML (all GPUs) joined with this cycle's pid behind each target (a runner.Deriver)."""

    name = "process_gpu_memory"
    reads = ("llm_agent_gpu_process_memory_bytes", "llm_agent_target_process_info")

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        by_pid: Dict[str, float] = {}
        for s in view.samples("llm_agent_gpu_process_memory_bytes"):
            by_pid[s.label("pid")] = by_pid.get(s.label("pid"), 0.0) + s.value
        fam = gauge("llm_agent_target_process_gpu_memory_bytes", "GPU memory the target's process uses (NVML, all GPUs).")
        for s in view.samples("llm_agent_target_process_info"):
            used = by_pid.get(s.label("pid"))
            if used is not None:
                fam.add({"server": s.label("server")}, used)
        return [fam]


class ExitWatcher:
    """Calls `on_exit(server)` when a watched target's process ends. It only reads the collectors'
    current process; the collector itself notices the exit and looks for a new one in its own
    cycle (one owner for its state).

    Where the kernel gives a process descriptor (pidfd, Linux 5.3+), the watcher sleeps in one
    poll on them and wakes only when a process exits or the set changes: nothing to pay while
    nothing happens (a check of every process every 0.2 s cost the daemon 25 wake-ups and ~100
    /proc reads per 5 s cycle with four servers). A process it cannot open a descriptor for is
    checked every `period` seconds, as before."""

    def __init__(self, on_exit: Callable[[str], None], period: float = 0.2):
        self.on_exit = on_exit
        self.period = period
        self.watched: Dict[str, ProcessCollector] = {}
        self.wakeups = 0  # turns of the loop: what the watcher costs while nothing exits
        self._pids: Dict[str, int] = {}  # server -> the pid set() last saw
        self._reported: Dict[str, int] = {}  # server -> the pid whose exit was already reported
        self._fds: Dict[str, Tuple[int, int]] = {}  # server -> (pid, its pidfd); the watcher's thread's own
        self._polled: Set[Tuple[str, int]] = set()  # (server, pid) whose pidfd is not to be trusted
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threads.daemon(self._loop, "exit-watcher")
        self._thread.start()

    def set(self, collectors: List[ProcessCollector]) -> None:
        """The processes to watch now (each cycle): the loop is woken only if one changed. Each
        collector tells the watcher when it finds a new process (mid-cycle: a server found in the
        first cycle is watched from then, not from the next cycle, 30 s later at a long interval)."""
        self.watched = {c.server: c for c in collectors}
        for c in collectors:
            c.on_found = self.refresh
        for server in [s for s in list(self._reported) if s not in self.watched]:  # bounded by today's targets
            del self._reported[server]
        self.refresh()

    def refresh(self) -> None:
        """Wake the loop if a watched process changed since it last looked."""
        pids = {server: c.proc.pid for server, c in list(self.watched.items()) if c.proc is not None}
        if pids != self._pids:
            self._pids = pids
            self._wake()

    def _wake(self) -> None:
        if self._wake_w < 0:  # closed
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # the pipe is full (a wake is pending anyway) or closed
            pass

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        ready: List[int] = []
        try:
            while not self._stop.is_set():
                self.wakeups += 1
                self._check()
                self._distrust(poller, ready)
                polled_only = self._open_descriptors(poller)
                ready = [fd for fd, _ in poller.poll(int(self.period * 1000) if polled_only else None)]
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except OSError:  # drained (EAGAIN)
                    pass
        finally:
            for _, fd in self._fds.values():
                os.close(fd)

    def _distrust(self, poller: "select.poll", ready: List[int]) -> None:
        """A pidfd that said its process ended while the process still runs by /proc's account
        would wake the loop at once forever: that process is polled every period instead."""
        for server, (pid, fd) in list(self._fds.items()):
            if fd in ready and self._reported.get(server) != pid:
                poller.unregister(fd)
                os.close(fd)
                del self._fds[server]
                self._polled.add((server, pid))

    def _open_descriptors(self, poller: "select.poll") -> bool:
        """A pidfd in the poll for each live watched process, none for the others; True if some
        process has none (the loop then polls them every period)."""
        wanted: Dict[str, int] = {}
        for server, c in list(self.watched.items()):
            proc = c.proc
            if proc is not None and self._reported.get(server) != proc.pid:
                wanted[server] = proc.pid
        for server, (pid, fd) in list(self._fds.items()):
            if wanted.get(server) != pid:
                poller.unregister(fd)
                os.close(fd)
                del self._fds[server]
        self._polled &= set(wanted.items())  # bounded by today's processes
        polled_only = bool(self._polled)
        for server, pid in wanted.items():
            if server in self._fds or (server, pid) in self._polled:
                continue
            try:
                fd = os.pidfd_open(pid)  # Linux only
            except (AttributeError, OSError):  # not Linux, an old kernel, or the process just ended
                polled_only = True  # the next check (within a period) sees an exit
                continue
            if not self._same_process(server, pid):  # it ended before the open, its pid taken again
                os.close(fd)
                polled_only = True
                continue
            self._fds[server] = (pid, fd)
            poller.register(fd, select.POLLIN)
        return polled_only

    def _same_process(self, server: str, pid: int) -> bool:
        c = self.watched.get(server)
        try:
            return c is not None and c.proc is not None and c.proc.pid == pid and c.proc.is_running()
        except psutil.Error:
            return False

    def _check(self) -> None:
        for server, c in list(self.watched.items()):
            proc = c.proc
            if proc is None or self._reported.get(server) == proc.pid:
                continue
            try:
                gone = not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                gone = True
            if gone:
                self._reported[server] = proc.pid
                log.warning("target %s: its process %d exited", server, proc.pid, extra={"TARGET": server})
                try:
                    self.on_exit(server)
                except Exception:  # the watcher must outlive a bad callback
                    log.error("exit callback failed", exc_info=log.isEnabledFor(logging.DEBUG))

    def close(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(2)
        if not self._thread.is_alive():  # the pipe is the loop's while it runs
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_w = -1


@register_deriver("process_gpu_memory")
def _build_gpu_memory(ctx: Context) -> ProcessGpuMemory:
    return ProcessGpuMemory()
