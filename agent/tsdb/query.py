"""PromQL over the history file: the agent's own evaluator, fed from the store.

A query's selectors are loaded once, for the whole window they reach, into a `Loaded`
history that the evaluator reads like the rules' in-memory one. The tier is chosen per query:
raw samples when the store still has them for the whole window; otherwise 1-minute, then
1-hour rollups; and a coarser tier when the step is coarse enough that it changes nothing a
chart can show (a month at a 1-hour step does not need 500,000 raw samples). Reading a rollup,
a counter is its last value in the bucket, a gauge its average, and under `max_over_time` /
`min_over_time` the bucket's max / min; the response's warnings say when rollups were used.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_right
from operator import ne
from typing import ContextManager, Dict, List, Optional, Sequence, Tuple

from ..promql.ast import Call, MatrixSelector, VectorSelector, children, reads_past_its_time, selectors
from ..promql.columns import Columns, range_columns
from ..promql.evaluator import Budget, BudgetExceeded, EvalError, Evaluator, Matrix, StepMemo, range_steps
from ..promql.samples import LOOKBACK, Window
from ..promql.parser import parse
from . import codec
from ..labels import Labels
from .index import Point
from .reader import Reader, TooManyPoints
from .store import HistoryStore
from .tiers import FIVE_MINUTES, HOUR, MINUTE, RAW, RESOLUTION, finer
from ..promql.parser import PromQLError
from ..promql.vectorfuncs import format_value

MAX_POINTS_PER_SERIES = 11_000  # Prometheus' limit on a range query's resolution
MAX_MATCH_PARAMS = 100  # match[] selectors in one series, labels or label values request
# seconds after which no sample can still come for a time: a cycle's samples are stamped when it
# starts and written when it ends, within its interval; minutes, whatever the interval
SETTLED = 300.0
EVALUATION_STEP = 60.0  # an instant query's subquery without a step of its own steps by this
TIER_NAMES = {RAW: "raw samples", MINUTE: "1-minute rollups", FIVE_MINUTES: "5-minute rollups", HOUR: "1-hour rollups"}


class QueryError(Exception):
    """A query the API answers with an error: `kind` is Prometheus' errorType."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Loaded:
    """The three reads the evaluator makes, over points loaded per selector node, each series
    as two arrays (a Window): 16 bytes a point where (t, v) tuples cost ~110, and a history
    rule's first round after a start loads 7 days of minutes of ~20 series (200,000 points)."""

    def __init__(self, lookback: float, min_range: float = 0.0):
        self.lookback = lookback
        self.min_range = min_range  # the evaluator reads a shorter range as this (two rollup points)
        self.with_markers: Dict[int, List[Tuple[Labels, Window]]] = {}
        self.numbers: Dict[int, List[Tuple[Labels, Window]]] = {}

    def put(self, sel: VectorSelector, series: Sequence[Tuple[Labels, Sequence[Point]]], markers: bool = True) -> None:
        """A selector's series; `markers`: whether they may hold staleness markers (raw samples
        do; rollups summarise numbers only)."""
        windows = [(labels, Window.of(points)) for labels, points in series]
        self.with_markers[id(sel)] = windows
        self.numbers[id(sel)] = [(labels, _numbers(w)) for labels, w in windows] if markers else windows

    def share(self, sel: VectorSelector, read: VectorSelector) -> None:
        """`sel` reads what `read` was given (the same series, not copied)."""
        self.with_markers[id(sel)] = self.with_markers[id(read)]
        self.numbers[id(sel)] = self.numbers[id(read)]

    def instant_points(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, Point]]:
        out = []
        earliest = t - self.lookback
        for labels, w in self.with_markers.get(id(sel), ()):
            i = bisect_right(w.times, t)
            if not i:
                continue
            when, value = w.times[i - 1], w.values[i - 1]
            if when < earliest or codec.is_stale(value):
                continue
            out.append((labels, (when, value)))
        return out

    def instant(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, float]]:
        return [(labels, p[1]) for labels, p in self.instant_points(sel, t)]

    def count(self, sel: VectorSelector) -> int:
        """How many series the selector read."""
        return len(self.with_markers.get(id(sel), ()))

    def instants(self, sel: VectorSelector, times: List[float]) -> List[Tuple[Labels, List[Optional[float]]]]:
        """Each series' instant value at every one of `times` (ascending), None where
        instant_points has none (nothing within the lookback, or a staleness marker): one walk
        of each series for all of them, for range_columns."""
        out = []
        lookback = self.lookback
        for labels, w in self.with_markers.get(id(sel), ()):
            stamps, values = w.times, w.values
            column: List[Optional[float]] = []
            i, n = 0, len(stamps)
            for t in times:
                while i < n and stamps[i] <= t:  # i: how many points are at or before t (bisect_right)
                    i += 1
                if not i:
                    column.append(None)
                    continue
                value = values[i - 1]
                column.append(None if stamps[i - 1] < t - lookback or codec.is_stale(value) else value)
            out.append((labels, column))
        return out

    def columns(self, sel: VectorSelector) -> List[Tuple[Labels, Sequence[float], Sequence[float]]]:
        """Each series a range reads, as (labels, times, values): for range_steps."""
        return [(labels, w.times, w.values) for labels, w in self.numbers.get(id(sel), ())]

    def range(self, sel: VectorSelector, t: float, seconds: float) -> List[Tuple[Labels, Sequence[Point]]]:
        out: List[Tuple[Labels, Sequence[Point]]] = []
        for labels, w in self.numbers.get(id(sel), ()):
            window = w.between(t - seconds, t)
            if window:
                out.append((labels, window))
        return out


def _numbers(w: Window) -> Window:
    """A raw series without its staleness markers (a range reads numbers only)."""
    values = w.values
    if not any(map(ne, values, values)):  # no NaN at all: nothing to take out (most series)
        return w
    keep = [i for i, v in enumerate(values) if not codec.is_stale(v)]
    return Window(array("d", [w.times[i] for i in keep]), array("d", [values[i] for i in keep]))


def _columns(node: object, column: str = "", out: Optional[Dict[int, str]] = None) -> Dict[int, str]:
    """Which rollup column each selector reads: max/min under max/min_over_time, else default."""
    out = {} if out is None else out
    if isinstance(node, VectorSelector):
        out[id(node)] = column
        return out
    if isinstance(node, MatrixSelector):
        return _columns(node.vector, column, out)
    if isinstance(node, Call):
        column = {"max_over_time": "max", "min_over_time": "min"}.get(node.func, "")
    for child in children(node):
        _columns(child, column, out)
    return out


def _read_key(sel: VectorSelector, columns: Dict[int, str]) -> tuple:
    """What a selector's read depends on besides its window: selectors with one key read the
    same points."""
    return sel.name, sel.matchers, columns.get(id(sel))


def _joined(spans: List[List[float]]) -> List[List[float]]:
    """Overlapping [first, last] windows as one; apart ones stay apart (a week ago's half hour
    and the last half hour are two reads, not a week's)."""
    out: List[List[float]] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1]:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


def _min_range(node: object) -> float:
    ranges = [n.range for n in _walk(node) if isinstance(n, MatrixSelector)]
    return min(ranges, default=math.inf)


def _walk(node: object):
    yield node
    for child in children(node):
        yield from _walk(child)


class Querier:
    """Instant and range queries, series and label lookups over one store."""

    def __init__(self, store: HistoryStore, clock=time.time, max_samples: int = 500_000, timeout: float = 30.0):
        self.store = store
        self.clock = clock
        self.max_samples = max_samples
        self.timeout = timeout

    def choose_tier(self, earliest: float, step: float, min_range: float, now: float) -> int:
        retention = self.store.retention
        tier = next((t for t in (RAW, MINUTE, HOUR) if earliest >= now - retention.of(t)), HOUR)
        if now - earliest <= 2 * 86400:
            return tier
        for coarser in (MINUTE, HOUR):  # coarse enough to change nothing at this step
            res = RESOLUTION[coarser]
            if finer(tier, coarser) and step >= 4 * res and min_range >= 4 * res:
                tier = coarser
        # a panel over days whose every step and range spans two 5-minute points (a week at
        # Grafana's 10-minute step): a fifth of the minutes' points, where the file has them
        res = RESOLUTION[FIVE_MINUTES]
        if (finer(tier, FIVE_MINUTES) and step >= 2 * res and min_range >= 2 * res
                and earliest >= self.store.five_minutes_from):
            tier = FIVE_MINUTES
        return tier

    def load(self, node: object, start: float, end: float, step: float,
             tier: Optional[int] = None, steps: Optional[StepMemo] = None) -> Tuple[Loaded, List[str]]:
        """The samples `node` reads to be evaluated from start to end, from `tier` (a report
        asking for hours) or the tier the window and step call for. `steps` (an instant query's
        subqueries' steps kept from its last evaluation): their samples are not read again."""
        now = self.clock()
        pairs = selectors(node)  # the tier is chosen for the whole window, kept steps or not
        reach = max((r for _, r in pairs), default=0.0)
        longest = max(self.store.retention.raw, self.store.retention.minute, self.store.retention.hour)
        earliest = max(start - reach - LOOKBACK, now - longest) if math.isfinite(reach) else now - longest
        min_range = _min_range(node)
        if tier is None:
            tier = self.choose_tier(earliest, step, min_range, now)
        warnings: List[str] = []
        lookback = LOOKBACK
        if tier != RAW:
            res = RESOLUTION[tier]
            lookback = LOOKBACK + res  # an instant selector must find the last bucket's point
            warnings.append(f"read from {TIER_NAMES[tier]} (the store keeps raw samples for "
                            f"{_days(self.store.retention.raw)}): gauges are bucket averages, counters their last value")
            if min_range < 2 * res:
                warnings.append(f"a range shorter than two {TIER_NAMES[tier][:-1]} points is read as {int(2 * res)}s "
                                "(at this resolution it would hold one point, and rate() none)")
        loaded = Loaded(lookback, 2 * RESOLUTION[tier] if tier != RAW else 0.0)
        columns = _columns(node)
        # samples up to `end`, unless something reads past it (an @ time or a negative offset, in a subquery too)
        ahead = reads_past_its_time(node)
        # selectors of one series set (a rule repeats `rate(x[1h])` in its numerator, its mean and
        # its spread) whose windows overlap are read once, over the windows together: a selector
        # given points outside its window reads past them (every read bisects by time)
        if steps is not None:  # a history rule's [7d:30m] computes its newest steps only: reads their windows
            pairs = selectors(node, span=lambda sub: steps.span(sub, end, EVALUATION_STEP))
        windows: Dict[tuple, List[List[float]]] = {}  # (name, matchers, column) -> [first, last] of each read
        wanted: List[Tuple[VectorSelector, tuple, float, float]] = []
        for sel, sel_reach in pairs:
            widened = 2 * RESOLUTION[tier] if tier != RAW else 0.0  # a short range is read as two points
            first = (max(start - sel_reach - lookback - widened, now - longest) if math.isfinite(sel_reach)
                     else now - longest)
            # its own offset moves its window's end back (those of subqueries around it, further)
            last = now if ahead or not math.isfinite(sel_reach) else min(end - max(sel.offset, 0.0), now)
            key = _read_key(sel, columns)
            windows.setdefault(key, []).append([first, last])
            wanted.append((sel, key, first, last))
        for spans in windows.values():
            spans[:] = _joined(spans)
        reader = self.store.reader()
        read_by: Dict[Tuple[tuple, int], VectorSelector] = {}  # a read -> the selector that the others share it with
        with reader.snapshot():  # every selector from one view of the file, its head read once
            total = 0
            for sel, key, first, last in wanted:
                place = next(i for i, (a, b) in enumerate(windows[key]) if a <= first and last <= b)
                if (key, place) in read_by:
                    loaded.share(sel, read_by[key, place])
                    continue
                try:  # the reader stops at the budget's rest: a day of raw samples of every series is ~20M
                    read_first, read_last = windows[key][place]
                    series = self._read(reader, sel, tier, columns.get(id(sel)), read_first, read_last,
                                        self.max_samples - total)
                except TooManyPoints:
                    raise QueryError("execution", f"query processing would load too many samples into memory "
                                                  f"(more than {self.max_samples}); narrow the selectors or the range") from None
                total += sum(len(p) for _, p in series)
                loaded.put(sel, series, markers=tier == RAW)
                read_by[key, place] = sel
        return loaded, warnings

    @staticmethod
    def _read(reader: Reader, sel: VectorSelector, tier: int, column: Optional[str], first: float,
              last: float, limit: float) -> Sequence[Tuple[Labels, Sequence[Point]]]:
        """One selector's series with their points in [first, last]: raw samples, or the rollup
        column it reads (by default a counter's last value, a gauge's average); TooManyPoints
        past `limit` of them."""
        found = reader.find(sel.name, sel.matchers, first, last)
        if tier == RAW:
            raw = reader.raw([i.id for i in found], first, last, limit)
            return [(info.labels, raw[info.id]) for info in found if raw[info.id]]
        points = reader.rollup_points({i.id: column or ("last" if i.counter else "avg") for i in found}, tier, first, last,
                                      limit)
        return [(info.labels, points[info.id]) for info in found if points[info.id]]

    def session(self) -> ContextManager[None]:
        """Queries inside read one view of the file, its head read once (a round of history rules)."""
        return self.store.reader().snapshot()

    def instant_at(self, text: str, times: Sequence[float], tier: Optional[int] = None) -> List[dict]:
        """The instant query at each of `times`, its samples loaded once (a report's days)."""
        node = _parse(text)
        if not times:
            return []
        ordered = sorted(times)
        gaps = [b - a for a, b in zip(ordered, ordered[1:])]
        loaded, _ = self.load(node, ordered[0], ordered[-1], min(gaps) if gaps else 0.0, tier)
        budget = self.budget()
        return [self._instant_result(node, loaded, t, budget) for t in times]

    def instant(self, text: str, t: float, tier: Optional[int] = None,
                steps: Optional[StepMemo] = None) -> Tuple[dict, List[str]]:
        """`steps`: the subqueries' steps kept from the last evaluation of this query (a history
        rule's, every few minutes), reused where settled: SETTLED before now, when no cycle can
        still write a sample for that time."""
        node = _parse(text)
        loaded, warnings = self.load(node, t, t, 0.0, tier, steps)
        if steps is not None:
            steps.settled = self.clock() - SETTLED
        return self._instant_result(node, loaded, t, self.budget(), steps), warnings

    def budget(self) -> Budget:
        """One query's sample budget and deadline ([history] query_max_samples, query_timeout)."""
        return Budget(self.max_samples, self.timeout)

    def _instant_result(self, node: object, loaded: Loaded, t: float, budget: Budget,
                        steps: Optional[StepMemo] = None) -> dict:
        value = _evaluate(Evaluator(loaded, step=EVALUATION_STEP, start=t, end=t, budget=budget, steps=steps), node, t)
        if isinstance(value, Matrix):
            return {"resultType": "matrix", "result": [_series(labels, pts) for labels, pts in value]}
        if isinstance(value, float):
            return {"resultType": "scalar", "result": [_ts(t), format_value(value)]}
        if isinstance(value, str):
            return {"resultType": "string", "result": [_ts(t), value]}
        return {"resultType": "vector", "result": [{"metric": dict(labels), "value": [_ts(t), format_value(v)]}
                                                   for labels, v in value]}

    def range(self, text: str, start: float, end: float, step: float) -> Tuple[dict, List[str]]:
        if end < start:
            raise QueryError("bad_data", "end timestamp must not be before start time")
        if step <= 0:
            raise QueryError("bad_data", "zero or negative query resolution step widths are not accepted. "
                                         "Try a positive integer")
        if (end - start) / step > MAX_POINTS_PER_SERIES:
            raise QueryError("bad_data", "exceeded maximum resolution of 11,000 points per timeseries. "
                                         "Try decreasing the query resolution (?step=XX)")
        node = _parse(text)
        if getattr(node, "type", "") not in ("vector", "scalar"):
            raise QueryError("bad_data", f"invalid expression type \"{_type_name(node)}\" for range query, "
                                         "must be Scalar or instant Vector")
        loaded, warnings = self.load(node, start, end, step)
        # one deadline for every step; samples counted as Prometheus' query.max-samples counts
        # them, at their peak: the points of the answer held so far and the step being worked
        # out (counting every step's working samples together refused a 7-day panel of a
        # histogram's 44 buckets, ~10 points each a step, though it never held 50,000 at once)
        budget = self.budget()
        # in integer milliseconds, as Prometheus steps: the same evaluation times, to the millisecond
        start_ms, end_ms, step_ms = round(start * 1000), round(end * 1000), max(1, round(step * 1000))
        times = [t_ms / 1000.0 for t_ms in range(start_ms, end_ms + 1, step_ms)]
        try:
            columns = range_columns(loaded, node, times, budget)  # the whole expression at every step at once
        except BudgetExceeded as e:
            raise QueryError("timeout" if e.kind == "timeout" else "execution", str(e)) from None
        series = _from_columns(columns, times, budget) if columns is not None else \
            _step_by_step(Evaluator(loaded, {}, step=step, start=start, end=end, budget=budget), node, times)
        if getattr(node, "type", "") == "scalar":
            result = [_series((), series.get((), []))]
        else:
            result = [_series(labels, pts) for labels, pts in sorted(series.items())]
        return {"resultType": "matrix", "result": result}, warnings

    def series(self, matchers: Sequence[str], start: float, end: float) -> List[Dict[str, str]]:
        if len(matchers) > MAX_MATCH_PARAMS:
            raise QueryError("bad_data", f"too many match[] parameters: {len(matchers)}, at most {MAX_MATCH_PARAMS}")
        budget = self.budget()
        seen: Dict[Labels, None] = {}
        for sel in _selectors(matchers):
            found = self.store.reader().find(sel.name, sel.matchers, start, end)
            _spend(budget, len(found))  # each series found, and the time it took
            for info in found:
                seen[info.labels] = None
        return [dict(labels) for labels in seen]

    def label_names(self, matchers: Sequence[str], start: float, end: float) -> List[str]:
        names: set = set()
        for labels in self._labelsets(matchers, start, end):
            names.update(k for k, _ in labels)
        return sorted(names)

    def label_values(self, name: str, matchers: Sequence[str], start: float, end: float) -> List[str]:
        values: set = set()
        for labels in self._labelsets(matchers, start, end):
            for k, v in labels:
                if k == name:
                    values.add(v)
        return sorted(values)

    def _labelsets(self, matchers: Sequence[str], start: float, end: float) -> List[Labels]:
        if matchers:
            return [tuple(sorted(d.items())) for d in self.series(matchers, start, end)]
        found = self.store.reader().find("", (), start, end)
        _spend(self.budget(), len(found))
        return [info.labels for info in found]


def _parse(text: str) -> object:

    try:
        return parse(text)
    except PromQLError as e:
        raise QueryError("bad_data", str(e)) from None


def _selectors(texts: Sequence[str]) -> List[VectorSelector]:
    out = []
    for text in texts:
        node = _parse(text)
        if not isinstance(node, VectorSelector):
            raise QueryError("bad_data", f"invalid parameter \"match[]\": {text!r} is not a series selector")
        if not any(m.op in ("=", "=~") and m.value != "" and not (m.op == "=~" and m.value in (".*",))
                   for m in node.matchers) and not node.name:
            raise QueryError("bad_data", "match[] must contain at least one non-empty matcher")
        out.append(node)
    return out


def _step_by_step(evaluator: Evaluator, node: object, times: List[float]) -> Dict[Labels, List[Point]]:
    """The answer's series, the expression evaluated at each step alone (with the rates of
    every step batched into each step's cache)."""
    budget, cache = evaluator.budget, evaluator.cache
    batched = range_steps(evaluator.history, node, times, budget)
    series: Dict[Labels, List[Point]] = {}
    held = 0
    for t in times:
        cache.clear()
        cache.update(batched.get(t, ()))
        budget.spent = held
        value = _evaluate(evaluator, node, t)
        stamp = _ts(t)  # as the answer writes it: once a step, not once a point
        for labels, v in ([((), value)] if isinstance(value, float) else value):
            series.setdefault(labels, []).append((stamp, v))
            held += 1
    return series


def _from_columns(columns: Columns, times: List[float], budget: Budget) -> Dict[Labels, List[Point]]:
    """The answer's series from range_columns, each step charged as a step alone charges it:
    the answer's points so far and the samples the step works with."""
    value, work = columns
    stamps = [_ts(t) for t in times]  # as the answer writes them
    if value and isinstance(value[0], float):
        counts = [1] * len(times)
        series: Dict[Labels, List[Point]] = {(): list(zip(stamps, value))}
    else:
        counts = [0] * len(times)
        series = {}
        for labels, column in value:  # type: ignore[misc]
            points = []
            for k, v in enumerate(column):
                if v is not None:
                    points.append((stamps[k], v))
                    counts[k] += 1
            if points:
                series[labels] = points
    held = 0
    for k, n in enumerate(counts):
        budget.spent = held
        _spend(budget, work[k])
        held += n
    return series


def _spend(budget: Budget, n: int) -> None:
    try:
        budget.spend(n)
    except BudgetExceeded as e:
        raise QueryError("timeout" if e.kind == "timeout" else "execution", str(e)) from None


def _evaluate(evaluator: Evaluator, node: object, t: float):
    try:
        return evaluator.eval(node, t)
    except BudgetExceeded as e:  # as Prometheus answers: too many samples 422, a timeout 503
        raise QueryError("timeout" if e.kind == "timeout" else "execution", str(e)) from None
    except EvalError as e:
        raise QueryError("execution", str(e)) from None


def _type_name(node: object) -> str:
    return {"matrix": "range vector", "vector": "instant vector"}.get(getattr(node, "type", ""), getattr(node, "type", "?"))


def _series(labels: Labels, points: List[Point]) -> dict:
    """A series of the answer; its points' times are written already (_ts)."""
    return {"metric": dict(labels), "values": [[t, format_value(v)] for t, v in points]}


def _ts(t: float) -> float:
    return round(t, 3)


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds > 86400 else f"{seconds / 3600:g} hours"
