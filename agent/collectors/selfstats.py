"""The agent's own health: build, process resources, cycles, the exporter's requests."""

from __future__ import annotations

import os
import platform
from typing import Callable, Dict, List, Tuple

import psutil

from .. import __version__
from ..model import MetricFamily, counter, gauge


class SelfCollector:
    """Reads counters the daemon and exporter keep; `stats()` returns them as a dict."""

    inline = True  # reads memory or /proc only (see runner.Collector)

    name = "agent"

    def __init__(self, stats: Callable[[], Dict[str, object]]):
        self.stats = stats
        self.process = psutil.Process(os.getpid())
        self.problems: List = []

    def collect(self) -> List[MetricFamily]:
        s = self.stats()
        fams = [
            gauge("llm_agent_build_info", "The agent's version and Python; always 1.")
            .add({"version": __version__, "python_version": platform.python_version()}, 1),
            counter("llm_agent_cycles_total", "Collection cycles completed.").add({}, s.get("cycles", 0)),
            counter("llm_agent_cycle_overruns_total", "Cycles that took longer than the interval.")
            .add({}, s.get("overruns", 0)),
            gauge("llm_agent_cycle_duration_seconds", "Wall time of the previous collection cycle.")
            .add({}, s.get("last_cycle_seconds", 0.0)),
            gauge("llm_agent_targets", "Targets being scraped, by how they were found (configured, discovered).")
            .add({"source": "configured"}, s.get("targets_configured", 0))
            .add({"source": "discovered"}, s.get("targets_discovered", 0)),
        ]
        requests = counter("llm_agent_exporter_requests_total", "HTTP requests served by the exporter, by path and status code.")
        for (path, code), n in sorted(s.get("requests", {}).items()):  # type: ignore[union-attr]
            requests.add({"path": path, "code": code}, n)
        fams.append(requests)
        fams.append(counter("llm_agent_exporter_rejected_total", "Connections refused with 503 because every worker was busy.")
                    .add({}, s.get("rejected", 0)))
        fams.extend(self._process())
        return fams

    def _process(self) -> List[MetricFamily]:
        # the standard process_* names that client libraries export for themselves
        p = self.process
        with p.oneshot():
            cpu = p.cpu_times()
            mem = p.memory_info()
            start = p.create_time()
            fds = p.num_fds()
            threads = p.num_threads()
        values: List[Tuple[str, str, str, float]] = [
            ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu.user + cpu.system),
            ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", mem.rss),
            ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", mem.vms),
            ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start),
            ("process_open_fds", "gauge", "Number of open file descriptors.", fds),
            ("llm_agent_threads", "gauge", "Threads in the agent process.", threads),
        ]
        return [MetricFamily(name, mtype, help_).add({}, v) for name, mtype, help_, v in values]
