"""Scheduled reports ([[reports]]): "daily 08:00", "weekly mon 09:00", "monthly 1 10:00", in
the host's time zone, delivered through the notification channels (so through the outbox:
durable, in order, retried like a page).

Each report remembers the last occurrence it sent (in the history file's meta table), so a
restart or a reload neither repeats one nor, on a new configuration, sends one at once: the
first goes at the next occurrence. One missed while the agent was down is sent when it comes
back, if that is within the report's period. Reports are computed in a background thread:
a 30-day report must not hold up a cycle.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from .. import threads
from ..digest import sha256_hex
from ..config.schedule import Schedule
from ..notify.base import AlertDoc
from ..store import small_page_cache

log = logging.getLogger(__name__)

RETRY_AFTER = 600.0  # a report that failed to compute is tried again this much later


@dataclass(frozen=True)
class ScheduledReport:
    name: str
    schedule: Schedule
    period: float
    format: str
    channels: Sequence[str]


class ReportScheduler:
    """Sends each scheduled report once per occurrence. `produce(period_start, period_end,
    format)` returns (summary, body); `deliver(report, summary, body, occurrence)` queues it."""

    def __init__(self, reports: Sequence[ScheduledReport], path: str,
                 produce: Callable[[float, float, str], tuple], deliver: Callable[..., None],
                 clock: Callable[[], float] = time.time):
        self.reports = list(reports)
        # its own connection to the history file (the store's is the cycle's), shared by the
        # cycle's due() and the report thread's _remember()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        small_page_cache(self.db)
        self.lock = threading.Lock()
        self.produce = produce
        self.deliver = deliver
        self.clock = clock
        self.sent = 0
        self.failures = 0
        self._busy: Optional[threading.Thread] = None
        self._retry_at: Dict[str, float] = {}

    def _last(self, name: str) -> Optional[float]:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (f"report:{name}",)).fetchone()
        return float(row[0]) if row else None

    def _remember(self, name: str, occurrence: float) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"report:{name}", repr(occurrence)))

    def due(self, now: float) -> List[tuple]:
        out = []
        for report in self.reports:
            occurrence = report.schedule.previous(now)
            last = self._last(report.name)
            if last is None:  # new: from the next occurrence on
                self._remember(report.name, occurrence)
                continue
            if occurrence > last and now - occurrence <= report.period and now >= self._retry_at.get(report.name, 0):
                out.append((report, occurrence))
        return out

    def tick(self) -> None:
        """After a cycle: start the reports that are due, unless some are still being made."""
        if self._busy is not None and self._busy.is_alive():
            return
        try:
            due = self.due(self.clock())
        except sqlite3.Error as e:
            log.debug("reports: cannot read their state: %s", e)
            return
        if due:
            self._busy = threads.daemon(self._run, "reports", due)
            self._busy.start()

    def _run(self, due: List[tuple]) -> None:
        for report, occurrence in due:
            try:
                summary, body = self.produce(occurrence - report.period, occurrence, report.format)
                self.deliver(report, summary, body, occurrence)
                self._remember(report.name, occurrence)
                self.sent += 1
                log.info("report %s for %s sent to %s", report.name, time.strftime("%Y-%m-%d %H:%M",
                         time.localtime(occurrence)), ", ".join(report.channels))
            except Exception as e:  # one report failing must not stop the others, nor the agent
                self.failures += 1
                self._retry_at[report.name] = self.clock() + RETRY_AFTER
                log.error("report %s failed: %s: %s (trying again in %.0f minutes)", report.name, type(e).__name__,
                          str(e)[:300], RETRY_AFTER / 60)

    def wait(self) -> None:
        if self._busy is not None:
            self._busy.join()


    def close(self) -> None:
        self.wait()
        self.db.close()


def report_doc(report: ScheduledReport, summary: str, body: str, occurrence: float, hostname: str) -> AlertDoc:
    """A report as the channels carry it: an info notification named LlmAgentReport whose
    summary is the headline and whose `report` annotation is the whole report."""
    labels = {"alertname": "LlmAgentReport", "severity": "info", "report": report.name, "Hostname": hostname}
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(occurrence))
    annotations = {"summary": f"{report.name} report for {hostname}, {day}: {summary}", "description": summary,
                   "report": body, "report_format": report.format}
    key = sha256_hex(f"{report.name}@{occurrence}", 16)
    return AlertDoc("firing", labels, annotations, occurrence, 0.0, 0.0, key)
