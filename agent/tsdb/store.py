"""The history file: every served series, each cycle, kept in three tiers in `history.db`.

Why SQLite, and why this shape (measured by tests/bench/bench_history.py):
- Each cycle is one row in `head`: the cycle's values as packed doubles, in the order of a
  *layout* (the list of series ids, stored once and reused while the set of series stays the
  same). One INSERT and one commit a cycle: a fraction of a millisecond, however many series.
- Every 30 minutes of data (aligned to the clock) the head is *sealed* in one transaction:
  its rows are turned into one compressed chunk per series (tier 0, raw), and the same
  samples are summarised into 1-minute and 1-hour rollups (min, max, sum, count, last)
  merged into the series' current tier-1 (6-hour) and tier-2 (10-day) chunks. The head rows
  go in the same transaction, so a crash leaves either the head or the chunks, never both or
  neither.
- WAL with synchronous=NORMAL: a kill -9 loses nothing committed (the WAL is in the page
  cache); a power cut loses at most the last commits, and never corrupts the file. History
  is not the outbox: losing the last second of it is acceptable, an fsync per cycle is not.
- Retention deletes whole chunks; SQLite reuses their pages, so the file stops growing once
  every tier is full. `max_disk` caps it (SQLite's max_page_count): at the cap the oldest raw
  window goes first, as Prometheus' retention.size does.

A write that fails (a full disk) is counted and logged once; alerting and delivery never wait
for this file. A file that is not this store's (corrupt, foreign, from a newer version) is
moved aside with its path logged, and a new store is started; nothing is silently dropped.

Readers (the query API's worker threads) use their own connections: WAL lets them read a
consistent snapshot while the main thread writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
from collections import OrderedDict
import sqlite3
import struct
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..model import COUNTER, HISTOGRAM, SUMMARY, Snapshot
from . import codec, rollup

log = logging.getLogger(__name__)

FILE_NAME = "history.db"
APPLICATION_ID = 0x4C4C4D48  # "LLMH": a SQLite file without it is not ours
SCHEMA_VERSION = 1
RAW_WINDOW = 1800.0  # the head is sealed every 30 minutes of data
RAW, MINUTE, HOUR = 0, 1, 2
RESOLUTION = {MINUTE: 60.0, HOUR: 3600.0}
CHUNK_SPAN = {RAW: RAW_WINDOW, MINUTE: 6 * 3600.0, HOUR: 10 * 86400.0}
Labels = Tuple[Tuple[str, str], ...]
Point = Tuple[float, float]

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, counter INTEGER NOT NULL,
                     first REAL NOT NULL, last REAL NOT NULL, UNIQUE (name, labels));
CREATE TABLE layouts (id INTEGER PRIMARY KEY, ids BLOB NOT NULL);
CREATE TABLE head (t REAL PRIMARY KEY, layout INTEGER NOT NULL, vals BLOB NOT NULL);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, series INTEGER NOT NULL, tier INTEGER NOT NULL, start REAL NOT NULL,
                     data BLOB NOT NULL);
CREATE UNIQUE INDEX chunks_key ON chunks (series, tier, start);
CREATE INDEX chunks_age ON chunks (tier, start);
CREATE TABLE alert_events (at REAL NOT NULL, state TEXT NOT NULL, alertname TEXT NOT NULL, fingerprint TEXT NOT NULL,
                           labels TEXT NOT NULL, annotations TEXT NOT NULL, value REAL);
CREATE INDEX alert_events_at ON alert_events (at);
"""


@dataclass(frozen=True)
class Retention:
    raw: float = 86400.0
    minute: float = 30 * 86400.0
    hour: float = 400 * 86400.0
    alerts: float = 400 * 86400.0

    def of(self, tier: int) -> float:
        return (self.raw, self.minute, self.hour)[tier]


@dataclass
class SeriesInfo:
    id: int
    labels: Labels  # sorted, with __name__
    counter: bool  # rollups read as `last` (a counter's value), not as the average
    first: float
    last: float
    as_dict: Dict[str, str] = field(default_factory=dict)


@dataclass
class AlertEvent:
    at: float
    state: str  # pending | firing | resolved | inactive (a pending alert that cleared before firing)
    labels: Dict[str, str]
    annotations: Dict[str, str]
    value: float
    fingerprint: str = ""


@dataclass
class _SealPlan:
    """What one seal writes: computed outside the write lock, applied in one transaction."""

    window: float
    end: float
    raw: List[Tuple[int, bytes]] = field(default_factory=list)
    minute: List[Tuple[int, bytes]] = field(default_factory=list)  # this window's 1-minute rollups
    compactions: List[float] = field(default_factory=list)  # 6-hour spans made one chunk
    compacted: List[Tuple[int, float, bytes]] = field(default_factory=list)
    hour: List[Tuple[int, float, bytes]] = field(default_factory=list)
    present: List[Tuple[float, int]] = field(default_factory=list)  # (last time, series) seen in the window
    sealed_layout: Optional[int] = None
    compacted_until: float = 0.0


class StoreStats:
    """Counters the agent exports about its history file."""

    def __init__(self) -> None:
        self.cycles_written = 0
        self.write_errors = 0  # cycles or seals the file refused (a full disk)
        self.seals = 0
        self.seal_seconds = 0.0
        self.dropped_series = 0  # new series refused at max_series
        self.moved_aside = 0
        self.trimmed_for_size = 0  # raw windows dropped early to stay under max_disk


def _sorted_labels(name: str, labels: Labels) -> Labels:
    return tuple(sorted(labels + (("__name__", name),)))


def _is_counter(family_type: str, sample_name: str, family_name: str) -> bool:
    if family_type == COUNTER:
        return True
    # a histogram's buckets, count and sum are counters; a summary's quantiles are gauges
    return family_type in (HISTOGRAM, SUMMARY) and sample_name != family_name


def move_aside(path: str, why: str, clock: Callable[[], float] = time.time) -> str:
    """Rename a file that is not a usable store (and its WAL) out of the way; return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock()))
    target = f"{path}.bad-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    log.error("history: %s is not a usable history store (%s); moved it to %s and started a new one",
              path, why, target)
    return target


class HistoryStore:
    def __init__(self, path: str, retention: Retention = Retention(), exclude: Sequence[object] = (),
                 max_series: int = 20_000, max_disk: int = 0, clock: Callable[[], float] = time.time,
                 readonly: bool = False):
        self.path = path
        self.retention = retention
        self.exclude = tuple(exclude)  # rules.ast.VectorSelector: series never stored
        self.max_series = max_series
        self.max_per_name = max(1000, max_series // 4)
        self.max_disk = max_disk
        self.clock = clock
        self.stats = StoreStats()
        self.moved_to: List[str] = []
        self._failing: Dict[str, str] = {}  # kinds of write failing now, with the first error
        self._lock = threading.Lock()  # the series index, shared with readers
        self._local = threading.local()
        self.series: Dict[int, SeriesInfo] = {}
        self._per_name: Dict[str, int] = {}  # stored series per metric name: one churning metric cannot take them all
        self._by_key: Dict[Tuple[str, Labels], int] = {}  # (name, sorted labels) -> id
        self._ids: Dict[Tuple[str, Labels], int] = {}  # (name, labels as the collector wrote them) -> id; 0: excluded
        self._layouts: Dict[bytes, int] = {}
        self._layout_ids: Dict[int, array] = {}
        self._layout_pos: "OrderedDict[int, Dict[int, int]]" = OrderedDict()  # a few, built when asked
        self._pos_lock = threading.Lock()
        self._last_layout: Tuple[int, ...] = ()
        self._last_layout_id = 0
        self._last_written = -math.inf
        self._sealer: Optional[threading.Thread] = None
        self._windows: "queue.Queue[Optional[float]]" = queue.Queue()
        self._sealed = threading.Event()
        self._sealing = False
        self._seal_error = ""
        self._seal_db: Optional[sqlite3.Connection] = None
        self.db = self._open_readonly() if readonly else self._open()
        self._load()

    # -- opening ---------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        for attempt in (1, 2):
            problem = ""
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
                problem = self._prepare(db)
                if not problem:
                    return db
                db.close()
            except sqlite3.DatabaseError as e:
                problem = f"SQLite says: {e}"
            if attempt == 2 or self.path == ":memory:":
                raise sqlite3.DatabaseError(f"history: cannot open {self.path}: {problem}")
            self.moved_to.append(move_aside(self.path, problem, self.clock))
            self.stats.moved_aside += 1
        raise AssertionError("unreachable")

    def _open_readonly(self) -> sqlite3.Connection:
        """For `llm-agent report` beside a running agent: reads only; a file that is not a
        store is an error here (the agent, not a reader, moves files aside)."""
        if not os.path.exists(self.path):
            raise sqlite3.DatabaseError(f"no history at {self.path} yet: is the agent running with [history] enabled "
                                        "and this state_dir?")
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None,
                             timeout=10)
        try:
            app = db.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise sqlite3.DatabaseError(f"{self.path} is not a history file: {e}") from None
        if app != APPLICATION_ID or db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{self.path} is not a history file this llm-agent can read")
        return db

    def _prepare(self, db: sqlite3.Connection) -> str:
        """Set the file up; a reason it is not ours, or ''."""
        app = db.execute("PRAGMA application_id").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if app == 0 and not tables:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
                             f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif app != APPLICATION_ID:
            return f"a SQLite file of another program (application id {app:#x}, tables {', '.join(tables[:5])})"
        elif db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            return "written by another version of llm-agent's history format"
        if db.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
            return "SQLite's quick_check found damage"
        db.execute("PRAGMA journal_mode=WAL")
        self._limit(db)
        return ""

    def _limit(self, db: sqlite3.Connection) -> None:
        """Per connection: SQLite keeps neither setting in the file."""
        db.execute("PRAGMA synchronous=NORMAL")
        if self.max_disk:
            page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(self.max_disk // page, 64)}")

    def _load(self) -> None:
        for sid, name, labels, is_counter, first, last in self.db.execute(
                "SELECT id, name, labels, counter, first, last FROM series"):
            key = (name, tuple(tuple(p) for p in json.loads(labels)))
            full = _sorted_labels(name, key[1])
            self.series[sid] = SeriesInfo(sid, full, bool(is_counter), first, last, dict(full))
            self._by_key[key] = sid
            self._per_name[name] = self._per_name.get(name, 0) + 1
        for lid, ids in self.db.execute("SELECT id, ids FROM layouts"):
            self._remember_layout(lid, bytes(ids))
        row = self.db.execute("SELECT t, layout FROM head ORDER BY t DESC LIMIT 1").fetchone()
        if row:
            self._last_written = row[0]

    def positions(self, lid: int) -> Dict[int, int]:
        """series id -> its place in layout `lid`'s rows ({} for an unknown layout); the last
        few are kept (any thread)."""
        with self._pos_lock:
            found = self._layout_pos.get(lid)
            if found is not None:
                self._layout_pos.move_to_end(lid)
                return found
        ids = self._layout_ids.get(lid)
        found = {sid: i for i, sid in enumerate(ids)} if ids is not None else {}
        with self._pos_lock:
            self._layout_pos[lid] = found
            while len(self._layout_pos) > 16:
                self._layout_pos.popitem(last=False)
        return found

    def _remember_layout(self, lid: int, ids: bytes) -> None:
        arr = array("q")
        arr.frombytes(ids)
        self._layouts[ids] = lid
        self._layout_ids[lid] = arr
        # positions are built when a seal or a read needs them: a churning target makes a new
        # layout every cycle, and a dict per layout would cost megabytes

    # -- writing, every cycle --------------------------------------------------------------------

    def append(self, snapshot: Snapshot) -> bool:
        """Store this cycle's series; False if the file refused it (counted, logged once)."""
        t = snapshot.timestamp
        if t <= self._last_written:
            return False  # the clock went back: one value per time, as in a TSDB
        ids: List[int] = []
        vals: List[float] = []
        known = self._ids
        new: List[Tuple[str, Labels, bool]] = []
        for family in snapshot.families:
            for s in family.samples:
                sid = known.get((s.name, s.labels))
                if sid is None:
                    new.append((s.name, s.labels, _is_counter(family.type, s.name, family.name)))
                    continue
                if sid:
                    ids.append(sid)
                    vals.append(s.value)
        ok = self._write("history", lambda db: self._append(db, t, ids, vals, new, snapshot))
        if ok:
            self._last_written = t
            self.stats.cycles_written += 1
        return ok

    def _append(self, db: sqlite3.Connection, t: float, ids: List[int], vals: List[float],
                new: List[Tuple[str, Labels, bool]], snapshot: Snapshot) -> None:
        if new:
            values = {(s.name, s.labels): s.value for f in snapshot.families for s in f.samples}
            for name, labels, is_counter in new:
                sid = self._resolve(db, name, labels, is_counter, t)
                if sid:
                    ids.append(sid)
                    vals.append(values[(name, labels)])
        layout = tuple(ids)
        if layout != self._last_layout:
            blob = array("q", layout).tobytes()
            lid = self._layouts.get(blob)
            if lid is None:
                lid = int(db.execute("INSERT INTO layouts (ids) VALUES (?)", (blob,)).lastrowid or 0)
                self._remember_layout(lid, blob)
            self._last_layout, self._last_layout_id = layout, lid
        db.execute("INSERT INTO head (t, layout, vals) VALUES (?, ?, ?)",
                   (t, self._last_layout_id, array("d", vals).tobytes()))

    def _resolve(self, db: sqlite3.Connection, name: str, labels: Labels, is_counter: bool, t: float) -> int:
        """The id of a series first seen this cycle (0: not stored: excluded or over max_series)."""
        from ..rules.history import matches

        canonical = tuple(sorted(labels))
        key = (name, canonical)
        sid = self._by_key.get(key)
        if sid is None:
            full = _sorted_labels(name, canonical)
            as_dict = dict(full)
            if any((sel.name in ("", name)) and matches(sel.matchers, as_dict) for sel in self.exclude):  # type: ignore
                sid = 0
            elif len(self.series) >= self.max_series or self._per_name.get(name, 0) >= self.max_per_name:
                self.stats.dropped_series += 1
                if self.stats.dropped_series == 1:
                    log.warning("history: %s has reached the series the history keeps (%d in all, %d per metric, from "
                                "[history] max_series); new series are not stored (counted in "
                                "llm_agent_disk_history_dropped_series_total; a target churning label values?)",
                                name, self.max_series, self.max_per_name)
                return 0  # not remembered as excluded: room may come when old series age out
            else:
                sid = int(db.execute("INSERT INTO series (name, labels, counter, first, last) VALUES (?, ?, ?, ?, ?)",
                                     (name, json.dumps(canonical), int(is_counter), t, t)).lastrowid or 0)
                with self._lock:
                    self.series[sid] = SeriesInfo(sid, full, is_counter, t, t, as_dict)
                    self._by_key[key] = sid
                self._per_name[name] = self._per_name.get(name, 0) + 1
        if len(self._ids) > 4 * max(len(self.series), 1000):
            self._ids.clear()  # label orderings and excluded series came and went: start over rather than grow
        self._ids[(name, labels)] = sid
        return sid

    def _write(self, kind: str, work: Callable[[sqlite3.Connection], None]) -> bool:
        """One transaction; a refusal is counted and logged once per failing period of its kind."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            work(db)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._forget_uncommitted()
            self._refused(kind, str(e))
            return False
        self._accepted(kind)
        return True

    def _refused(self, kind: str, error: str) -> None:
        self.stats.write_errors += 1
        if kind not in self._failing:
            self._failing[kind] = error
            log.error("history: cannot write %s to %s (%s); alerting and delivery go on without it (logged once "
                      "until it recovers)", kind, self.path, error)

    def _accepted(self, kind: str) -> None:
        if self._failing.pop(kind, None) is not None:
            log.warning("history: %s can be written to %s again", kind, self.path)

    def _forget_uncommitted(self) -> None:
        """A rolled-back append may have named series and a layout that are not in the file:
        read the index again rather than trust memory."""
        with self._lock:
            self.series.clear()
            self._by_key.clear()
            self._per_name.clear()
        self._ids.clear()
        self._layouts.clear()
        self._layout_ids.clear()
        with self._pos_lock:
            self._layout_pos.clear()
        self._last_layout, self._last_layout_id = (), 0
        try:
            with self._lock:
                self._load()
        except sqlite3.Error:
            pass

    def _enforce_size(self) -> None:
        """Under max_disk, with room for a seal: past 85% of it in use, the oldest data goes
        first (a raw window, else a 1-minute span, else a 1-hour one, else the oldest head
        window), as Prometheus' retention.size drops the oldest block."""
        if not self.max_disk:
            return
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        limit = 0.85 * self.max_disk / page
        for _ in range(100):
            used = self.db.execute("PRAGMA page_count").fetchone()[0] - self.db.execute("PRAGMA freelist_count").fetchone()[0]
            if used <= limit or not self._write("a size trim", self._drop_oldest):
                return
            self.stats.trimmed_for_size += 1

    def _drop_oldest(self, db: sqlite3.Connection) -> None:
        for tier in (RAW, MINUTE, HOUR):
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
        now = self.clock() if now is None else now
        while True:
            if self._sealing:
                if not self._sealed.is_set() and not wait:
                    return
                self._sealed.wait()
                self._sealing = False
                if self._seal_error:
                    self._refused("a sealed window", self._seal_error)
                else:
                    self._accepted("a sealed window")
                    self._write("retention", lambda db: self._expire(db, now))
                self._enforce_size()
            window = self._due_window()
            if window is None:
                return
            self._seal_error = ""
            self._sealed.clear()
            self._sealing = True
            if self._sealer is None:  # one thread for the store's life: a thread per seal fragments the heap
                self._sealer = threading.Thread(target=self._seal_loop, name="history-seal", daemon=True)
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
                self._sealed.set()

    def _due_window(self) -> Optional[float]:
        """The oldest window of the head that is complete (the newest write is past it)."""
        if self._last_written <= 0:
            return None
        row = self.db.execute("SELECT MIN(t) FROM head").fetchone()
        if not row or row[0] is None:
            return None
        window = math.floor(row[0] / RAW_WINDOW) * RAW_WINDOW
        return window if window + RAW_WINDOW <= self._last_written else None

    def _seal_in_background(self, window: float) -> None:
        started = time.thread_time()
        try:
            if self._seal_db is None:  # its own connection: reads and computes while the cycle writes
                self._seal_db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                self._limit(self._seal_db)
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
            with self._lock:
                for t_last, sid in plan.present:
                    info = self.series.get(sid)
                    if info is not None:
                        info.last = t_last
            self.stats.seals += 1
        except (sqlite3.Error, codec.CorruptChunk) as e:
            self._seal_error = str(e) or type(e).__name__
        except Exception as e:  # a bug must not kill the thread silently: reported by maintain()
            self._seal_error = f"{type(e).__name__}: {e}"
        finally:
            self.stats.seal_seconds += time.thread_time() - started

    def _plan_seal(self, db: sqlite3.Connection, window: float) -> "_SealPlan":
        """Everything the seal of `window` writes, computed from a read snapshot (no lock held)."""
        end = window + RAW_WINDOW
        plan = _SealPlan(window, end)
        db.execute("BEGIN")
        try:
            rows = db.execute("SELECT t, layout, vals FROM head WHERE t < ? ORDER BY t", (end,)).fetchall()
            before = db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone()
            done = db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()
            compacted_until = float(done[0]) if done else math.floor(window / CHUNK_SPAN[MINUTE]) * CHUNK_SPAN[MINUTE]
            series = self._columns(rows, self.positions(int(before[0])) if before else {}, plan)
            minutes: Dict[int, List[rollup.Rollup]] = {}
            for sid, (times_blob, times, column) in series.items():
                plan.raw.append((sid, codec.encode(times_blob, len(times), [column])))
                points = rollup.summarise(times, column, RESOLUTION[MINUTE])
                if points:
                    minutes[sid] = points
                    plan.minute.append((sid, encode_rollups(points, self._counter(sid))))
            span = CHUNK_SPAN[MINUTE]
            start = compacted_until
            while start + span <= end:  # every 6-hour span that is complete: compacted, and its hours rolled up
                self._plan_compaction(db, plan, start, minutes)
                start += span
            plan.compacted_until = start
        finally:
            db.execute("COMMIT")
        return plan

    def _columns(self, rows: list, previous: Dict[int, int], plan: "_SealPlan"
                 ) -> Dict[int, Tuple[bytes, List[float], array]]:
        """Each series' samples in the window: (encoded times, times, values), with a stale
        marker where a series vanished from one cycle to the next."""
        parts: Dict[int, List[Tuple[int, bytes, float]]] = {}  # series -> [(run, column, 0) | (-1, b"", stale time)]
        runs: List[List[float]] = []
        i = 0
        while i < len(rows):
            lid = rows[i][1]
            j = i
            while j < len(rows) and rows[j][1] == lid:
                j += 1
            ids = self._layout_ids.get(lid)
            if ids is None:
                raise sqlite3.DatabaseError(f"a head row refers to unknown layout {lid}")
            run = len(runs)
            runs.append([r[0] for r in rows[i:j]])
            pos = self.positions(lid)
            for sid in previous:
                if sid not in pos:
                    parts.setdefault(sid, []).append((-1, b"", rows[i][0]))  # vanished: Prometheus' stale marker
            width = len(ids)
            if width:
                matrix = memoryview(b"".join(r[2] for r in rows[i:j])).cast("d")
                if len(matrix) != width * (j - i):
                    raise sqlite3.DatabaseError("a head row's length does not match its layout")
                for k, sid in enumerate(ids):
                    parts.setdefault(sid, []).append((run, matrix[k::width].tobytes(), 0.0))
            previous = pos
            plan.sealed_layout = lid
            i = j
        out: Dict[int, Tuple[bytes, List[float], array]] = {}
        times_cache: Dict[tuple, Tuple[bytes, List[float]]] = {}
        for sid, pieces in parts.items():
            shape = tuple((p[0], p[2]) for p in pieces)
            cached = times_cache.get(shape)
            if cached is None:
                times: List[float] = []
                for p in pieces:
                    times.extend(runs[p[0]] if p[0] >= 0 else [p[2]])
                cached = times_cache[shape] = (codec.encode_times([round(x * 1000) for x in times]), times)
            column = array("d")
            column.frombytes(b"".join(p[1] if p[0] >= 0 else codec.STALE_BYTES for p in pieces))
            out[sid] = (cached[0], cached[1], column)
            if pieces[-1][0] >= 0:
                plan.present.append((runs[pieces[-1][0]][-1], sid))
        return out

    def _plan_compaction(self, db: sqlite3.Connection, plan: "_SealPlan", span_start: float,
                         new_minutes: Dict[int, List[rollup.Rollup]]) -> None:
        """The 6-hour span's 1-minute chunks as one, and its hours merged into the 10-day chunks."""
        span_end = span_start + CHUNK_SPAN[MINUTE]
        plan.compactions.append(span_start)
        hour_span = CHUNK_SPAN[HOUR]
        key = math.floor(span_start / hour_span) * hour_span
        new = new_minutes if span_start <= plan.window < span_end else {}
        ids = {r[0] for r in db.execute("SELECT DISTINCT series FROM chunks WHERE tier = ? AND start >= ? AND start < ?",
                                        (MINUTE, span_start, span_end))} | set(new)
        for sid in sorted(ids):  # one series at a time: memory stays that of one series' span
            points: List[rollup.Rollup] = []
            for (data,) in db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start >= ? AND start < ? "
                                      "ORDER BY start", (sid, MINUTE, span_start, span_end)):
                points.extend(self._rollups_or_nothing(data))
            points.extend(new.get(sid, ()))
            points.sort(key=lambda p: p[0])
            counter = self._counter(sid)
            plan.compacted.append((sid, span_start, encode_rollups(points, counter)))
            hours = rollup.merge([], points, RESOLUTION[HOUR])
            row = db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start = ?",
                             (sid, HOUR, key)).fetchone()
            old = self._rollups_or_nothing(row[0]) if row else []
            plan.hour.append((sid, key, encode_rollups(rollup.merge(old, hours, RESOLUTION[HOUR]), counter)))

    def _counter(self, sid: int) -> bool:
        info = self.series.get(sid)
        return info is not None and info.counter

    def _rollups_or_nothing(self, data: bytes) -> List[rollup.Rollup]:
        try:
            return decode_rollups(data)
        except codec.CorruptChunk as e:
            log.error("history: a damaged rollup chunk in %s left out (%s)", self.path, e)
            return []

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
                       [(sid, HOUR, start, blob) for sid, start, blob in plan.hour])
        db.executemany("UPDATE series SET last = ? WHERE id = ?", plan.present)
        db.execute("DELETE FROM head WHERE t < ?", (plan.end,))
        meta = [("compacted_until", repr(plan.compacted_until))]
        if plan.sealed_layout is not None:
            meta.append(("sealed_layout", str(plan.sealed_layout)))
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        """Retention, and forgetting series and layouts nothing refers to (main thread)."""
        for tier in (RAW, MINUTE, HOUR):
            db.execute("DELETE FROM chunks WHERE tier = ? AND start < ?",
                       (tier, now - self.retention.of(tier) - CHUNK_SPAN[tier]))
        db.execute("DELETE FROM alert_events WHERE at < ?", (now - self.retention.alerts,))
        horizon = now - max(self.retention.raw, self.retention.minute, self.retention.hour)
        gone = [r[0] for r in db.execute("SELECT id FROM series WHERE last < ?", (horizon,))]
        if gone:
            db.executemany("DELETE FROM series WHERE id = ?", [(sid,) for sid in gone])
            with self._lock:
                for sid in gone:
                    info = self.series.pop(sid, None)
                    if info is not None:
                        name = info.as_dict["__name__"]
                        self._per_name[name] = self._per_name.get(name, 1) - 1
                        self._by_key.pop((name, tuple(kv for kv in info.labels if kv[0] != "__name__")), None)
            self._ids.clear()
        used = {r[0] for r in db.execute("SELECT DISTINCT layout FROM head")} | {self._last_layout_id}
        sealed = db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone()
        if sealed:
            used.add(int(sealed[0]))
        unused = [lid for lid in self._layout_ids if lid not in used]
        if unused:
            db.executemany("DELETE FROM layouts WHERE id = ?", [(lid,) for lid in unused])
            for lid in unused:
                self._layouts.pop(self._layout_ids.pop(lid).tobytes(), None)
                with self._pos_lock:
                    self._layout_pos.pop(lid, None)

    # -- alert history -----------------------------------------------------------------------------

    def record_alerts(self, events: Sequence[AlertEvent]) -> bool:
        if not events:
            return True
        rows = [(e.at, e.state, e.labels.get("alertname", ""), e.fingerprint, json.dumps(e.labels, sort_keys=True),
                 json.dumps(e.annotations, sort_keys=True), e.value if math.isfinite(e.value) else None)
                for e in events]
        def insert(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO alert_events (at, state, alertname, fingerprint, labels, annotations, value) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

        return self._write("alert history", insert)

    # -- reading (any thread) ------------------------------------------------------------------------

    def reader(self) -> "Reader":
        """This thread's read-only view (its own connection, opened once)."""
        r = getattr(self._local, "reader", None)
        if r is None or r.db is None:
            r = self._local.reader = Reader(self)
        return r

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def close(self) -> None:
        if self._sealer is not None:
            self._windows.put(None)
            self._sealer.join()
            self._sealer = None
        for db in (self.db, self._seal_db):
            try:
                if db is not None:
                    db.close()
            except sqlite3.Error:
                pass


def encode_rollups(points: Sequence[rollup.Rollup], counter: bool = False) -> bytes:
    """Rollups as columns last, min, max, sum, count. When they are decimals of one scale,
    min and max are stored as offsets from last and sum from last * count (small numbers
    that compress: a third of the size); a counter's sum is not kept (its average in a
    bucket means nothing; read, it is last * count)."""
    times = codec.encode_times([round(p[0] * 1000) for p in points])
    last, low, high, total, count = (array("d", [p[c] for p in points]) for c in (5, 1, 2, 3, 4))
    scales = [codec.scale_of(c) for c in ((last, low, high) if counter else (last, low, high, total))]
    if min(scales) < 0 or codec.scale_of(count) != 0:
        return codec.encode(times, len(points), [last, low, high, total, count])
    k = max(scales)
    scale = 10 ** k
    ints = [round(v * scale) for v in last]
    counts = [int(c) for c in count]
    offsets = [codec.encode_offsets([round(v * scale) - m for v, m in zip(col, ints)], k) for col in (low, high)]
    sums = [0] * len(points) if counter else [round(v * scale) - m * c for v, m, c in zip(total, ints, counts)]
    return codec.encode(times, len(points), [last, offsets[0], offsets[1], codec.encode_offsets(sums, k), count])


def decode_rollups(blob: bytes) -> List[rollup.Rollup]:
    scales: Dict[int, int] = {}
    times, cols = codec.decode(blob, scales=scales)
    if len(cols) != 5:
        raise codec.CorruptChunk("a rollup chunk has five columns")
    last, low, high, total, count = cols[0], cols[1], cols[2], cols[3], cols[4]
    if low.typecode == "q":  # offsets from last (and last * count), in the scale the offsets carry
        if not (low.typecode == high.typecode == total.typecode == "q") or last.typecode != "d":
            raise codec.CorruptChunk("a rollup chunk mixes offsets and values")
        scale = 10 ** scales[1]
        ints = [round(v * scale) for v in last]
        low = array("d", [(m + o) / scale for m, o in zip(ints, low)])
        high = array("d", [(m + o) / scale for m, o in zip(ints, high)])
        total = array("d", [(m * int(c) + o) / scale for m, c, o in zip(ints, count, total)])
    return list(zip(times, low, high, total, count, last))


class Reader:
    """Reads for one thread. Each public call reads in one transaction, so a seal running at
    the same time is seen entirely or not at all."""

    def __init__(self, store: HistoryStore):
        self.store = store
        uri = f"file:{store.path}?mode=ro" if store.path != ":memory:" else store.path
        self.db: Optional[sqlite3.Connection] = None
        self.db = store.db if store.path == ":memory:" else sqlite3.connect(uri, uri=True, check_same_thread=False,
                                                                            isolation_level=None, timeout=10)

    def find(self, name: str, matchers: Sequence[object], start: float, end: float) -> List[SeriesInfo]:
        """Stored series matching a selector that have data between start and end."""
        from ..rules.history import matches

        with self.store._lock:
            infos = list(self.store.series.values())
        live = self.store.positions(self.store._last_layout_id)
        out = []
        for info in infos:
            if name and info.as_dict.get("__name__") != name:
                continue
            if info.first > end or (info.last < start and info.id not in live and info.last < start - RAW_WINDOW):
                continue
            if matches(matchers, info.as_dict):  # type: ignore[arg-type]
                out.append(info)
        return out

    def raw(self, ids: Iterable[int], start: float, end: float) -> Dict[int, List[Point]]:
        """Raw samples (stale markers included) of each series in [start, end]."""
        wanted = list(ids)
        out: Dict[int, List[Point]] = {sid: [] for sid in wanted}
        db = self._db()
        db.execute("BEGIN")
        try:
            for sid in wanted:
                for (data,) in db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start > ? "
                                          "AND start <= ? ORDER BY start", (sid, RAW, start - RAW_WINDOW, end)):
                    times, cols = self._decode(data)
                    out[sid].extend(p for p in zip(times, cols.get(0, ())) if start <= p[0] <= end)
            self._head(db, out, start, end)
        finally:
            db.execute("COMMIT")
        return out

    def rollups(self, ids: Iterable[int], tier: int, start: float, end: float) -> Dict[int, List[rollup.Rollup]]:
        """Rollups of each series in [start, end]. What is not rolled up on disk yet is added
        here: the head, summarised; for hours, also the 1-minute chunks of the 6-hour span
        not compacted yet."""
        wanted = list(ids)
        out: Dict[int, List[rollup.Rollup]] = {sid: [] for sid in wanted}
        recent: Dict[int, List[rollup.Rollup]] = {sid: [] for sid in wanted}
        head: Dict[int, List[Point]] = {sid: [] for sid in wanted}
        res = RESOLUTION[tier]
        db = self._db()
        db.execute("BEGIN")
        try:
            done = db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()
            compacted_until = float(done[0]) if done else -math.inf
            for sid in wanted:
                for (data,) in db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start > ? "
                                          "AND start <= ? ORDER BY start", (sid, tier, start - CHUNK_SPAN[tier], end)):
                    out[sid].extend(p for p in self.store._rollups_or_nothing(data) if start <= p[0] <= end)
                if tier == HOUR:
                    for (data,) in db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start >= ? "
                                              "ORDER BY start", (sid, MINUTE, max(compacted_until, start - RAW_WINDOW))):
                        recent[sid].extend(p for p in self.store._rollups_or_nothing(data) if start <= p[0] <= end)
            self._head(db, head, start, end)
        finally:
            db.execute("COMMIT")
        for sid in wanted:
            points = head[sid]
            extra = rollup.summarise([p[0] for p in points], [p[1] for p in points], res) if points else []
            if recent[sid] or extra:
                out[sid] = rollup.merge(out[sid], recent[sid] + extra, res)
        return out

    def alert_events(self, since: float, until: float, limit: int = 10_000) -> List[AlertEvent]:
        db = self._db()
        rows = db.execute("SELECT at, state, fingerprint, labels, annotations, value FROM alert_events "
                          "WHERE at >= ? AND at <= ? ORDER BY at, rowid LIMIT ?", (since, until, limit)).fetchall()
        return [AlertEvent(at, state, json.loads(labels), json.loads(ann), math.nan if value is None else value, fp)
                for at, state, fp, labels, ann, value in rows]

    def _db(self) -> sqlite3.Connection:
        assert self.db is not None
        return self.db

    def _decode(self, data: bytes) -> Tuple[List[float], Dict[int, array]]:
        try:
            return codec.decode(data)
        except codec.CorruptChunk as e:
            log.error("history: a damaged chunk in %s skipped (%s)", self.store.path, e)
            return [], {}

    def _head(self, db: sqlite3.Connection, out: Dict[int, List[Point]], start: float, end: float) -> None:
        """The unsealed cycles' values of the wanted series, with stale markers where one vanished."""
        positions = self.store.positions
        sealed = db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone()
        before = positions(int(sealed[0])) if sealed else {}
        present: Dict[int, bool] = {sid: sid in before for sid in out}  # so a series gone at the seal gets its marker
        unpack = struct.Struct("<d").unpack_from
        for t, lid, vals in db.execute("SELECT t, layout, vals FROM head WHERE t <= ? ORDER BY t", (end,)):
            pos = positions(lid)
            for sid, points in out.items():
                i = pos.get(sid)
                if i is None:
                    if present.get(sid) and t >= start:
                        points.append((t, codec.STALE))
                    present[sid] = False
                    continue
                present[sid] = True
                if t >= start:
                    points.append((t, unpack(vals, 8 * i)[0]))

