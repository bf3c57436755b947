"""Wiring and scheduling: config -> collectors -> runner -> snapshot -> exporter, once per
interval; SIGHUP reloads, SIGTERM/SIGINT stop.

Everything that varies (clocks, the NVML module, process discovery) is passed to
`Agent`, so tests run the real loop against fakes and real peers alike.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple

from . import threads
from .alerting import Alerting, resolve_state_dir
from .collectors.lifecycle import Seen
from .collectors.process import ExitWatcher
from .plugins import Context
from .collectors.selfstats import AgentStats
from .config import Config, ConfigError, TargetConfig, load_config
from .discovery import Found, discover_processes
from .heap import HeapReturner, limit_malloc_arenas
from .model import Snapshot, gauge
from .perf.anomaly import HistoryRules
from .perf.book import PerfBook
from .probes.stacks import StackStore
from .runner import Runner
from .scrape_series import scrape_series
from .serve.api import QueryAPI
from .serve.console import state as console_state
from .serve.exporter import Endpoints, Exporter
from .serve.health import health
from .serve.drill_api import DrillAPI
from .serve.perf_api import PerfAPI
from .systemd import Notifier, Watchdog
from .tsdb.query import Querier
from .tsdb.recorder import Recorder, open_store
from .wiring import CollectorSet

if TYPE_CHECKING:
    from .remote.sender import Writers
    from .report.schedule import ReportScheduler, ScheduledReport

log = logging.getLogger(__name__)

# The cyclic garbage collector's thresholds for a long-running agent. At Python's defaults
# (700, 10, 10) a cycle's short-lived samples set off ~6 young collections and a full one every
# ~15 cycles, each walking the rule history's points: 3.2 ms per cycle on average
# (tests/bench/bench_agent.py). Almost all the agent's garbage is freed by reference counting;
# the collector is only for the rare cycle, so it runs ~50x less often.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect rarely, and leave what startup made (modules, config, rules) out of every
    collection from now on: called once the first cycle is served."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()


class Agent:
    """One agent: the collection loop. It cycles (the collector set -> the runner -> alerting
    -> the exporter), reloads on request and keeps systemd informed; what is collected is the
    CollectorSet's business (wiring.py), what is alerted on the Alerting's."""

    def __init__(self, config: Config, nvml: object = None,
                 discover: Callable[[], Sequence[Found]] = discover_processes,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 alerting: bool = True, state_dir: Optional[str] = None):
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.exporter: Optional[Exporter] = None
        self.snapshot: Optional[Snapshot] = None
        self.runner = Runner([], config.collector_timeout, clock)
        self.stats = AgentStats()
        self.reload_ok = True
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self.state_dir = state_dir or (resolve_state_dir(config) if alerting else "")
        self.stacks = StackStore(self.state_dir or "/tmp", config.health.py_spy_timeout) \
            if config.health.py_spy else None
        self._cycle_now = threading.Event()
        self.perf_book = PerfBook(self.state_dir, config.bench.baseline_runs, clock) if self.state_dir else None
        # without alerting (check's one pass), which targets have answered is read from the state
        # directory the running agent keeps, never written
        seen = Seen(self.state_dir, clock) if self.state_dir else Seen(config.agent.state_dir, clock, read_only=True)
        self.collectors = CollectorSet(Context(config, nvml, clock, monotonic, self.state_dir, self.stacks,
                                               self._self_stats, wake=self.wake_now, perf_book=self.perf_book),
                                       self.runner, discover, seen)
        self.alerting: Optional[Alerting] = None
        if alerting:
            self.alerting = Alerting(config, self.state_dir, clock, self.stacks)
        store = open_store(config, self.state_dir, clock) if alerting else None
        self.recorder: Optional[Recorder] = Recorder(store) if store is not None else None
        self.history_rules: Optional[HistoryRules] = None
        if store is not None:  # a week of a series against its last half hour: read from the history file
            querier = Querier(store, clock, config.history.query_max_samples, config.history.query_timeout)
            self.history_rules = HistoryRules(lambda expr, t, steps: querier.instant(expr, t, steps=steps)[0], clock=clock,
                                              session=querier.session)
        self.reports: Optional[ReportScheduler] = None
        self._configure_reports(config)
        self.remote: Optional[Writers] = None
        self._configure_remote(config)

    def _configure_remote(self, config: Config) -> None:
        """[[remote_write]]: the history file pushed to each receiver, each from its own thread."""
        if not config.remote_write and self.remote is None:
            return
        if self.recorder is None:
            log.error("[[remote_write]] needs the history file ([history] enabled = true): it sends what the "
                      "history holds, so nothing is lost while a receiver is away; not started")
            return
        if self.remote is None:
            from .remote.sender import Writers  # start-up cost: urllib3 (~8 MiB), only with [[remote_write]]
            self.remote = Writers(self.recorder.store, self.state_dir, self.metadata, self.clock)
        self.remote.configure(config.remote_write)

    def _configure_reports(self, config: Config) -> None:
        """[[reports]]: made from the history file, queued in the outbox like a page."""
        if self.recorder is None or self.alerting is None or (self.reports is None and not config.reports):
            return
        # the report package (0.4 MiB resident) loads when reports are configured, not in every agent
        from .report.schedule import ReportScheduler, ScheduledReport  # memory cost: only with [[reports]]

        reports = [ScheduledReport(r.name, r.schedule, r.period or r.schedule.default_period(), r.format,
                                   tuple(r.channels)) for r in config.reports]
        if self.reports is None:
            if not reports:
                return
            self.reports = ReportScheduler(reports, self.recorder.store.path, self._produce_report, self._deliver_report,
                                           self.clock)
        self.reports.reports = reports

    def _produce_report(self, start: float, end: float, fmt: str) -> Tuple[str, str]:
        assert self.recorder is not None
        from .report.compute import Period, Reporter  # memory cost: a report is made weekly, if ever
        from .report.render import render, summary_lines  # memory cost: as above

        doc = Reporter(self.recorder.store, self.config.slo.availability, self.config.slo.ttft_seconds,
                       self.config.hostname, self.clock, self.config.slo.short_lived_share).report(Period(start, end))
        return "; ".join(summary_lines(doc)), render(doc, fmt)

    def _deliver_report(self, report: ScheduledReport, summary: str, body: str, occurrence: float) -> None:
        assert self.alerting is not None
        from .report.schedule import report_doc  # memory cost: only with [[reports]]

        doc = report_doc(report, summary, body, occurrence, self.config.hostname)
        for channel in report.channels:
            self.alerting.outbox.enqueue(channel, doc.fingerprint, "firing", doc.to_json(), self.clock(), occurrence)

    def targets(self) -> Tuple[TargetConfig, ...]:
        return self.collectors.targets()

    def wake_now(self, server: str = "") -> None:
        """Run a cycle at once (a watched process exited), not at the next tick."""
        self._cycle_now.set()
        self._wake.set()

    # -- cycles ------------------------------------------------------------------------------

    def _self_stats(self) -> AgentStats:
        stats = dataclasses.replace(self.stats)
        stats.targets_configured = len(self.config.targets)
        stats.targets_discovered = self.collectors.discovered_count
        if self.exporter is not None:
            stats.requests = self.exporter.stats.copy()
            stats.rejected = self.exporter.rejected
            stats.api_refused = self.exporter.api_refused
            stats.auth_failures = self.exporter.auth_failures
            stats.tls_errors = self.exporter.tls_errors
        return stats

    def cycle(self) -> Snapshot:
        """Collect once, publish the snapshot to the exporter, and return it."""
        start = self.monotonic()
        cpu = [time.thread_time()]  # the phases' split of this thread's CPU: llm_agent_cycle_cpu_seconds_total
        self.collectors.sync()
        reload_ok = gauge("llm_agent_config_last_reload_successful", "Whether the last configuration reload succeeded (1) or not (0).")
        extra = [reload_ok.add({}, 1 if self.reload_ok else 0)] + self.collectors.families()
        if self.history_rules is not None:
            extra += self.history_rules.families()  # as of their last round (every 5 minutes)
        snapshot = self.runner.run(extra=extra)
        cpu.append(time.thread_time())
        # up{server} and scrape_*: for the rules and the history, as Prometheus has them; not /metrics
        scraped = scrape_series(snapshot)
        if self.alerting is not None:
            try:
                self.alerting.process(snapshot.with_families(scraped))
            except Exception as e:  # alerting must not stop collection; logged without a traceback, whose
                # frames could carry a channel's URL (a secret); --log-level debug shows it
                log.error("alerting failed this cycle: %s: %s", type(e).__name__, str(e)[:300],
                          exc_info=log.isEnabledFor(logging.DEBUG))
            own = self.alerting.families()
            taken = {f.name for f in snapshot.families} | {f.name for f in own}
            snapshot = snapshot.with_families(own + self.alerting.recorded_families(taken))
        if self.recorder is not None:
            snapshot = snapshot.with_families(self.recorder.families())  # as of the last cycle's write
        if self.remote is not None:
            snapshot = snapshot.with_families(self.remote.families())
        cpu.append(time.thread_time())
        self.snapshot = snapshot
        if self.exporter is not None:
            self.exporter.publish(snapshot)
        cpu.append(time.thread_time())
        if self.recorder is not None:
            try:
                self.recorder.record(snapshot.with_families(scraped), self.alerting.real_alerts() if self.alerting else ())
                if self.remote is not None:
                    self.remote.notify()
            except Exception as e:  # history must never stop collection or alerting
                log.error("history: this cycle not kept: %s: %s", type(e).__name__, str(e)[:300],
                          exc_info=log.isEnabledFor(logging.DEBUG))
        cpu.append(time.thread_time())
        if self.reports is not None:
            self.reports.tick()
        cpu.append(time.thread_time())
        self.stats.cycles += 1
        self.stats.last_cycle_seconds = self.monotonic() - start
        if self.exporter is not None:  # the exporter's work, after the cycle's: not in its wall time
            self.exporter.render_ahead()
        derive = self.runner.derive_cpu
        self.stats.add_cycle_cpu(collect=cpu[1] - cpu[0] - derive, derive=derive, alerting=cpu[2] - cpu[1],
                                 publish=cpu[3] - cpu[2] + time.thread_time() - cpu[5], history=cpu[4] - cpu[3],
                                 other=cpu[5] - cpu[4])
        return snapshot

    def console_state(self) -> dict:
        """/api/v1/console: the page's tiles, verdict and alerts from the latest snapshot."""
        _, doc = self.health()  # the verdict /healthz gives, and the checks behind the tiles
        alerts = self.alerting.api_alerts() if self.alerting is not None else {}
        firing = self.alerting.firing() if self.alerting is not None else []
        state = console_state(self.snapshot, doc, alerts, self.config.hostname, self.config.interval, firing)
        state["maintenance"] = self.alerting.maintenance() if self.alerting is not None else []
        return state

    def metadata(self) -> dict:
        """/api/v1/metadata: each served family's type and help, from the latest snapshot."""
        snap = self.snapshot
        return {f.name: [{"type": f.type, "help": f.help, "unit": ""}] for f in (snap.families if snap else ())}

    def health(self, target: str = "") -> Tuple[int, dict]:
        """/healthz from the latest snapshot (serve.health)."""
        maintenance = self.alerting.maintenance() if self.alerting is not None else []
        firing = self.alerting.firing() if self.alerting is not None else []
        return health(self.snapshot, self.clock(), self.config.interval, target, maintenance, firing)

    def endpoints(self) -> Endpoints:
        """What this agent serves besides /metrics: its verdict, its alerts, the console, and the
        APIs it has the parts for (no history, no query API)."""
        out = Endpoints(health=self.health, console=self.console_state)
        if self.alerting is not None:
            out.alerts, out.alertmanager_api = self.alerting.api_alerts, self.alerting.api
            alerting = self.alerting
            out.drill_api = DrillAPI(alerting.drills, lambda: [c.name for c in alerting.router.channels],
                                     alerting.api.refuse_write)
            if self.perf_book is not None:
                out.perf_api = PerfAPI(self.perf_book, self.alerting.api.refuse_write, lambda: self.config.bench.tolerance)
        if self.recorder is not None:
            out.query_api = QueryAPI(Querier(self.recorder.store, self.clock, self.config.history.query_max_samples,
                                             self.config.history.query_timeout), self.clock, self.metadata)
        return out

    def serve(self, exporter: Exporter, notifier: Optional[Notifier] = None) -> None:
        """Cycle every interval until `stop()`; reload when asked; keep systemd informed."""
        limit_malloc_arenas()
        self.exporter = exporter
        exporter.endpoints = self.endpoints()
        if self.config.health.watch_processes:
            self.collectors.exit_watcher = ExitWatcher(self.wake_now)
        notifier = notifier or Notifier()
        self.last_progress = self.monotonic()
        watchdog = Watchdog(notifier, lambda: self.last_progress,
                            stale_after=2 * self.config.interval + self.config.collector_timeout + 5)
        ready = False
        heap = HeapReturner()
        next_tick = self.monotonic()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                notifier.reloading()
                self._do_reload()
                notifier.ready(self.status_line())
            self._cycle_now.clear()
            started = self.monotonic()
            try:
                self.cycle()
                self.last_progress = self.monotonic()  # only a cycle that completed feeds the watchdog
            except Exception as e:  # a bug in one cycle must not end the loop; the watchdog sees no progress
                log.error("cycle failed (%s: %s); trying again next interval", type(e).__name__, str(e)[:300],
                          exc_info=log.isEnabledFor(logging.DEBUG))
            if not ready:  # the first snapshot is being served: systemd may consider us started
                notifier.ready(self.status_line())
                ready = True
                tune_gc()
            else:
                notifier.status(self.status_line())
            heap.tick(self.monotonic())  # between cycles: what this minute's cycles freed goes back
            interval = self.config.interval
            if started >= next_tick - 0.001:  # the scheduled cycle (not one a process exit asked for)
                next_tick += interval
                if self.monotonic() - started > interval:
                    self.stats.overruns += 1
                    log.warning("cycle took %.1fs, longer than the %.1fs interval", self.monotonic() - started, interval)
                    next_tick = self.monotonic()
            self._wake.wait(max(0.0, next_tick - self.monotonic()))
            self._wake.clear()
        notifier.stopping()
        watchdog.close()

    def status_line(self) -> str:
        """One line for `systemctl status`: targets, GPUs, alerts, cycle time."""
        snap = self.snapshot
        if snap is None:
            return "starting"
        up = snap.samples("llm_agent_target_up")
        gpus = snap.samples("llm_agent_gpu_up")
        firing = sum(1 for s in snap.samples("llm_agent_alert_firing"))
        return (f"targets {sum(1 for s in up if s.value)}/{len(up)} up, GPUs {sum(1 for s in gpus if s.value)}/{len(gpus)}, "
                f"{firing} alert(s) firing, cycle {self.stats.last_cycle_seconds * 1000:.0f} ms")

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
            if self.alerting is not None:
                self.alerting.configure(new)  # builds everything before it replaces anything
            if self.recorder is not None:
                self.recorder.configure(new)
            self._configure_reports(new)
            self._configure_remote(new)
        except ConfigError as e:
            self.reload_ok = False
            log.error("reload rejected, keeping the running configuration:\n%s", e)
            return
        except Exception as e:  # whatever a config provokes, the running agent goes on with the old one
            self.reload_ok = False
            log.error("reload rejected, keeping the running configuration: %s: %s", type(e).__name__, e)
            return
        self.reload_ok = True
        old = self.config
        listen_changed = new.exporter.listen != old.exporter.listen
        self.config = new
        self.runner.timeout = new.collector_timeout
        self.collectors.ctx.config = new
        self.collectors.build_fixed(previous=old)  # [cost], [slo] and the host collector take effect; NVML kept if unchanged
        log.info("configuration reloaded from %s%s", new.source,
                 "; [exporter] listen changes only on restart" if listen_changed else "")

    def close(self, drain: float = 5.0) -> None:
        """Stop collecting; deliver what the outbox holds for at most `drain` seconds."""
        if self.collectors.exit_watcher is not None:
            self.collectors.exit_watcher.close()
        self.runner.close()
        if self.alerting is not None:
            self.alerting.close(drain)
        if self.reports is not None:
            self.reports.close()
        if self.history_rules is not None:
            self.history_rules.close()
        if self.remote is not None:
            self.remote.close()
        if self.recorder is not None:
            self.recorder.close()


STOP_GRACE = 10.0  # seconds past the outbox's drain a stop may take before the process exits anyway


def install_signals(agent: Agent, drain: float = 5.0, exit_now: Callable[[int], None] = os._exit,
                    grace: float = STOP_GRACE) -> None:
    """SIGTERM/SIGINT stop the agent; SIGHUP reloads its configuration. A stop always ends the
    process within drain + STOP_GRACE seconds: a cycle stuck in a collector, a flood or a wedged
    driver must not leave an agent that ignores SIGTERM (the outbox is on disk: nothing is lost)."""
    def stop(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        agent.stop()
        threads.daemon(_deadline, "stop-deadline", drain + grace, exit_now).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())


def _deadline(seconds: float, exit_now: Callable[[int], None]) -> None:
    time.sleep(seconds)
    log.error("did not stop within %gs of the signal (a cycle is stuck); exiting now", seconds)
    logging.shutdown()
    exit_now(1)
