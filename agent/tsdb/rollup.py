"""Rollups: a series summarised per fixed bucket (1 minute, 1 hour) as min, max, sum, count
and last, stamped with the time of the bucket's last sample (so a query never sees a value
before it happened, and `last` is exact for counters).

Rollups merge: two partial summaries of one bucket combine into the summary of both, so an
hour is built from the half-hours sealed at different times, and the unsealed head is
summarised at query time and merged with what is on disk.
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left, bisect_right
from itertools import chain, repeat
from operator import lt, sub, truediv
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, cast

from ..promql.samples import Window
from . import codec

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# t (last sample's time), min, max, sum, count, last
Rollup = Tuple[float, float, float, float, float, float]
RollupColumns = Tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float], Sequence[float], Sequence[float]]
COLUMNS = ("min", "max", "sum", "count", "last")


def _sum(values: Sequence[float]) -> float:
    """math.fsum: correctly rounded, so a sum of decimals stays a decimal and compresses as one.
    Where fsum refuses (inf + -inf: ValueError; a sum past the largest double: OverflowError),
    the plain sum: NaN or an infinity, as Prometheus' sum_over_time gives it. (Raised, it failed
    every seal of the window and every compaction of the series' span.)"""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return float(sum(values))


def summarise(times: Sequence[float], values: Sequence[float], resolution: float) -> List[Rollup]:
    """One rollup per bucket of `resolution` seconds that has a number in it (NaNs, stale
    markers included, are not numbers to summarise)."""
    out: List[Rollup] = []
    n = len(times)
    i = 0
    while i < n:
        bucket = math.floor(times[i] / resolution)
        j = i + 1
        end = (bucket + 1) * resolution
        while j < n and times[j] < end:
            j += 1
        window = values[i:j]
        total = _sum(window)
        if total != total:  # a NaN inside (or infinities of both signs): summarise the numbers only
            kept = [(times[k], values[k]) for k in range(i, j) if values[k] == values[k]]
            if kept:
                vals = [v for _, v in kept]
                out.append((kept[-1][0], min(vals), max(vals), _sum(vals), float(len(vals)), vals[-1]))
        else:
            out.append((times[j - 1], min(window), max(window), total, float(j - i), window[-1]))
        i = j
    return out


class Summary:
    """summarise() fed a sample at a time, in time order: a bucket of samples held, not all of
    them (a rollup read of the head of every series holds a minute a series, not 30 minutes).
    A bucket starts and ends where summarise starts and ends it; `rollups()` is what
    summarise gives for every sample appended."""

    __slots__ = ("resolution", "end", "times", "values", "done")

    def __init__(self, resolution: float):
        self.resolution = resolution
        self.end = -math.inf  # where the bucket being filled ends
        self.times: List[float] = []
        self.values: List[float] = []
        self.done: List[Rollup] = []

    def append(self, point: Tuple[float, float]) -> None:
        t = point[0]
        if t >= self.end:
            self._close()
            self.end = (math.floor(t / self.resolution) + 1) * self.resolution
        self.times.append(t)
        self.values.append(point[1])

    def rollups(self) -> List[Rollup]:
        self._close()
        return self.done

    def _close(self) -> None:
        if self.times:
            self.done += summarise(self.times, self.values, self.resolution)
            self.times, self.values = [], []


def merge(older: Iterable[Rollup], newer: Iterable[Rollup], resolution: float) -> List[Rollup]:
    """Both lists as one, in time order; the summaries of one bucket become one (their sums
    added in one correctly rounded step, so an hour made of minutes sums like the hour)."""
    return list(zip(*fold(joined([_columns_of(list(older)), _columns_of(list(newer))]), resolution)))


def fold(columns: RollupColumns, resolution: float) -> RollupColumns:
    """Rollups in time order, as columns (t, min, max, sum, count, last), with the summaries of
    each bucket of `resolution` seconds made one: each bucket folded from slices of its
    columns, in C. A 6-hourly compaction folds every series' 360 minutes into 5-minute and
    hour buckets; a walk of tuples a point was a third of its time."""
    times, low, high, total, count, last = columns
    buckets = list(map(math.floor, map(truediv, times, repeat(resolution))))
    out: Tuple[List[float], List[float], List[float], List[float], List[float], List[float]] = ([], [], [], [], [], [])
    i, n = 0, len(times)
    while i < n:
        j = bisect_right(buckets, buckets[i], i + 1)
        if j == i + 1:
            folded = (times[i], low[i], high[i], total[i], count[i], last[i])
        else:
            folded = (times[j - 1], min(low[i:j]), max(high[i:j]), _sum(total[i:j]), sum(count[i:j]), last[j - 1])
        for column, value in zip(out, folded):
            column.append(value)
        i = j
    return out


def joined(parts: Sequence[RollupColumns]) -> RollupColumns:
    """Chunks' columns as one set of columns (arrays) in time order: as they come where each
    part follows the last (a span's minute chunks, read by their start), else stably sorted."""
    columns = tuple(array("d", chain.from_iterable(part[c] for part in parts)) for c in range(6))
    times = columns[0]
    if any(map(lt, times[1:], times)):
        order = sorted(range(len(times)), key=times.__getitem__)
        columns = tuple(array("d", [column[k] for k in order]) for column in columns)
    return columns  # type: ignore[return-value]  # (six, as built)


def _columns_of(points: Sequence[Rollup]) -> RollupColumns:
    return tuple([p[c] for p in points] for c in range(6))  # type: ignore[return-value]


def column_points(points: Sequence[Rollup], column: str) -> List[Tuple[float, float]]:
    """The (time, value) a query reads from each rollup: `avg` (sum / count), or one column by name."""
    if column == "avg":
        return [(p[0], p[3] / p[4] if p[4] else math.nan) for p in points]
    index = 1 + COLUMNS.index(column)
    return [(p[0], p[index]) for p in points]


def encode_rollups(points: Sequence[Rollup], counter: bool = False) -> bytes:
    """Rollups as a chunk (encode_columns)."""
    return encode_columns(_columns_of(points), counter)


def encode_columns(columns: RollupColumns, counter: bool = False) -> bytes:
    """Rollups, as columns (t, min, max, sum, count, last), as a chunk of columns last, min,
    max, sum, count. When they are decimals of one scale, min and max are stored as offsets
    from last and sum from last * count (small numbers that compress: a third of the size); a
    counter's sum is not kept (its average in a bucket means nothing; read, it is last * count)."""
    n = len(columns[0])
    times = codec.encode_times([round(t * 1000) for t in columns[0]])
    low, high, total, count, last = (c if isinstance(c, array) and c.typecode == "d" else array("d", c) for c in columns[1:])
    # each column's scale and integers, found once: the encoding below reuses them
    decimals = [codec.decimal_of(c) for c in ((last, low, high) if counter else (last, low, high, total))]
    counted = codec.decimal_of(count)
    if min(k for k, _ in decimals) < 0 or counted[0] != 0:
        return codec.encode(times, n, [codec.encode_column(last, decimals[0]), low, high, total,
                                       codec.encode_column(count, counted)])
    k = max(k for k, _ in decimals)
    scale = 10 ** k

    def at_k(column: array, decimal: Tuple[int, List[int]]) -> List[int]:
        """The column's integers at the chunk's scale k (its own, where they are equal)."""
        return decimal[1] if decimal[0] == k else [round(v * scale) for v in column]

    ints = at_k(last, decimals[0])
    counts = [int(c) for c in count]
    offsets = [codec.encode_offsets(list(map(sub, at_k(col, dec), ints)), k) for col, dec in ((low, decimals[1]), (high, decimals[2]))]
    sums = [0] * n if counter else [m_total - m * c for m_total, m, c in zip(at_k(total, decimals[3]), ints, counts)]
    return codec.encode(times, n, [codec.encode_column(last, decimals[0]), offsets[0], offsets[1],
                                   codec.encode_offsets(sums, k), codec.encode_column(count, counted)])


# the columns column_points reads for each name, by their place in a chunk (last, min, max, sum, count);
# last is always decoded (the offsets are from it)
_CHUNK_COLUMNS = {"min": (1,), "max": (2,), "sum": (3, 4), "avg": (3, 4), "count": (4,), "last": ()}


def decode_rollups(blob: bytes, columns: Optional[Iterable[str]] = None, start: float = -math.inf,
                   end: float = math.inf) -> List[Rollup]:
    """A chunk's rollups stamped within [start, end]. `columns` (the names column_points reads):
    only those are decoded and the others are NaN; a query reads one of the five, and decoding
    the rest was half its time (tests/bench/bench_history_vs_prometheus.py)."""
    return list(zip(*decode_columns(blob, columns, start, end)))


def decode_columns(blob: bytes, columns: Optional[Iterable[str]] = None, start: float = -math.inf,
                   end: float = math.inf) -> RollupColumns:
    """decode_rollups' rollups as columns (t, min, max, sum, count, last), no tuple made."""
    want = None if columns is None else sorted({0}.union(*(_CHUNK_COLUMNS[c] for c in columns)))
    scales: Dict[int, int] = {}
    times, cols = codec.decode(blob, want=want, scales=scales)
    if codec.column_count(blob) != 5:  # (decode checked the header is there)
        raise codec.CorruptChunk("a rollup chunk has five columns")
    lo, hi = bisect_left(times, start), bisect_right(times, end)
    last = cols[0][lo:hi]
    kinds = {cols[c].typecode for c in (1, 2, 3) if c in cols}
    if len(kinds) > 1 or ("q" in kinds and last.typecode != "d"):
        raise codec.CorruptChunk("a rollup chunk mixes offsets and values")
    count = cols[4][lo:hi] if 4 in cols else array("d", [math.nan]) * (hi - lo)
    ints: List[int] = []
    if "q" in kinds:  # every offsets column has the scale of the chunk's decimals
        factor = 10 ** scales[min(scales)]
        ints = [round(v * factor) for v in last]
    rest: List[Sequence[float]] = []
    for c in (1, 2, 3):
        if c not in cols:
            rest.append(array("d", [math.nan]) * (hi - lo))
        elif cols[c].typecode != "q":
            rest.append(cols[c][lo:hi])
        elif c == 3:  # offsets from last * count, in the scale the offsets carry
            scale = 10 ** scales[c]
            rest.append([(m * int(k) + o) / scale for m, k, o in zip(ints, count, cols[c][lo:hi])])
        else:  # offsets from last
            scale = 10 ** scales[c]
            rest.append([(m + o) / scale for m, o in zip(ints, cols[c][lo:hi])])
    return times[lo:hi], rest[0], rest[1], rest[2], count, last


def decode_column(blob: bytes, column: str, start: float = -math.inf, end: float = math.inf) -> Window:
    """What column_points(decode_rollups(blob, (column,), start, end), column) gives, "last" or
    "avg" (what a query reads of a counter and of a gauge), the same doubles, as two arrays and
    without building the rollups: only the points within [start, end] are converted, each in
    one pass. A week of minute rollups is ~10,000 points a series: as (t, v) tuples, 1.1 MB; as
    arrays, 160 KB (a history rule's first round holds a week of ~20 series)."""
    if column not in ("last", "avg"):
        return Window.of(column_points(decode_rollups(blob, (column,), start, end), column))
    if codec.column_count(blob) != 5:
        codec.decode_stored(blob, want=())  # says what is wrong with a chunk that has no header
        raise codec.CorruptChunk("a rollup chunk has five columns")
    ms, cols = codec.decode_stored(blob, want=(0,) if column == "last" else (0, 3, 4))
    lo, hi = _window(ms, start, end)
    times = array("d", [t / 1000.0 for t in ms[lo:hi]])
    kind, k, last = cols[0]
    if column == "last":
        return Window(times, _floats(kind, k, last[lo:hi]))
    (sum_kind, sum_k, sums), (count_kind, count_k, counts) = cols[3], cols[4]
    if count_kind != codec.DECIMAL or count_k or (sum_kind == codec.OFFSETS and (kind != codec.DECIMAL or sum_k != k)):
        # not as the encoder writes them (or last in a scale of its own): decode_rollups' way, and its checks
        return Window.of(column_points(decode_rollups(blob, (column,), start, end), column))
    counts = counts[lo:hi]
    if sum_kind == codec.OFFSETS:  # the sum is an offset from last * count, in last's scale
        scale = 10 ** k
        values = array("d", [((m * c + o) / scale) / c if c else math.nan
                             for m, c, o in zip(last[lo:hi], counts, sums[lo:hi])])
    else:
        values = array("d", [s / c if c else math.nan for s, c in zip(_floats(sum_kind, sum_k, sums[lo:hi]), counts)])
    return Window(times, values)


def _window(ms: Sequence[int], start: float, end: float) -> Tuple[int, int]:
    """The slice of integer-millisecond times whose seconds (ms / 1000.0) lie in [start, end]."""
    lo = bisect_left(ms, math.floor(start * 1000) - 1) if math.isfinite(start) else 0
    while lo < len(ms) and ms[lo] / 1000.0 < start:
        lo += 1
    hi = bisect_right(ms, math.ceil(end * 1000) + 1) if math.isfinite(end) else len(ms)
    while hi > lo and ms[hi - 1] / 1000.0 > end:
        hi -= 1
    return lo, hi


def _floats(kind: int, k: int, values: codec.Stored) -> array:
    """A stored column's values as decode gives them: doubles as they are, decimals m / 10**k."""
    if kind == codec.DOUBLES:
        return cast(array, values)  # (decode_stored gives doubles as an array)
    if kind != codec.DECIMAL:
        raise codec.CorruptChunk("a rollup chunk mixes offsets and values")
    return array("d", values) if k == 0 else array("d", list(map(truediv, values, repeat(10 ** k))))


def decode_or_log(blob: bytes, path: str, columns: Optional[Iterable[str]] = None, start: float = -math.inf,
                  end: float = math.inf) -> List[Rollup]:
    """A rollup chunk's points (decode_rollups); a damaged chunk is left out (_left_out)."""
    return _left_out(lambda: decode_rollups(blob, columns, start, end), path, [])


def columns_or_log(blob: bytes, path: str) -> RollupColumns:
    """A rollup chunk's columns (decode_columns); a damaged chunk is left out (_left_out)."""
    empty: RollupColumns = ([], [], [], [], [], [])
    return _left_out(lambda: decode_columns(blob), path, empty)


def column_or_log(blob: bytes, path: str, column: str, start: float = -math.inf, end: float = math.inf) -> Window:
    """A rollup chunk's points of one column (decode_column); a damaged chunk is left out (_left_out)."""
    return _left_out(lambda: decode_column(blob, column, start, end), path, Window(array("d"), array("d")))


def _left_out(decode: Callable[[], _T], path: str, empty: _T) -> _T:
    """What `decode` gives, or `empty` for a damaged chunk, with an error naming the file."""
    try:
        return decode()
    except codec.CorruptChunk as e:
        log.error("history: a damaged rollup chunk in %s left out (%s)", path, e)
        return empty
