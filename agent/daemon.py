"""Wiring and scheduling: config -> collectors -> runner -> snapshot -> exporter, once per
interval; SIGHUP reloads, SIGTERM/SIGINT stop.

Everything that varies (clocks, the NVML module, process discovery) is passed to
`Agent`, so tests run the real loop against fakes and real peers alike.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .collectors.host import HostCollector
from .collectors.llamacpp import LlamaCppCollector
from .collectors.nvml import NvmlCollector
from .collectors.openmetrics import OpenMetricsCollector, public_url
from .collectors.selfstats import SelfCollector
from .alerting import Alerting, resolve_state_dir
from .config import Config, ConfigError, TargetConfig, load_config
from .discovery import Found, discover_processes, discovered_targets
from .exporter import Exporter, agent_health
from .model import Snapshot, gauge
from .runner import Collector, Runner

log = logging.getLogger(__name__)

TARGET_KINDS = {"llamacpp": LlamaCppCollector, "openmetrics": OpenMetricsCollector}


def _target_key(t: TargetConfig) -> Tuple:
    return (t.name, t.url, t.kind, t.metrics_path, t.timeout, t.api_key, tuple(sorted(t.labels.items())))


class Agent:
    """One agent: owns the collectors and produces a Snapshot per `cycle()`."""

    def __init__(self, config: Config, nvml: object = None,
                 discover: Callable[[], Sequence[Found]] = discover_processes,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 alerting: bool = True, state_dir: Optional[str] = None):
        self.config = config
        self.nvml = nvml
        self.discover = discover
        self.clock = clock
        self.monotonic = monotonic
        self.exporter: Optional[Exporter] = None
        self.snapshot: Optional[Snapshot] = None
        self.runner = Runner([], config.collector_timeout, clock)
        self.stats: Dict[str, object] = {"cycles": 0, "overruns": 0, "last_cycle_seconds": 0.0}
        self.reload_ok = True
        self._targets: Dict[Tuple, Collector] = {}
        self._fixed: List[Collector] = []
        self._discovered: Tuple[TargetConfig, ...] = ()
        self._next_discovery = 0.0
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._build_fixed()
        self.alerting: Optional[Alerting] = None
        if alerting:
            self.alerting = Alerting(config, state_dir or resolve_state_dir(config), clock)

    # -- collectors --------------------------------------------------------------------------

    def _build_fixed(self) -> None:
        c = self.config
        fixed: List[Collector] = [SelfCollector(self._self_stats)]
        if c.get("collectors.nvml.enabled"):
            fixed.append(NvmlCollector(self.nvml, hostname=c.hostname, xid_events=c.get("collectors.nvml.xid_events"),
                                       process_memory=c.get("collectors.nvml.process_memory"),
                                       retry_max=c.get("collectors.nvml.retry_max")))
        if c.get("collectors.host.enabled"):
            fixed.append(HostCollector(c.get("collectors.host.fs_types_exclude"),
                                       c.get("collectors.host.mount_points_exclude"),
                                       c.get("collectors.host.net_devices_exclude")))
        self._fixed = fixed

    def targets(self) -> Tuple[TargetConfig, ...]:
        """Configured targets, else discovered ones (re-discovered every discovery.interval)."""
        if self.config.targets:
            return self.config.targets
        if not self.config.get("discovery.enabled"):
            return ()
        now = self.monotonic()
        if now >= self._next_discovery:
            try:
                found = self.discover()
            except Exception as e:  # /proc races and permission walls must not stop the agent
                log.warning("process discovery failed: %s", e)
                found = []
            self._discovered = discovered_targets(found, self.config.get("discovery.fallback_url"))
            self._next_discovery = now + self.config.get("discovery.interval")
        return self._discovered

    def _sync_collectors(self) -> None:
        wanted: Dict[Tuple, Collector] = {}
        for t in self.targets():
            key = _target_key(t)
            wanted[key] = self._targets.get(key) or TARGET_KINDS[t.kind](
                t, max_bytes=self.config.get("agent.max_response_bytes"), clock=self.monotonic)
        if wanted.keys() != self._targets.keys():
            log.info("targets: %s", ", ".join(f"{k[0]} ({public_url(k[1])})" for k in wanted) or "none")
        self._targets = wanted
        self.runner.set_collectors(self._fixed + list(wanted.values()))

    # -- cycles ------------------------------------------------------------------------------

    def _self_stats(self) -> Dict[str, object]:
        stats = dict(self.stats)
        stats["targets_configured"] = len(self.config.targets)
        stats["targets_discovered"] = 0 if self.config.targets else len(self._discovered)
        if self.exporter is not None:
            stats["requests"] = self.exporter.stats.copy()
            stats["rejected"] = self.exporter.rejected
        return stats

    def cycle(self) -> Snapshot:
        """Collect once, publish the snapshot to the exporter, and return it."""
        start = self.monotonic()
        self._sync_collectors()
        reload_ok = gauge("llm_agent_config_last_reload_successful", "Whether the last configuration reload succeeded (1) or not (0).")
        snapshot = self.runner.run(extra=[reload_ok.add({}, 1 if self.reload_ok else 0)])
        if self.alerting is not None:
            try:
                self.alerting.process(snapshot)
            except Exception:  # alerting must not stop collection; the failure is logged and visible
                log.exception("rule evaluation failed")
            snapshot = snapshot.with_families(self.alerting.families())
        self.snapshot = snapshot
        if self.exporter is not None:
            self.exporter.publish(snapshot)
        self.stats["cycles"] = int(self.stats["cycles"]) + 1  # type: ignore[call-overload]
        self.stats["last_cycle_seconds"] = self.monotonic() - start
        return snapshot

    def last_cycle_time(self) -> Optional[float]:
        return self.snapshot.timestamp if self.snapshot else None

    def serve(self, exporter: Exporter) -> None:
        """Cycle every interval until `stop()`; reload when asked."""
        self.exporter = exporter
        exporter.health = agent_health(self.last_cycle_time, self.config.interval, self.clock)
        if self.alerting is not None:
            exporter.api_alerts = self.alerting.api_alerts
        next_tick = self.monotonic()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            started = self.monotonic()
            self.cycle()
            interval = self.config.interval
            next_tick += interval
            if self.monotonic() - started > interval:
                self.stats["overruns"] = int(self.stats["overruns"]) + 1  # type: ignore[call-overload]
                log.warning("cycle took %.1fs, longer than the %.1fs interval", self.monotonic() - started, interval)
                next_tick = self.monotonic()
            self._wake.wait(max(0.0, next_tick - self.monotonic()))
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        """Re-read the configuration before the next cycle (safe from a signal handler)."""
        self._reload.set()
        self._wake.set()

    def _do_reload(self) -> None:
        path = None if self.config.source == "(defaults)" else self.config.source
        try:
            new = load_config(path)
        except ConfigError as e:
            self.reload_ok = False
            log.error("reload rejected, keeping the running configuration:\n%s", e)
            return
        self.reload_ok = True
        old = self.config
        listen_changed = new.get("exporter.listen") != old.get("exporter.listen")
        self.config = new
        self.runner.timeout = new.collector_timeout
        if new.sections["collectors"] != old.sections["collectors"] or new.hostname != old.hostname:
            self._build_fixed()  # otherwise keep NVML's state (XID counts) across the reload
        if self.alerting is not None:
            self.alerting.configure(new)
        self._next_discovery = 0.0
        log.info("configuration reloaded from %s%s", new.source,
                 "; [exporter] listen changes only on restart" if listen_changed else "")

    def close(self, drain: float = 5.0) -> None:
        """Stop collecting; deliver what the outbox holds for at most `drain` seconds."""
        self.runner.close()
        if self.alerting is not None:
            self.alerting.close(drain)


def install_signals(agent: Agent) -> None:
    """SIGTERM/SIGINT stop the agent; SIGHUP reloads its configuration."""
    def stop(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())
