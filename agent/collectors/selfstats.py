"""The agent's own health: build, process resources, cycles, the exporter's requests."""

from __future__ import annotations

import os
import platform
import resource
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import psutil

from .. import __version__
from ..model import MetricFamily, counter, gauge
from ..plugins import Context, register
from .kernelfiles import KernelFile, open_fds

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class AgentStats:
    """What the agent knows of itself each cycle (the loop's counters and the exporter's)."""

    cycles: int = 0
    overruns: int = 0
    last_cycle_seconds: float = 0.0
    targets_configured: int = 0
    targets_discovered: int = 0
    requests: Dict[Tuple[str, str], int] = field(default_factory=dict)
    rejected: int = 0
    api_refused: int = 0
    auth_failures: int = 0
    tls_errors: int = 0
    cycle_cpu: Dict[str, float] = field(default_factory=dict)  # CPU seconds in the cycle's thread, by phase

    def add_cycle_cpu(self, **seconds: float) -> None:
        for phase, s in seconds.items():
            self.cycle_cpu[phase] = self.cycle_cpu.get(phase, 0.0) + max(0.0, s)


class SelfCollector:
    """Reads counters the daemon and exporter keep; `stats()` returns them as a dict."""

    inline = True  # reads memory or /proc only (see runner.Collector)

    name = "agent"

    def __init__(self, stats: Callable[[], AgentStats]):
        self.stats = stats
        self.started = psutil.Process(os.getpid()).create_time()
        self.problems: List = []
        self._statm = KernelFile("/proc/self/statm")

    def collect(self) -> List[MetricFamily]:
        s = self.stats()
        fams = [
            gauge("llm_agent_build_info", "The agent's version and Python; always 1.")
            .add({"version": __version__, "python_version": platform.python_version()}, 1),
            counter("llm_agent_cycles_total", "Collection cycles completed.").add({}, s.cycles),
            counter("llm_agent_cycle_overruns_total", "Cycles that took longer than the interval.")
            .add({}, s.overruns),
            gauge("llm_agent_cycle_duration_seconds", "Wall time of the previous collection cycle.")
            .add({}, s.last_cycle_seconds),
            gauge("llm_agent_targets", "Targets being scraped, by how they were found (configured, discovered).")
            .add({"source": "configured"}, s.targets_configured)
            .add({"source": "discovered"}, s.targets_discovered),
        ]
        phases = counter("llm_agent_cycle_cpu_seconds_total", "CPU time the collection cycle's own thread spent, by phase "
                         "(collect: collectors run in that thread and the wait for the rest; derive, alerting, "
                         "publish, history, other); the other threads' CPU is in process_cpu_seconds_total.")
        for phase, seconds in sorted(s.cycle_cpu.items()):
            phases.add({"phase": phase}, seconds)
        fams.append(phases)
        requests = counter("llm_agent_exporter_requests_total", "HTTP requests served by the exporter, by path and status code.")
        for (path, code), n in sorted(s.requests.items()):
            requests.add({"path": path, "code": code}, n)
        fams.append(requests)
        fams.append(counter("llm_agent_exporter_rejected_total", "Connections refused with 503 because every worker was busy.")
                    .add({}, s.rejected))
        fams.append(counter("llm_agent_exporter_api_refused_total", "API requests (queries, silences) refused with 503 "
                                                                    "because the API's queue was full.")
                    .add({}, s.api_refused))
        fams.append(counter("llm_agent_exporter_auth_failures_total", "Requests refused with 401 (missing or wrong credentials).")
                    .add({}, s.auth_failures))
        fams.append(counter("llm_agent_exporter_tls_errors_total", "TLS handshakes that failed (no or wrong client certificate, "
                                                                   "plain HTTP on the TLS port).").add({}, s.tls_errors))
        fams.extend(self._process())
        return fams

    def _process(self) -> List[MetricFamily]:
        # the standard process_* names that client libraries export for themselves, read with
        # one getrusage and two small /proc reads (psutil's oneshot cost ~10x more per cycle)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        values: List[Tuple[str, str, str, float]] = [
            ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
             usage.ru_utime + usage.ru_stime),
            ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", self.started),
            ("llm_agent_threads", "gauge", "Threads in the agent process.", threading.active_count()),
        ]
        try:
            vms, rss = (int(x) * PAGE for x in self._statm.read().split()[:2])
            values += [("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss),
                       ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vms),
                       ("process_open_fds", "gauge", "Number of open file descriptors.", open_fds("/proc/self/fd"))]
        except (OSError, ValueError):  # not Linux, or /proc hidden (read as b""): omit rather than guess
            pass
        return [MetricFamily(name, mtype, help_).add({}, v) for name, mtype, help_, v in values]


@register("agent")
def _build(ctx: Context) -> SelfCollector:
    return SelfCollector(ctx.self_stats or AgentStats)
