"""Reading the history file from any thread: each reader has its own read-only connection,
and each call reads in one transaction (WAL), so a seal running at the same time is seen
entirely or not at all. What is not sealed yet is read from the head rows."""

from __future__ import annotations

import json
import logging
from bisect import bisect_left, bisect_right
import math
import sqlite3
import struct
from array import array
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Callable, Dict, Generator, Iterable, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple

from ..labels import Matcher, matches
from ..promql.samples import Window
from ..store import small_page_cache
from . import codec, rollup
from .index import NO_POSITIONS, AlertEvent, Point, SeriesInfo
from .tiers import CHUNK_SPAN, FIVE_MINUTES, HOUR, MINUTE, RAW, RAW_WINDOW, RESOLUTION

if TYPE_CHECKING:
    from .store import HistoryStore

log = logging.getLogger(__name__)


HEAD_HELD_MAX = 8 << 20  # bytes of head rows a snapshot holds (30 minutes of ~2,900 series); past it, read at each call
READS_HELD_MAX = 4 << 20  # bytes of rollup points a snapshot keeps for the same read asked again (a week of ~25 series)


class TooManyPoints(Exception):
    """A read passed the number of points its caller allowed (a query's sample budget): it
    stops there, not after loading gigabytes (a day of raw samples of every series is ~20M)."""


class _Appends(Protocol):
    def append(self, point: Point) -> None: ...


class Reader:
    """Reads for one thread. Each public call reads in one transaction, so a seal running at
    the same time is seen entirely or not at all; inside `snapshot()` every call shares one."""

    def __init__(self, store: HistoryStore):
        self.store = store
        self._held = False  # inside snapshot(): one transaction for every call
        self._head_rows: Optional[List[Tuple[float, int, bytes]]] = None  # the head, read once a snapshot
        self._sealed_layout: Optional[tuple] = None
        self._reads: Dict[tuple, Dict[int, Window]] = {}  # rollup reads a snapshot was asked for, kept till it ends
        self._reads_bytes = 0
        uri = f"file:{store.path}?mode=ro" if store.path != ":memory:" else store.path
        self.db: Optional[sqlite3.Connection] = None
        self.db = store.db if store.path == ":memory:" else sqlite3.connect(uri, uri=True, check_same_thread=False,
                                                                            isolation_level=None, timeout=10)
        if store.path != ":memory:":
            small_page_cache(self.db)

    def find(self, name: str, matchers: Sequence[Matcher], start: float, end: float) -> List[SeriesInfo]:
        """Stored series matching a selector that have data between start and end."""
        infos = self.store.index.all()
        live = self.store.layouts.positions(self.store.layouts.current_id)
        out = []
        for info in infos:
            if name and info.name != name:
                continue
            # `last` moves at each seal, so a series still in the head may look up to a window old
            # (asked second: bisecting the live layout for every series would cost more than the rest)
            if info.first > end or (info.last < start - RAW_WINDOW and info.id not in live):
                continue
            if matches(matchers, info.as_dict):
                out.append(info)
        return out

    def raw(self, ids: Iterable[int], start: float, end: float, limit: float = math.inf) -> Dict[int, List[Point]]:
        """Raw samples (stale markers included) of each series in [start, end]; TooManyPoints
        as soon as more than `limit` are read."""
        wanted = list(ids)
        out: Dict[int, List[Point]] = {sid: [] for sid in wanted}
        total = 0
        with self._transaction() as db:
            for sid in wanted:
                points = out[sid]
                for (data,) in db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start > ? "
                                          "AND start <= ? ORDER BY start", (sid, RAW, start - RAW_WINDOW, end)):
                    times, cols = self._decode(data)
                    before = len(points)
                    points.extend(p for p in zip(times, cols.get(0, ())) if start <= p[0] <= end)
                    total += len(points) - before
                    if total > limit:
                        raise TooManyPoints()
            self._head(db, out, start, end, limit - total)
        return out

    def raw_after(self, start: float, end: float) -> Dict[int, List[Point]]:
        """Every series' raw samples (stale markers included) in (start, end], oldest first: what
        remote write sends forward from its position. One transaction: sealed chunks, then head."""
        out: Dict[int, List[Point]] = {info.id: [] for info in self.store.index.all()}
        with self._transaction() as db:
            for sid, data in db.execute("SELECT series, data FROM chunks WHERE tier = ? AND start > ? AND start <= ? "
                                        "ORDER BY start", (RAW, start - RAW_WINDOW, end)):
                times, cols = self._decode(data)
                points = out.setdefault(sid, [])
                points.extend(p for p in zip(times, cols.get(0, ())) if start < p[0] <= end)
            self._head(db, out, start, end)
        return {sid: [p for p in points if p[0] > start] for sid, points in out.items() if points}

    def rollups(self, ids: Iterable[int], tier: int, start: float, end: float,
                columns: Optional[Iterable[str]] = None) -> Dict[int, List[rollup.Rollup]]:
        """Rollups of each series in [start, end]. What is not rolled up on disk yet is added
        here: the head, summarised; for hours, also the 1-minute chunks of the 6-hour span
        not compacted yet. `columns`: the ones the caller reads (rollup.column_points' names);
        the chunks' other columns are not decoded (NaN)."""
        columns = None if columns is None else tuple(columns)
        path, res = self.store.path, RESOLUTION[tier]
        out: Dict[int, List[rollup.Rollup]] = {}
        with closing(self._rollup_series(list(ids), tier, start, end, columns)) as series:
            for sid, rows, newer in series:
                stored = [p for _, data in rows for p in rollup.decode_or_log(data, path, columns, start, end)]
                if newer:
                    # only the stored points from the first new bucket on can share a bucket with them
                    first = math.floor(min(p[0] for p in newer) / res) * res
                    cut = bisect_left(stored, (first,))
                    stored = stored[:cut] + rollup.merge(stored[cut:], newer, res)
                out[sid] = stored
        return out

    def rollup_points(self, columns: Dict[int, str], tier: int, start: float, end: float,
                      limit: float = math.inf) -> Dict[int, Window]:
        """The (time, value) points a query reads of each series' rollups in [start, end]:
        `columns` maps a series to the column it reads (rollup.column_points' names). The same
        points as column_points(rollups(...)), as two arrays a series, with the stored chunks
        read column by column (rollup.decode_column) and only the newest bucket merged as whole
        rollups. Inside a snapshot, a read asked for again is answered with what the first gave
        (a round of history rules reads `llm_agent_probes_total[7d]` in two rules). TooManyPoints
        as soon as more than `limit` are read."""
        key = (tier, start, end, tuple(sorted(columns.items())))
        out = self._reads.get(key)
        if out is None:
            out, total = {}, 0
            with closing(self._rollup_series(list(columns), tier, start, end, tuple(set(columns.values())))) as series:
                for sid, rows, newer in series:  # (the read's transaction ends with the generator)
                    out[sid] = self._column(rows, newer, columns[sid], tier, start, end, limit - total)
                    total += len(out[sid])
            if self._held and self._reads_bytes + 16 * total <= READS_HELD_MAX:
                self._reads[key] = out
                self._reads_bytes += 16 * total
        if sum(len(w) for w in out.values()) > limit:
            raise TooManyPoints()
        return out

    def _column(self, rows: List[Tuple[float, bytes]], newer: List[rollup.Rollup], column: str, tier: int,
                start: float, end: float, limit: float) -> Window:
        """One series' points of `column` from its stored chunks and what is newer (rollup_points)."""
        path, res = self.store.path, RESOLUTION[tier]
        times, values = array("d"), array("d")
        ends: List[int] = []  # where each chunk's points end in `times`
        for _, data in rows:
            read = rollup.column_or_log(data, path, column, start, end)
            times.extend(read.times)
            values.extend(read.values)
            ends.append(len(times))
            if len(times) > limit:
                raise TooManyPoints()
        if newer:
            first = math.floor(min(p[0] for p in newer) / res) * res
            cut = bisect_left(times, first)
            # only a chunk with a point from the first new bucket on can share a bucket with
            # them (usually none: the head begins where the last seal ended)
            stored = [p for (_, data), chunk_end in zip(rows, ends) if chunk_end > cut
                      for p in rollup.decode_or_log(data, path, (column,), max(first, start), end)]
            del times[cut:], values[cut:]
            for t, v in rollup.column_points(rollup.merge(stored, newer, res), column):
                times.append(t)
                values.append(v)
        return Window(times, values)

    def _rollup_series(self, wanted: List[int], tier: int, start: float, end: float, columns: Optional[Tuple[str, ...]]
                       ) -> Generator[Tuple[int, List[Tuple[float, bytes]], List[rollup.Rollup]], None, None]:
        """In one transaction, series by series (so that a caller can stop at its limit before
        the rest is fetched): its stored chunks of `tier` that reach [start, end] (each with its
        start), and what is not rolled up on disk yet, as rollups in time order: the head,
        summarised; for the tiers made at compaction (5 minutes, hours), also the 1-minute
        chunks not compacted yet."""
        head = {sid: rollup.Summary(RESOLUTION[tier]) for sid in wanted}
        with self._transaction() as db:
            done = db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()
            compacted_until = float(done[0]) if done else -math.inf
            # a 1-minute chunk from after the last compaction is one seal's, RAW_WINDOW long: only
            # the older, compacted ones can reach [start, end] from a whole span before it (a
            # 1-hour read was decoding the dozen chunks of the 6 hours before it)
            spanned_before = compacted_until if tier == MINUTE and done else math.inf
            self._head(db, head, start, end)
            for sid in wanted:
                rows = db.execute("SELECT start, data FROM chunks WHERE series = ? AND tier = ? AND start > ? "
                                  "AND start <= ? AND (start < ? OR start > ?) ORDER BY start",
                                  (sid, tier, start - CHUNK_SPAN[tier], end, spanned_before, start - RAW_WINDOW)).fetchall()
                newer: List[rollup.Rollup] = []
                if tier in (FIVE_MINUTES, HOUR):
                    for (data,) in db.execute("SELECT data FROM chunks WHERE series = ? AND tier = ? AND start >= ? "
                                              "ORDER BY start", (sid, MINUTE, max(compacted_until, start - RAW_WINDOW))):
                        newer.extend(rollup.decode_or_log(data, self.store.path, columns, start, end))
                newer += head.pop(sid).rollups()
                yield sid, rows, newer

    def alert_events(self, since: float, until: float, limit: int = 10_000) -> List[AlertEvent]:
        db = self._db()
        rows = db.execute("SELECT at, state, fingerprint, labels, annotations, value FROM alert_events "
                          "WHERE at >= ? AND at <= ? ORDER BY at, rowid LIMIT ?", (since, until, limit)).fetchall()
        return [AlertEvent(at, state, json.loads(labels), json.loads(ann), math.nan if value is None else value, fp)
                for at, state, fp, labels, ann, value in rows]

    def _db(self) -> sqlite3.Connection:
        assert self.db is not None
        return self.db

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside is one transaction, so all of them see the file as it was at the
        first, and the head rows are read from the file once, not once a selector: a round of
        history rules asks for ~40 selectors, and each read every head row (a 30-minute head
        of 1,000 series is 3 MB, read through a 256 KiB page cache). The rows are held until
        the snapshot ends, up to HEAD_HELD_MAX bytes (a larger head is read at each call, in the
        same transaction). Nested snapshots are one."""
        if self._held or self.store.path == ":memory:":  # (an in-memory store's reader is the writer's connection)
            yield
            return
        db = self._db()
        db.execute("BEGIN")
        self._held = True
        try:
            yield
        finally:
            self._held = False
            self._head_rows = self._sealed_layout = None
            self._reads, self._reads_bytes = {}, 0
            db.execute("COMMIT")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One call's transaction, or the snapshot's where one is held."""
        db = self._db()
        if self._held:
            yield db
            return
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def _head_since(self, db: sqlite3.Connection, end: float) -> Tuple[Optional[tuple], Iterable[Tuple[float, int, bytes]]]:
        """The layout the last seal ended with, and the head rows up to `end`, oldest first."""
        if not self._held:
            return (db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone(),
                    db.execute("SELECT t, layout, vals FROM head WHERE t <= ? ORDER BY t", (end,)))
        if self._sealed_layout is None:
            self._sealed_layout = db.execute("SELECT value FROM meta WHERE key = 'sealed_layout'").fetchone() or ()
            rows = db.execute("SELECT COUNT(*) FROM head").fetchone()[0]
            width = len(self.store.layouts.ids(self.store.layouts.current_id) or ())
            if rows * width * 8 <= HEAD_HELD_MAX:
                self._head_rows = db.execute("SELECT t, layout, vals FROM head ORDER BY t").fetchall()
        if self._head_rows is None:  # too large to hold: read at each call, still in the snapshot's transaction
            return self._sealed_layout, db.execute("SELECT t, layout, vals FROM head WHERE t <= ? ORDER BY t", (end,))
        rows = self._head_rows
        return self._sealed_layout, (rows if not rows or rows[-1][0] <= end else
                                     rows[:bisect_right(rows, (end, math.inf))])

    def _decode(self, data: bytes) -> Tuple[List[float], Dict[int, array]]:
        try:
            return codec.decode(data)
        except codec.CorruptChunk as e:
            log.error("history: a damaged chunk in %s skipped (%s)", self.store.path, e)
            return [], {}

    def _head(self, db: sqlite3.Connection, out: Mapping[int, _Appends], start: float, end: float,
              limit: float = math.inf) -> None:
        """The unsealed cycles' values of the wanted series, with stale markers where one vanished,
        appended to each series' list (or summary); TooManyPoints past `limit` of them (30
        minutes of 20,000 series is 7.2M samples)."""
        positions = self.store.positions
        sealed, rows = self._head_since(db, end)
        before = positions(int(sealed[0])) if sealed else NO_POSITIONS  # (`sealed` is () in a snapshot when nothing was)
        present: Dict[int, bool] = {sid: sid in before for sid in out}  # so a series gone at the seal gets its marker
        unpack = struct.Struct("<d").unpack_from
        current: Optional[int] = None
        places: List[Tuple[Callable[[Point], None], int]] = []  # each wanted series in this layout: its list, offset
        readable = self.store.layouts.readable
        taken = 0
        for t, lid, vals in rows:
            if not readable(lid, vals):
                continue  # a damaged row: not there (nor a stale marker for it), as its seal leaves it out
            if lid != current:  # a layout's first row: each series' place found once, not once a row
                current, pos, places = lid, positions(lid), []
                for sid, points in out.items():
                    i = pos.get(sid)
                    if i is None:
                        if present[sid] and t >= start:
                            points.append((t, codec.STALE))  # vanished: Prometheus' marker
                        present[sid] = False
                    else:
                        present[sid] = True
                        places.append((points.append, 8 * i))
            if t >= start:
                for add, offset in places:
                    add((t, unpack(vals, offset)[0]))
                taken += len(places)
                if taken > limit:
                    raise TooManyPoints()
