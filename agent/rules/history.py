"""A short history of the series the loaded rules read.

Only series matching a registered selector are kept, and each only as long as the rules that
read *it* need: the longest range over it (plus the 5-minute lookback for instant selectors).
One rule with `rate(x[365d])` keeps x for a year, not every series. With N matching series,
interval I and range R, memory is about N * (R + 300) / I samples.

A series missing from a snapshot is marked stale, as Prometheus writes a staleness marker when
a series vanishes from a scrape: instant selectors stop returning it at once, ranges keep its
older samples until they age out.

Bounded against a target that churns label values: at most `max_series_per_metric` series
per metric name and `max_series` in all. At a bound, the series that went stale longest ago
makes room; only when every series is live is the new one refused, counted per metric
(`dropped`) and logged once per metric, so churn can neither grow memory nor blind the
alerts of other metrics.
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left, bisect_right, insort
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..labels import Labels, matches
from ..model import Outline, Sample, Snapshot
from ..promql.ast import VectorSelector
from ..promql.samples import LOOKBACK, Point, Window

log = logging.getLogger(__name__)

TRIM_EVERY = 60.0  # seconds of snapshot time between cuts of every series to its retention
_NONE: Dict[Labels, "Column"] = {}
_UNREAD: Dict[int, "_Route"] = {}  # the routes of a sample name no selector reads: none


class _Route:
    """Where one snapshot sample goes in the history: its series key (None: no selector wants
    it), name, retention and column (None until made)."""

    __slots__ = ("labels", "key", "name", "keep", "column")

    def __init__(self, labels: Labels, key: Optional[Labels], name: str, keep: float, column: Optional["Column"]):
        self.labels = labels  # the sample's own tuple: held, so that its id stays its own
        self.key = key
        self.name = name
        self.keep = keep
        self.column = column


class _Plan(Outline):
    """Where a snapshot's read samples go (`entries`: each wanted one's place and route), taken
    again for the next snapshot whose samples fit its outline: no route looked up each cycle."""

    __slots__ = ("entries", "keys")

    def __init__(self, samples: List[Sample], entries: List[Tuple[int, Labels, _Route]]):
        super().__init__(samples)
        self.entries = entries
        self.keys = {key for _, key, _ in entries}  # the series these samples feed


class Column:
    """One series' samples, oldest first, as two arrays of doubles: 16 bytes a sample where a
    list of (time, value) tuples cost about 90 (a 6-hour range at 5 s is 4,320 samples a series)."""

    __slots__ = ("t", "v", "alive")

    def __init__(self) -> None:
        self.t = array("d")
        self.v = array("d")
        self.alive = True  # False once the history let the series go (a route may still hold it)

    def __len__(self) -> int:
        return len(self.t)

    def append(self, t: float, v: float) -> None:
        self.t.append(t)
        self.v.append(v)

    def drop_before(self, horizon: float) -> int:
        """Forget the samples before `horizon`; how many went."""
        if self.t and self.t[0] < horizon:
            i = bisect_left(self.t, horizon)
            del self.t[:i]
            del self.v[:i]
            return i
        return 0

    def window(self, start: float, end: float) -> "Window":
        """The samples in [start, end], both ends included (Prometheus 2.x)."""
        return Window(self.t, self.v).between(start, end)

    def latest(self, t: float) -> Optional[Point]:
        """The last sample at or before t."""
        i = bisect_right(self.t, t)
        return (self.t[i - 1], self.v[i - 1]) if i else None


class History:
    """Samples per series for the registered selectors; each kept as long as its readers need."""

    def __init__(self, lookback: float = LOOKBACK, max_series: int = 100_000, max_series_per_metric: int = 20_000,
                 keep_all: bool = False):
        self.lookback = lookback
        self.keep_all = keep_all  # a unit test's history: every series, whatever reads it
        self.max_series = max_series
        self.max_series_per_metric = max_series_per_metric
        self.series: Dict[str, Dict[Labels, Column]] = {}  # by metric name
        self.keep: Dict[Labels, float] = {}  # seconds each series is kept
        self.selectors: List[Tuple[VectorSelector, float]] = []
        self._by_name: Dict[str, List[Tuple[VectorSelector, float]]] = {}  # selectors with a metric name
        self._nameless: List[Tuple[VectorSelector, float]] = []
        self._keep_stale = False  # selectors changed: every series' retention is worked out again
        self.dropped: Dict[str, int] = {}  # new series refused at a bound, by metric name
        self.evicted = 0  # stale series removed early to make room
        self.series_count = 0
        self.samples_kept = 0  # in all series (sample_count), kept as they come and go
        self.stale: Dict[Labels, float] = {}  # series gone from the snapshots, and since when (oldest first)
        self._stale_by_name: Dict[str, Dict[Labels, float]] = {}
        # staleness markers written ahead of later samples (a unit test's whole input at once): each
        # hides the series from its time until the next sample; the daemon writes in time order and
        # needs only `stale`
        self.markers: Dict[Labels, List[float]] = {}
        self.recorded_names: set = set()  # written by recording rules, not by snapshots
        self._dicts: Dict[Labels, Dict[str, str]] = {}
        # where each snapshot sample goes, worked out once: sample name -> {id(its labels tuple):
        # _Route}, or _UNREAD for a name no selector reads. Keyed by the tuple's identity (collectors
        # share one tuple per label set: model.intern_labels), which the route holds, so the id
        # cannot pass to another tuple; hashing the label tuples themselves, several times a series
        # a cycle, was most of the ingest. Forgotten when the selectors change or a series goes.
        self._routes: Dict[str, Any] = {}
        self._route_count = 0
        # family name -> whether a selector may read one of its samples: a sample's name is its
        # family's or that with a suffix (model.MetricFamily), so a family no read name begins
        # with is passed over whole (most of a snapshot: 40 of 220 families hold a series a rule reads)
        self._families_read: Dict[str, bool] = {}
        # the series a snapshot that lacks them marks stale: not stale now, not a recording rule's
        # (key -> metric name), so that a cycle finds the vanished by one set difference
        self._live: Dict[Labels, str] = {}
        self._plan: Optional[_Plan] = None  # last snapshot's routes, for one with the same series in order
        self._trimmed_at = -math.inf  # when every series was last cut to its retention

    @property
    def dropped_series(self) -> int:
        return sum(self.dropped.values())

    def register(self, selector: VectorSelector, range_seconds: float) -> None:
        self.selectors.append((selector, range_seconds))
        if selector.name:
            self._by_name.setdefault(selector.name, []).append((selector, range_seconds))
        else:
            self._nameless.append((selector, range_seconds))
        self._keep_stale = True
        self._forget_routes()

    def clear_selectors(self) -> None:
        self.selectors, self._by_name, self._nameless = [], {}, []
        self._keep_stale = True
        self._forget_routes()

    def keep_for(self) -> float:
        """The longest any series is kept."""
        return max((r for _, r in self.selectors), default=0.0) + self.lookback

    # -- writing -----------------------------------------------------------------------------

    def add(self, labels: Labels, t: float, v: float, keep: Optional[float] = None, name: Optional[str] = None) -> None:
        """Append one sample; `labels` is sorted and includes __name__ (`name`, when the caller knows it)."""
        if name is None:
            name = dict(labels).get("__name__", "")
        by_name = self.series.setdefault(name, {})
        points = by_name.get(labels)
        if points is None:
            if not self._make_room(name, by_name):
                return
            points = by_name[labels] = Column()
            self.keep[labels] = self.keep_for() if keep is None else keep
            self.series_count += 1
        elif labels in self.stale:
            self._unstale(name, labels)
        points.append(t, v)
        self.samples_kept += 1
        if name not in self.recorded_names:
            self._live[labels] = name

    def _make_room(self, name: str, by_name: Dict[Labels, Column]) -> bool:
        """Room for one more series of `name`: evict the longest-stale series if at a bound."""
        if len(by_name) >= self.max_series_per_metric:
            victim = next(iter(self._stale_by_name.get(name, {})), None)
        elif self.series_count >= self.max_series:
            victim = next(iter(self.stale), None)
        else:
            return True
        if victim is None:
            n = self.dropped[name] = self.dropped.get(name, 0) + 1
            if n == 1:
                log.warning("rule history: %s has more live series than the history holds (%d per metric, %d in all); "
                            "new ones are dropped and counted in llm_agent_history_dropped_series_total "
                            "(a target churning label values?)", name or "(no name)", self.max_series_per_metric,
                            self.max_series)
            return False
        self._delete(dict(victim).get("__name__", ""), victim)
        self.evicted += 1
        return True

    def _delete(self, name: str, labels: Labels) -> None:
        by_name = self.series.get(name, {})
        column = by_name.pop(labels, None)
        if column is not None:
            self.series_count -= 1
            self.samples_kept -= len(column)
            column.alive = False
            del column.t[:], column.v[:]
        self.keep.pop(labels, None)
        self._live.pop(labels, None)
        self._unstale(name, labels)
        if not by_name:
            self.series.pop(name, None)

    def mark_stale(self, name: str, labels: Labels, t: float) -> None:
        self.stale[labels] = t
        self._live.pop(labels, None)
        self._stale_by_name.setdefault(name, {})[labels] = t

    def add_marker(self, labels: Labels, t: float) -> None:
        insort(self.markers.setdefault(labels, []), t)

    def _unstale(self, name: str, labels: Labels) -> None:
        if self.stale.pop(labels, None) is not None:
            by_name = self._stale_by_name.get(name)
            if by_name is not None:
                by_name.pop(labels, None)
                if not by_name:
                    del self._stale_by_name[name]

    def ingest(self, snapshot: Snapshot) -> None:
        """Record every snapshot series a registered selector wants; mark the vanished stale;
        cut each series to its own retention every TRIM_EVERY seconds (a range reads by time,
        so samples kept a little longer change no answer)."""
        t = snapshot.timestamp
        if self._keep_stale:
            self._rework_retention()
        if not self._trimmed_at <= t < self._trimmed_at + TRIM_EVERY:
            self._trimmed_at = t
            for name, by_name in list(self.series.items()):
                for labels, points in list(by_name.items()):
                    self.samples_kept -= points.drop_before(t - self.keep.get(labels, 0.0))
                    if not points:
                        self._delete(name, labels)
        samples, plan = self._wanted(snapshot)
        live = self._live
        # staleness first, so that series gone in this snapshot can make room for its new ones
        gone = live.keys() - plan.keys
        if gone:
            for labels in [k for k in live if k in gone]:  # in the order they came: eviction takes the oldest
                self.mark_stale(live[labels], labels, t)
        stale = self.stale
        for i, labels, route in plan.entries:
            column = route.column
            if column is None or not column.alive or (stale and labels in stale):
                self.add(labels, t, samples[i].value, route.keep, route.name)  # new, or back: room is made, staleness lifted
                route.column = self.series.get(route.name, _NONE).get(labels)  # (None: refused at a bound)
            else:
                column.append(t, samples[i].value)
                self.samples_kept += 1

    def _wanted(self, snapshot: Snapshot) -> Tuple[List[Sample], "_Plan"]:
        """The samples of this snapshot's families a rule may read, and which of them go where
        (the first of a repeated series): last cycle's plan when they are last cycle's series in
        last cycle's order (most cycles), else worked out sample by sample."""
        if self._route_count + len(self._routes) + len(self._families_read) > 4 * max(self.series_count, 1000):
            self._forget_routes()  # series or names came and went: start over rather than grow
        families_read = self._families_read
        samples: List[Sample] = []
        for family in snapshot.families:
            read = families_read.get(family.name)
            if read is None:
                read = families_read[family.name] = bool(self._nameless) or any(
                    name.startswith(family.name) for name in self._by_name)
            if read:
                samples += family.samples
        plan = self._plan
        if plan is None or not plan.fits(samples):
            plan = self._plan = _Plan(samples, self._entries(samples))
        return samples, plan

    def _entries(self, samples: List[Sample]) -> List[Tuple[int, Labels, "_Route"]]:
        """Each wanted sample's place in `samples`, its series and its route (the first of a
        series only)."""
        routes = self._routes
        entries: List[Tuple[int, Labels, _Route]] = []
        keys: set = set()
        for i, s in enumerate(samples):
            by_id = routes.get(s.name)
            if by_id is None:
                by_id = routes[s.name] = {} if s.name in self._by_name or self._nameless else _UNREAD
            if by_id is _UNREAD:
                continue  # most series: no rule reads them
            route = by_id.get(id(s.labels))
            if route is None or route.labels is not s.labels:
                route = by_id[id(s.labels)] = self._route(s.name, s.labels)
                self._route_count += 1
            if route.key is not None and route.key not in keys:
                keys.add(route.key)
                entries.append((i, route.key, route))
        return entries

    def _route(self, name: str, labels: Labels) -> "_Route":
        """Where a sample of `name` with `labels` goes: its series (None: no selector wants it)."""
        key = tuple(sorted(labels + (("__name__", name),)))
        keep = self.keep.get(key)
        if keep is None:
            keep = self._retention(self._by_name.get(name, ()), key)
        column = self.series.get(name, _NONE).get(key)
        return _Route(labels, key if keep is not None else None, name, keep or 0.0, column)

    def _forget_routes(self) -> None:
        self._routes = {}
        self._route_count = 0
        self._families_read = {}
        self._plan = None

    def record(self, name: str, samples: List[Tuple[Labels, float]], t: float) -> None:
        """A recording rule's result at t: its series that a rule reads are kept; those of
        the last result that are missing now are marked stale."""
        present = set()
        for labels, value in samples:
            keep = self.keep.get(labels)
            if keep is None:
                keep = self._retention(self._by_name.get(name, ()), labels)
                if keep is None:
                    continue
            present.add(labels)
            points = self.series.get(name, {}).get(labels)
            if points and points.t[-1] >= t:
                continue  # already written at this time (a group evaluated twice in one cycle)
            self.add(labels, t, value, keep)
        for labels in list(self.series.get(name, {})):
            if labels not in present and labels not in self.stale:
                self.mark_stale(name, labels, t)

    def _retention(self, named: Iterable[Tuple[VectorSelector, float]], labels: Labels) -> Optional[float]:
        """How long the selectors that want this series need it; None if none wants it."""
        as_dict = dict(labels)
        ranges = [r for sel, r in list(named) + self._nameless if matches(sel.matchers, as_dict)]
        if not ranges and self.keep_all:
            return self.keep_for()
        return max(ranges) + self.lookback if ranges else None

    def _rework_retention(self) -> None:
        """After a reload: each series' retention from the new rules; unwanted series go."""
        self._keep_stale = False
        for name, by_name in list(self.series.items()):
            for labels in list(by_name):
                keep = self._retention(self._by_name.get(name, ()), labels)
                if keep is None:
                    self._delete(name, labels)
                else:
                    self.keep[labels] = keep
        # the recording rules may be others now
        self._live = {labels: name for name, by_name in self.series.items() if name not in self.recorded_names
                      for labels in by_name if labels not in self.stale}

    def sample_count(self) -> int:
        return self.samples_kept

    # -- reading -----------------------------------------------------------------------------

    def _as_dict(self, labels: Labels) -> Dict[str, str]:
        """A series' labels as a dict, made once per series (every selector of every rule
        matches against it every cycle)."""
        found = self._dicts.get(labels)
        if found is None:
            if len(self._dicts) > 2 * max(self.series_count, 1000):
                self._dicts.clear()  # series came and went: start over rather than grow
            found = self._dicts[labels] = dict(labels)
        return found

    def _candidates(self, sel: VectorSelector) -> Iterable[Tuple[Labels, Column]]:
        if sel.name:
            return self.series.get(sel.name, {}).items()
        return ((labels, pts) for by_name in self.series.values() for labels, pts in by_name.items())

    def instant(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, float]]:
        """The latest sample at or before t within the lookback, unless stale."""
        return [(labels, point[1]) for labels, point in self.instant_points(sel, t)]

    def instant_points(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, Point]]:
        """instant(), with each sample's own time (for timestamp())."""
        out = []
        for labels, points in self._candidates(sel):
            if sel.matchers and not matches(sel.matchers, self._as_dict(labels)):
                continue
            latest = points.latest(t)
            if latest is None or latest[0] < t - self.lookback:
                continue
            gone = self.stale.get(labels)
            if gone is not None and latest[0] < gone <= t:
                continue  # marked stale after its last sample: instant selectors see nothing
            if self.markers and self._hidden_by_marker(labels, latest[0], t):
                continue
            out.append((labels, latest))
        return out

    def _hidden_by_marker(self, labels: Labels, latest: float, t: float) -> bool:
        marks = self.markers.get(labels)
        if not marks:
            return False
        i = bisect_right(marks, t)
        return i > 0 and latest < marks[i - 1]

    def range(self, sel: VectorSelector, t: float, seconds: float) -> Sequence[Tuple[Labels, Sequence[Point]]]:
        """Samples in [t - seconds, t] (Prometheus 2.x: both ends included)."""
        out = []
        start = t - seconds
        for labels, points in self._candidates(sel):
            if sel.matchers and not matches(sel.matchers, self._as_dict(labels)):
                continue
            window = points.window(start, t)
            if window:
                out.append((labels, window))
        return out
