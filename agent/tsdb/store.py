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

Sealing, retention and the size cap are seal.Sealer's (its own thread); reading is
reader.Reader's (the query API's worker threads, each with its own connection: WAL lets them
read a consistent snapshot while the main thread writes); the tiers are tiers.py's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from array import array
from itertools import compress
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..labels import Labels, matches
from ..model import COUNTER, HISTOGRAM, SUMMARY, Outline, Sample, Snapshot
from ..store import small_page_cache
from .index import AlertEvent, Layouts, Positions, SeriesIndex, SeriesInfo
from .reader import Reader
from .seal import Sealer
from .tiers import DEFAULT_RETENTION, FIVE_MINUTES_FROM, Retention

log = logging.getLogger(__name__)

FILE_NAME = "history.db"
APPLICATION_ID = 0x4C4C4D48  # "LLMH": a SQLite file without it is not ours
SCHEMA_VERSION = 1

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
        self.refused_forgotten = 0  # times the memory of refused series was full and started over
        self.damaged_rows = 0  # head rows no seal could read (left out of their window)


REFUSED_RETRY = 600.0  # seconds before series refused at max_series are offered to the history again
MAX_REFUSED = 20_000  # refused series remembered at most (a router churning 100,000 names grew it to GBs)


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


class _Plan(Outline):
    """One cycle's lookup of its samples' series ids: the next snapshot whose samples fit its
    outline takes its ids and its values without a lookup per sample."""

    __slots__ = ("ids", "kept")

    def __init__(self, samples: List[Sample], ids: Tuple[int, ...], kept: List[bool]):
        super().__init__(samples)
        self.ids = ids  # the stored series' ids, in order
        self.kept = kept  # per sample: stored (excluded and refused series are not)


class HistoryStore:
    def __init__(self, path: str, retention: Retention = DEFAULT_RETENTION, exclude: Sequence[object] = (),
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
        self._local = threading.local()
        self.index = SeriesIndex()  # the stored series, shared with the sealer and readers
        self.layouts = Layouts()
        # name -> labels as the collector wrote them -> id (0: excluded); by name, so that the lookup
        # every cycle makes no (name, labels) tuple per sample, and the memo holds none
        self._ids: Dict[str, Dict[Labels, int]] = {}
        self._id_count = 0
        # series refused at max_series: skipped, not looked up again every cycle, until REFUSED_RETRY
        self._over_max: set = set()
        self._over_max_at = -math.inf
        self._plan: Optional[_Plan] = None  # last cycle's lookup, for a snapshot of the same series
        self.last_written = -math.inf  # the newest head row's time
        self.five_minutes_from = math.inf  # where the 5-minute tier begins (a file from before it: later)
        self.sealer = Sealer(self)
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
        self.tune(db)
        return ""

    def tune(self, db: sqlite3.Connection) -> None:
        """Per connection: SQLite keeps none of these settings in the file."""
        db.execute("PRAGMA synchronous=NORMAL")
        small_page_cache(db)
        if self.max_disk:
            page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(self.max_disk // page, 64)}")

    def _load(self) -> None:
        for sid, name, labels, is_counter, first, last in self.db.execute(
                "SELECT id, name, labels, counter, first, last FROM series"):
            full = _sorted_labels(name, tuple(tuple(p) for p in json.loads(labels)))
            self.index.add(SeriesInfo(sid, full, bool(is_counter), first, last))
        for lid, ids in self.db.execute("SELECT id, ids FROM layouts"):
            self.layouts.remember(lid, bytes(ids))
        row = self.db.execute("SELECT t, layout FROM head ORDER BY t DESC LIMIT 1").fetchone()
        if row:
            self.last_written = row[0]
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (FIVE_MINUTES_FROM,)).fetchone()
        if row:
            self.five_minutes_from = float(row[0])

    @property
    def series(self) -> Dict[int, SeriesInfo]:
        """The stored series by id (the cycle's thread; readers use `index.all()`)."""
        return self.index.by_id()

    def positions(self, lid: int) -> Positions:
        return self.layouts.positions(lid)

    # -- writing, every cycle --------------------------------------------------------------------

    def append(self, snapshot: Snapshot) -> bool:
        """Store this cycle's series; False if the file refused it (counted, logged once)."""
        t = snapshot.timestamp
        if t <= self.last_written:
            return False  # the clock went back: one value per time, as in a TSDB
        if t - self._over_max_at >= REFUSED_RETRY:
            self._over_max.clear()  # room may have come as old series aged out: ask again
            self._over_max_at = t
            self._plan = None
        samples = [s for family in snapshot.families for s in family.samples]
        plan = self._plan
        new: List[Tuple[str, Labels, bool]] = []
        if plan is not None and plan.fits(samples):
            ids, vals = list(plan.ids), list(compress([s.value for s in samples], plan.kept))
        else:
            ids, vals = self._look_up(snapshot, samples, new)
        ok = self.write("history", lambda db: self._append(db, t, ids, vals, new, snapshot))
        if ok:
            self.last_written = t
            self.stats.cycles_written += 1
        return ok

    def _look_up(self, snapshot: Snapshot, samples: List[Sample], new: List[Tuple[str, Labels, bool]]
                 ) -> Tuple[List[int], List[float]]:
        """Each sample's series id from the memo (`new`: those first seen); remembered as the
        plan for the next cycles whose snapshot has the same series in the same order (most)."""
        ids: List[int] = []
        vals: List[float] = []
        kept: List[bool] = []
        known = self._ids
        refused = self._over_max
        nothing: Dict[Labels, int] = {}
        for family in snapshot.families:
            name, of_name = None, nothing
            for s in family.samples:
                if s.name is not name:  # a family's samples mostly share one name
                    name, of_name = s.name, known.get(s.name, nothing)
                sid = of_name.get(s.labels)
                if sid is None:
                    if (s.name, s.labels) not in refused:
                        new.append((s.name, s.labels, _is_counter(family.type, s.name, family.name)))
                    kept.append(False)
                elif sid:
                    ids.append(sid)
                    vals.append(s.value)
                    kept.append(True)
                else:
                    kept.append(False)
        # a series first seen is resolved in the write, after the ids of those known: not a plan
        self._plan = None if new else _Plan(samples, tuple(ids), kept)
        return ids, vals

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
        layouts = self.layouts
        if layout != layouts.current:
            blob = array("q", layout).tobytes()
            lid = layouts.id_of(blob)
            if lid is None:
                lid = int(db.execute("INSERT INTO layouts (ids) VALUES (?)", (blob,)).lastrowid or 0)
                layouts.remember(lid, blob)
            layouts.current, layouts.current_id = layout, lid
        db.execute("INSERT INTO head (t, layout, vals) VALUES (?, ?, ?)", (t, layouts.current_id, array("d", vals).tobytes()))

    def _resolve(self, db: sqlite3.Connection, name: str, labels: Labels, is_counter: bool, t: float) -> int:
        """The id of a series first seen this cycle (0: not stored: excluded or over max_series)."""
        full = _sorted_labels(name, labels)
        sid = self.index.id_of(full)
        if sid is None:
            as_dict = dict(full)
            if any((sel.name in ("", name)) and matches(sel.matchers, as_dict) for sel in self.exclude):  # type: ignore
                sid = 0
            elif len(self.index) >= self.max_series or self.index.count_of(name) >= self.max_per_name:
                self.stats.dropped_series += 1
                if self.stats.dropped_series == 1:
                    log.warning("history: %s has reached the series the history keeps (%d in all, %d per metric, from "
                                "[history] max_series); new series are not stored (counted in "
                                "llm_agent_disk_history_dropped_series_total; a target churning label values?)",
                                name, self.max_series, self.max_per_name)
                if len(self._over_max) >= MAX_REFUSED:  # names churning each cycle: forget, do not grow
                    self._over_max.clear()
                    self.stats.refused_forgotten += 1
                self._over_max.add((name, labels))  # not asked again until REFUSED_RETRY: room may come later
                return 0
            else:
                sid = int(db.execute("INSERT INTO series (name, labels, counter, first, last) VALUES (?, ?, ?, ?, ?)",
                                     (name, json.dumps(tuple(kv for kv in full if kv[0] != "__name__")), int(is_counter),
                                      t, t)).lastrowid or 0)
                self.index.add(SeriesInfo(sid, full, is_counter, t, t))
        if self._id_count > 4 * max(len(self.index), 1000):
            self.forget_ids()  # label orderings and excluded series came and went: start over rather than grow
        self._ids.setdefault(name, {})[labels] = sid
        self._id_count += 1
        return sid

    def forget_ids(self) -> None:
        """Resolve every series again from the index (what is excluded, or which series exist,
        changed)."""
        self._ids = {}
        self._id_count = 0
        self._plan = None

    def write(self, kind: str, work: Callable[[sqlite3.Connection], None]) -> bool:
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
            self.refused(kind, str(e))
            return False
        self.accepted(kind)
        return True

    def refused(self, kind: str, error: str) -> None:
        """A write of `kind` failed: counted, and logged once per failing period."""
        self.stats.write_errors += 1
        if kind not in self._failing:
            self._failing[kind] = error
            log.error("history: cannot write %s to %s (%s); alerting and delivery go on without it (logged once "
                      "until it recovers)", kind, self.path, error)

    def accepted(self, kind: str) -> None:
        """A write of `kind` went through: a failing period ends, said once."""
        if self._failing.pop(kind, None) is not None:
            log.warning("history: %s can be written to %s again", kind, self.path)

    def _forget_uncommitted(self) -> None:
        """A rolled-back append may have named series and a layout that are not in the file:
        read the index again rather than trust memory."""
        self.index.clear()
        self.forget_ids()
        self.layouts.clear()
        try:
            self._load()
        except sqlite3.Error:
            pass

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

        return self.write("alert history", insert)

    # -- reading (any thread) ------------------------------------------------------------------------

    def maintain(self, now: Optional[float] = None, wait: bool = False) -> None:
        """After each cycle: hand a complete window to the sealer; retention once it is done."""
        self.sealer.maintain(now, wait)

    def settle(self) -> None:
        """Wait for a seal in progress (benchmarks fast-forwarding the clock; shutdown)."""
        self.sealer.settle()

    def reader(self) -> Reader:
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
        self.sealer.close()
        for db in (self.db,):
            try:
                if db is not None:
                    db.close()
            except sqlite3.Error:
                pass


