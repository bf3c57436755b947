"""Sealing and retention, the background half of the history file (a mixin of HistoryStore).

Every 30 minutes of data, one thread (the store's for its whole life: a thread per seal
fragments the heap) reads the window's head rows from a read snapshot, turns them into one
chunk per series and its 1-minute rollups, and every 6 hours compacts those rollups into one
chunk per series and rolls them up into hours; then it writes all of it and deletes the head
rows in one short transaction. The cycle's thread only hands it windows and, once one is
done, applies retention and the size cap.
"""

from __future__ import annotations

import logging
import math
import queue
import sqlite3
import threading
import time
from array import array
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from .. import threads
from ..heap import release_freed_memory
from . import codec, rollup
from .rollup import encode_rollups
from .tiers import CHUNK_SPAN, FINEST_FIRST, FIVE_MINUTES, FIVE_MINUTES_FROM, HOUR, MINUTE, RAW, RAW_WINDOW, RESOLUTION

if TYPE_CHECKING:
    from .store import HistoryStore

log = logging.getLogger(__name__)

SEAL_RETRY = 60.0  # seconds of the store's clock between tries of a seal that failed


@dataclass
class _SealPlan:
    """What one seal writes: computed outside the write lock, applied in one transaction."""

    window: float
    end: float
    raw: List[Tuple[int, bytes]] = field(default_factory=list)
    minute: List[Tuple[int, bytes]] = field(default_factory=list)  # this window's 1-minute rollups
    compactions: List[float] = field(default_factory=list)  # 6-hour spans made one chunk
    compacted: List[Tuple[int, float, bytes]] = field(default_factory=list)
    five: List[Tuple[int, float, bytes]] = field(default_factory=list)  # each compacted span's 5-minute rollups
    five_from: Optional[float] = None  # the first span with them, when this seal makes it (FIVE_MINUTES_FROM)
    hour: List[Tuple[int, float, bytes]] = field(default_factory=list)
    present: List[Tuple[float, int]] = field(default_factory=list)  # (last time, series) seen in the window
    sealed_layout: Optional[int] = None
    compacted_until: float = 0.0
    damaged: int = 0  # head rows left out: an unknown layout, or a length not their layout's


class Sealer:
    """A store's sealing, retention and size cap; the thread and its hand-over are its own."""

    def __init__(self, store: "HistoryStore"):
        self.store = store
        self._sealer: Optional[threading.Thread] = None
        self._windows: "queue.Queue[Optional[float]]" = queue.Queue()
        self._sealed = threading.Event()
        self._sealing = False
        self._seal_error = ""
        self._seal_db: Optional[sqlite3.Connection] = None
        self._retry_at = -math.inf  # after a failed seal: when to try again

    def _enforce_size(self) -> None:
        """Under max_disk, with room for a seal: past 85% of it in use, the oldest data goes
        first (a raw window, else a 1-minute span, else a 5-minute one, else a 1-hour one,
        else the oldest head window), as Prometheus' retention.size drops the oldest block."""
        if not self.store.max_disk:
            return
        page = self.store.db.execute("PRAGMA page_size").fetchone()[0]
        limit = 0.85 * self.store.max_disk / page
        for _ in range(100):
            used = self.store.db.execute("PRAGMA page_count").fetchone()[0] - self.store.db.execute("PRAGMA freelist_count").fetchone()[0]
            if used <= limit or not self.store.write("a size trim", self._drop_oldest):
                return
            self.store.stats.trimmed_for_size += 1

    def _drop_oldest(self, db: sqlite3.Connection) -> None:
        for tier in FINEST_FIRST:
            row = db.execute("SELECT MIN(start) FROM chunks WHERE tier = ?", (tier,)).fetchone()
            if row and row[0] is not None:
                db.execute("DELETE FROM chunks WHERE tier = ? AND start < ?", (tier, row[0] + CHUNK_SPAN[tier]))
                return
        row = db.execute("SELECT MIN(t) FROM head").fetchone()
        if row and row[0] is not None:
            db.execute("DELETE FROM head WHERE t < ?", (math.floor(row[0] / RAW_WINDOW) * RAW_WINDOW + RAW_WINDOW,))

    # -- sealing and retention ----------------------------------------------------------------------

    def maintain(self, now: Optional[float] = None, wait: bool = False) -> None:
        """Called after each cycle; does nothing most cycles. When a 30-minute window of the
        head is complete, a background thread seals it (the CPU-heavy part reads and computes
        outside any write lock, then writes in one short transaction); once it is done,
        retention runs here. `wait`: seal every complete window now (tests, shutdown)."""
        now = self.store.clock() if now is None else now
        while True:
            if self._sealing:
                if not self._sealed.is_set() and not wait:
                    return
                self._sealed.wait()
                self._sealing = False
                if self._seal_error:
                    self.store.refused("a sealed window", self._seal_error)
                    # tried again a minute on, not at every cycle (nor in a loop, waiting): a seal
                    # that fails for its data, not the disk, fails every time, at a seal's CPU a try
                    self._retry_at = now + SEAL_RETRY
                else:
                    self.store.accepted("a sealed window")
                    self.store.write("retention", lambda db: self._expire(db, now))
                self._enforce_size()
            if self._retry_at - SEAL_RETRY <= now < self._retry_at:  # (a clock gone back does not wait)
                return
            window = self._due_window()
            if window is None:
                return
            self._seal_error = ""
            self._sealed.clear()
            self._sealing = True
            if self._sealer is None:  # one thread for the store's life: a thread per seal fragments the heap
                self._sealer = threads.daemon(self._seal_loop, "history-seal")
                self._sealer.start()
            self._windows.put(window)
            if not wait:
                return

    def settle(self) -> None:
        """Wait for a seal in progress (benchmarks fast-forwarding the clock; shutdown)."""
        if self._sealing:
            self._sealed.wait()

    def _seal_loop(self) -> None:
        while True:
            window = self._windows.get()
            if window is None:
                return
            try:
                self._seal_in_background(window)
            finally:
                release_freed_memory()  # the window read is megabytes; give them back
                self._sealed.set()

    def _due_window(self) -> Optional[float]:
        """The oldest window of the head that is complete (the newest write is past it)."""
        if self.store.last_written <= 0:
            return None
        row = self.store.db.execute("SELECT MIN(t) FROM head").fetchone()
        if not row or row[0] is None:
            return None
        window = math.floor(row[0] / RAW_WINDOW) * RAW_WINDOW
        return window if window + RAW_WINDOW <= self.store.last_written else None

    def _seal_in_background(self, window: float) -> None:
        started = time.thread_time()
        try:
            if self._seal_db is None:  # its own connection: reads and computes while the cycle writes
                self._seal_db = sqlite3.connect(self.store.path, check_same_thread=False, isolation_level=None, timeout=30)
                self.store.tune(self._seal_db)
            db = self._seal_db
            plan = self._plan_seal(db, window)
            db.execute("BEGIN IMMEDIATE")
            try:
                self._apply_seal(db, plan)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self.store.index.sealed_until(plan.present)
            if plan.damaged:
                self.store.stats.damaged_rows += plan.damaged
                log.error("history: %d head rows of the window from %s could not be read (an unknown layout, or a "
                          "length not their layout's) and were left out of its seal", plan.damaged,
                          time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(plan.window)))
            if plan.five_from is not None:
                self.store.five_minutes_from = plan.five_from
            self.store.stats.seals += 1
        except (sqlite3.Error, codec.CorruptChunk) as e:
            self._seal_error = str(e) or type(e).__name__
        except Exception as e:  # a bug must not kill the thread silently: reported by maintain()
            self._seal_error = f"{type(e).__name__}: {e}"
        finally:
            self.store.stats.seal_seconds += time.thread_time() - started

    def _plan_seal(self, db: sqlite3.Connection, window: float) -> "_SealPlan":
        """Everything the seal of `window` writes, computed from a read snapshot (no lock held).
        One series at a time, from the window's rows: only encoded chunks are kept, so the
        seal's peak is the window's rows and one series' rollups (a window's rollups of every
        series as tuples stayed in the heap's arenas: +5 MiB of RSS after the first seal)."""
        end = window + RAW_WINDOW
        plan = _SealPlan(window, end)
        db.execute("BEGIN")
        try:
            before = db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone()
            done = db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()
            compacted_until = float(done[0]) if done else math.floor(window / CHUNK_SPAN[MINUTE]) * CHUNK_SPAN[MINUTE]
            cursor = db.execute("SELECT t, layout, vals FROM head WHERE t < ? ORDER BY t", (end,))
            previous = set(self.store.layouts.ids(int(before[0])) or ()) if before else set()
            minutes: Dict[int, bytes] = {}
            for sid, times_blob, times, column in self._columns(self._readable(cursor, plan), previous, plan):
                plan.raw.append((sid, codec.encode(times_blob, len(times), [column])))
                points = rollup.summarise(times, column, RESOLUTION[MINUTE])
                if points:
                    minutes[sid] = encode_rollups(points, self._counter(sid))
                    plan.minute.append((sid, minutes[sid]))
            span = CHUNK_SPAN[MINUTE]
            start = compacted_until
            while start + span <= end:  # every 6-hour span that is complete: compacted, and its hours rolled up
                self._plan_compaction(db, plan, start, minutes)
                start += span
            plan.compacted_until = start
            if plan.compactions and math.isinf(self.store.five_minutes_from):  # (the store read the mark at open)
                plan.five_from = plan.compactions[0]  # a file from before the tier has none earlier
        finally:
            db.execute("COMMIT")
        return plan

    def _readable(self, rows: Iterable[Tuple[float, int, bytes]], plan: "_SealPlan") -> Iterator[Tuple[float, int, bytes]]:
        """The window's head rows that can be read; the others counted (plan.damaged). A damaged
        row failed every seal of its window: the head grew until max_disk trimmed it."""
        readable = self.store.layouts.readable
        for row in rows:
            if readable(row[1], row[2]):
                yield row
            else:
                plan.damaged += 1

    @staticmethod
    def _runs(rows: Iterable[Tuple[float, int, bytes]]) -> Iterator[Tuple[int, List[float], "memoryview[float]"]]:
        """The window's rows as runs of one layout: (layout, times, values as one row-major matrix)."""
        for lid, group in groupby(rows, key=itemgetter(1)):
            run = list(group)
            yield lid, [r[0] for r in run], memoryview(b"".join([r[2] for r in run])).cast("d")

    def _columns(self, rows: Iterable[Tuple[float, int, bytes]], previous: Set[int], plan: "_SealPlan"
                 ) -> Iterator[Tuple[int, bytes, List[float], array]]:
        """Each series' samples in the window, one series at a time: (series, encoded times,
        times, values), with a stale marker where a series vanished from one cycle to the next."""
        parts: Dict[int, List[Tuple[int, int]]] = {}  # series -> [(run, its place in the run) | (-1, stale marker's run)]
        runs: List[Tuple[List[float], "memoryview[float]", int]] = []
        for lid, run_times, matrix in self._runs(rows):
            ids = self.store.layouts.ids(lid) or ()  # (known, and each row its length: _readable)
            width = len(ids)
            run = len(runs)
            runs.append((run_times, matrix, width))
            present = set(ids)
            for sid in sorted(previous - present):
                parts.setdefault(sid, []).append((-1, run))  # vanished: Prometheus' stale marker at the run's start
            for k, sid in enumerate(ids):
                parts.setdefault(sid, []).append((run, k))
            previous = present
            plan.sealed_layout = lid
        times_cache: Dict[tuple, Tuple[bytes, List[float]]] = {}
        for sid, pieces in parts.items():
            shape = tuple((p[0], p[1] if p[0] < 0 else 0) for p in pieces)
            cached = times_cache.get(shape)
            if cached is None:
                times: List[float] = []
                for run, k in pieces:
                    times.extend(runs[run][0] if run >= 0 else runs[k][0][:1])
                cached = times_cache[shape] = (codec.encode_times([round(x * 1000) for x in times]), times)
            column = array("d")
            for run, k in pieces:
                if run < 0:
                    column.frombytes(codec.STALE_BYTES)
                else:
                    _, matrix, width = runs[run]
                    column.frombytes(matrix[k::width].tobytes())
            if pieces[-1][0] >= 0:
                plan.present.append((runs[pieces[-1][0]][0][-1], sid))
            yield sid, cached[0], cached[1], column

    def _plan_compaction(self, db: sqlite3.Connection, plan: "_SealPlan", span_start: float,
                         new_minutes: Dict[int, bytes]) -> None:
        """The 6-hour span's 1-minute chunks as one, its 5-minute rollups as one chunk, and its
        hours merged into the 10-day chunks."""
        span_end = span_start + CHUNK_SPAN[MINUTE]
        plan.compactions.append(span_start)
        hour_span = CHUNK_SPAN[HOUR]
        key = math.floor(span_start / hour_span) * hour_span
        new = new_minutes if span_start <= plan.window < span_end else {}
        ids = {r[0] for r in db.execute("SELECT DISTINCT series FROM chunks WHERE tier = ? AND start >= ? AND start < ?",
                                        (MINUTE, span_start, span_end))} | set(new)
        for sid in sorted(ids):  # one series at a time: memory stays that of one series' span
            # its minutes as columns, no tuple a minute: decoded, encoded, folded into 5 minutes and hours
            parts = [rollup.columns_or_log(data, self.store.path) for (data,) in db.execute(
                "SELECT data FROM chunks WHERE series = ? AND tier = ? AND start >= ? AND start < ? ORDER BY start",
                (sid, MINUTE, span_start, span_end))]
            if sid in new:
                parts.append(rollup.decode_columns(new[sid]))
            columns = rollup.joined(parts)
            counter = self._counter(sid)
            plan.compacted.append((sid, span_start, rollup.encode_columns(columns, counter)))
            plan.five.append((sid, span_start, rollup.encode_columns(rollup.fold(columns, RESOLUTION[FIVE_MINUTES]), counter)))
            hours = rollup.fold(columns, RESOLUTION[HOUR])
            row = db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start = ?",
                             (sid, HOUR, key)).fetchone()
            if row:  # the 10-day chunk's hours so far, this span's merged in (an hour it shares, folded into one)
                hours = rollup.fold(rollup.joined([rollup.columns_or_log(row[0], self.store.path), hours]), RESOLUTION[HOUR])
            plan.hour.append((sid, key, rollup.encode_columns(hours, counter)))

    def _counter(self, sid: int) -> bool:
        info = self.store.series.get(sid)
        return info is not None and info.counter

    def close(self) -> None:
        if self._sealer is not None:
            self._windows.put(None)
            self._sealer.join()
            self._sealer = None
        if self._seal_db is not None:
            try:
                self._seal_db.close()
            except sqlite3.Error:
                pass

    def _apply_seal(self, db: sqlite3.Connection, plan: "_SealPlan") -> None:
        db.executemany("INSERT OR REPLACE INTO chunks (series, tier, start, data) VALUES (?, ?, ?, ?)",
                       [(sid, RAW, plan.window, blob) for sid, blob in plan.raw])
        db.executemany("INSERT OR REPLACE INTO chunks (series, tier, start, data) VALUES (?, ?, ?, ?)",
                       [(sid, MINUTE, plan.window, blob) for sid, blob in plan.minute])
        for span_start in plan.compactions:
            db.execute("DELETE FROM chunks WHERE tier = ? AND start >= ? AND start < ?",
                       (MINUTE, span_start, span_start + CHUNK_SPAN[MINUTE]))
        db.executemany("INSERT OR REPLACE INTO chunks (series, tier, start, data) VALUES (?, ?, ?, ?)",
                       [(sid, MINUTE, start, blob) for sid, start, blob in plan.compacted])
        db.executemany("INSERT OR REPLACE INTO chunks (series, tier, start, data) VALUES (?, ?, ?, ?)",
                       [(sid, FIVE_MINUTES, start, blob) for sid, start, blob in plan.five])
        db.executemany("INSERT OR REPLACE INTO chunks (series, tier, start, data) VALUES (?, ?, ?, ?)",
                       [(sid, HOUR, start, blob) for sid, start, blob in plan.hour])
        db.executemany("UPDATE series SET last = ? WHERE id = ?", plan.present)
        db.execute("DELETE FROM head WHERE t < ?", (plan.end,))
        meta = [("compacted_until", repr(plan.compacted_until))]
        if plan.sealed_layout is not None:
            meta.append(("sealed_layout", str(plan.sealed_layout)))
        if plan.five_from is not None:
            meta.append((FIVE_MINUTES_FROM, repr(plan.five_from)))
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        """Retention, and forgetting series and layouts nothing refers to (main thread)."""
        for tier in FINEST_FIRST:
            db.execute("DELETE FROM chunks WHERE tier = ? AND start < ?",
                       (tier, now - self.store.retention.of(tier) - CHUNK_SPAN[tier]))
        db.execute("DELETE FROM alert_events WHERE at < ?", (now - self.store.retention.alerts,))
        horizon = now - max(self.store.retention.raw, self.store.retention.minute, self.store.retention.hour)
        gone = [r[0] for r in db.execute("SELECT id FROM series WHERE last < ?", (horizon,))]
        if gone:
            db.executemany("DELETE FROM series WHERE id = ?", [(sid,) for sid in gone])
            self.store.index.forget(gone)
            self.store.forget_ids()
        used = {r[0] for r in db.execute("SELECT DISTINCT layout FROM head")} | {self.store.layouts.current_id}
        sealed = db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone()
        if sealed:
            used.add(int(sealed[0]))
        unused = [lid for lid in self.store.layouts.known() if lid not in used]
        if unused:
            db.executemany("DELETE FROM layouts WHERE id = ?", [(lid,) for lid in unused])
            self.store.layouts.forget(unused)
