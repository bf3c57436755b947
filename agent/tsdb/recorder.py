"""The history's place in the cycle: each published snapshot and each alert transition go to
the store; its own health comes back as self-metrics.

It runs after the exporter has the snapshot and after alerting has queued what it must, so a
slow or full disk here delays neither a scrape nor a page. A store that cannot be opened at
all (a read-only state directory) leaves the agent running without history, said once.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from typing import Callable, Dict, Iterable, List, Optional

from ..config import Config
from ..model import MetricFamily, Snapshot, counter, gauge
from ..promql.parser import parse
from .store import FILE_NAME, AlertEvent, HistoryStore
from .tiers import Retention

log = logging.getLogger(__name__)


def retention_of(config: Config) -> Retention:
    h = config.history
    return Retention(h.raw_retention, h.rollup_1m_retention, h.rollup_1h_retention, h.alert_retention)


def open_store(config: Config, state_dir: str, clock: Callable[[], float] = time.time) -> Optional[HistoryStore]:
    if not config.history.enabled or not state_dir:
        return None
    try:
        return HistoryStore(os.path.join(state_dir, FILE_NAME), retention_of(config),
                            [parse(s) for s in config.history.exclude], config.history.max_series,
                            config.history.max_disk, clock)
    except (sqlite3.Error, OSError) as e:
        log.error("history: not kept this run: %s", e)
        return None


class Recorder:
    def __init__(self, store: HistoryStore):
        self.store = store
        self._states: Dict[str, str] = {}  # fingerprint -> pending | firing, as last recorded
        self._seed()

    def _seed(self) -> None:
        """The alerts that were active when the agent stopped, so a restart records no new transitions."""
        try:
            rows = self.store.db.execute("SELECT fingerprint, state FROM alert_events ORDER BY at, rowid").fetchall()
        except sqlite3.Error:
            return
        for fp, state in rows:
            if state in ("pending", "firing"):
                self._states[fp] = state
            else:
                self._states.pop(fp, None)

    def configure(self, config: Config) -> None:
        h = config.history
        self.store.retention = retention_of(config)
        self.store.exclude = tuple(parse(s) for s in h.exclude)
        self.store.max_series = h.max_series
        self.store.max_per_name = max(1000, h.max_series // 4)
        self.store.forget_ids()  # what is excluded may have changed

    def record(self, snapshot: Snapshot, alerts: Iterable[object]) -> None:
        self.store.append(snapshot)
        self.store.record_alerts(self.transitions(alerts, snapshot.timestamp))
        self.store.maintain(snapshot.timestamp)

    def transitions(self, alerts: Iterable[object], t: float) -> List[AlertEvent]:
        """What changed since the last cycle: new pending or firing alerts, and those gone."""
        events = []
        now: Dict[str, object] = {}
        for alert in alerts:
            fp = alert.fingerprint  # type: ignore[attr-defined]
            now[fp] = alert
            state = alert.state  # type: ignore[attr-defined]
            if self._states.get(fp) != state:
                events.append(AlertEvent(t, state, dict(alert.labels), dict(alert.annotations),  # type: ignore
                                         float(alert.value), fp))  # type: ignore[attr-defined]
        for fp, state in self._states.items():
            if fp not in now:
                events.append(AlertEvent(t, "resolved" if state == "firing" else "inactive", {}, {}, float("nan"), fp))
        if any(e.state in ("resolved", "inactive") for e in events):
            labels = self._labels_of([e.fingerprint for e in events if e.state in ("resolved", "inactive")])
            for e in events:
                if e.state in ("resolved", "inactive"):
                    e.labels = labels.get(e.fingerprint, {})
        self._states = {fp: a.state for fp, a in now.items()}  # type: ignore[attr-defined]
        return events

    def _labels_of(self, fingerprints: List[str]) -> Dict[str, Dict[str, str]]:
        """The labels an alert that went away last had (from its earlier events)."""
        out: Dict[str, Dict[str, str]] = {}
        try:
            for fp in fingerprints:
                row = self.store.db.execute("SELECT labels FROM alert_events WHERE fingerprint = ? ORDER BY at DESC, "
                                            "rowid DESC LIMIT 1", (fp,)).fetchone()
                if row:
                    out[fp] = json.loads(row[0])
        except sqlite3.Error:
            pass
        return out

    def families(self) -> List[MetricFamily]:
        s = self.store.stats
        return [
            counter("llm_agent_disk_history_cycles_written_total", "Cycles written to the history file.")
            .add({}, s.cycles_written),
            counter("llm_agent_disk_history_write_errors_total",
                    "Writes the history file refused (a full disk): those cycles are not kept.").add({}, s.write_errors),
            gauge("llm_agent_disk_history_series", "Series the history file holds.").add({}, len(self.store.series)),
            counter("llm_agent_disk_history_dropped_series_total",
                    "Series not stored because [history] max_series was reached (each counted again "
                    "every 10 minutes while it is refused).").add({}, s.dropped_series),
            counter("llm_agent_disk_history_refused_memory_resets_total",
                    "Times the memory of refused series was full (new names every cycle) and started over.")
            .add({}, s.refused_forgotten),
            gauge("llm_agent_disk_history_bytes", "Size of the history file and its write-ahead log.")
            .add({}, self.store.size_bytes()),
            counter("llm_agent_disk_history_seal_seconds_total",
                    "Time spent turning 30-minute windows into compressed chunks and rollups.").add({}, s.seal_seconds),
            counter("llm_agent_disk_history_damaged_rows_total",
                    "Unsealed cycles the history file could not read (a row of an unknown layout, or not of its "
                    "layout's length), left out of their window's seal and of every read.").add({}, s.damaged_rows),
            counter("llm_agent_disk_history_moved_aside_total",
                    "History files found unusable (corrupt, foreign) and moved aside.").add({}, s.moved_aside),
        ]

    def close(self) -> None:
        self.store.close()
