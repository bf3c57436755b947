"""A short history of the series the loaded rules read, in bounded ring buffers.

Only series matching a registered selector are kept, and each only as long as the longest
range any rule reads it over (plus the 5-minute lookback for instant selectors): with N
matching series, interval I and longest range R, memory is about N * (R + 300) / I samples.
A series missing from a snapshot is marked stale, as Prometheus writes a staleness marker
when a series vanishes from a scrape: instant selectors stop returning it at once, ranges
keep its older samples until they age out.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from typing import Dict, Iterable, List, Optional, Tuple

from ..model import Snapshot
from .ast import Matcher, VectorSelector

LOOKBACK = 300.0  # Prometheus' default lookback delta
Labels = Tuple[Tuple[str, str], ...]
Point = Tuple[float, float]


def _match_one(m: Matcher, value: str) -> bool:
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    hit = re.fullmatch(m.value, value) is not None
    return hit if m.op == "=~" else not hit


def matches(matchers: Iterable[Matcher], labels: Dict[str, str]) -> bool:
    """PromQL matching: a missing label has the empty value; regexes are anchored."""
    return all(_match_one(m, labels.get(m.label, "")) for m in matchers)


class History:
    """Samples per series for the registered selectors; `keep` seconds each."""

    def __init__(self, lookback: float = LOOKBACK, max_series: int = 100_000):
        self.lookback = lookback
        self.max_series = max_series
        self.series: Dict[str, Dict[Labels, List[Point]]] = {}  # by metric name; points oldest first
        self.selectors: List[Tuple[VectorSelector, float]] = []
        self._by_name: Dict[str, List[VectorSelector]] = {}  # selectors with a metric name, by name
        self._nameless: List[VectorSelector] = []
        self.dropped_series = 0
        self.series_count = 0
        self.stale: Dict[Labels, float] = {}  # series gone from the snapshots, and since when

    def register(self, selector: VectorSelector, range_seconds: float) -> None:
        self.selectors.append((selector, range_seconds))
        if selector.name:
            self._by_name.setdefault(selector.name, []).append(selector)
        else:
            self._nameless.append(selector)

    def clear_selectors(self) -> None:
        self.selectors, self._by_name, self._nameless = [], {}, []

    def keep_for(self) -> float:
        return max((r for _, r in self.selectors), default=0.0) + self.lookback

    # -- writing -----------------------------------------------------------------------------

    def add(self, labels: Labels, t: float, v: float) -> None:
        """Append one sample; `labels` is sorted and includes __name__."""
        name = dict(labels).get("__name__", "")
        by_name = self.series.setdefault(name, {})
        points = by_name.get(labels)
        if points is None:
            if self.series_count >= self.max_series:
                self.dropped_series += 1
                return
            points = by_name[labels] = []
            self.series_count += 1
        elif self.stale:
            self.stale.pop(labels, None)
        points.append((t, v))

    def ingest(self, snapshot: Snapshot) -> None:
        """Record every snapshot series a registered selector wants; mark the vanished stale."""
        t = snapshot.timestamp
        seen = set()
        for family in snapshot.families:
            for s in family.samples:
                named = self._by_name.get(s.name)
                if named is None and not self._nameless:
                    continue  # most series: no rule reads them
                labels = tuple(sorted(s.labels + (("__name__", s.name),)))
                if labels in seen or not self._wanted(named or (), labels):
                    continue
                seen.add(labels)
                self.add(labels, t, s.value)
        horizon = t - self.keep_for()
        for name, by_name in list(self.series.items()):
            for labels, points in list(by_name.items()):
                if labels not in seen and labels not in self.stale:
                    self.stale[labels] = t  # Prometheus' staleness marker
                if points and points[0][0] < horizon:
                    del points[:bisect_left(points, (horizon,))]
                if not points:
                    del by_name[labels]
                    self.stale.pop(labels, None)
                    self.series_count -= 1
            if not by_name:
                del self.series[name]

    def _wanted(self, named: Iterable[VectorSelector], labels: Labels) -> bool:
        as_dict = dict(labels)
        return any(matches(sel.matchers, as_dict) for sel in list(named) + self._nameless)

    def sample_count(self) -> int:
        return sum(len(p) for by_name in self.series.values() for p in by_name.values())

    # -- reading -----------------------------------------------------------------------------

    def _candidates(self, sel: VectorSelector) -> Iterable[Tuple[Labels, List[Point]]]:
        if sel.name:
            return self.series.get(sel.name, {}).items()
        return ((labels, pts) for by_name in self.series.values() for labels, pts in by_name.items())

    def instant(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, float]]:
        """The latest sample at or before t within the lookback, unless stale."""
        out = []
        for labels, points in self._candidates(sel):
            if not matches(sel.matchers, dict(labels)):
                continue
            latest = _latest(points, t)
            if latest is None or latest[0] < t - self.lookback:
                continue
            gone = self.stale.get(labels)
            if gone is not None and latest[0] < gone <= t:
                continue  # marked stale after its last sample: instant selectors see nothing
            out.append((labels, latest[1]))
        return out

    def range(self, sel: VectorSelector, t: float, seconds: float) -> List[Tuple[Labels, List[Point]]]:
        """Samples in [t - seconds, t] (Prometheus 2.x: both ends included)."""
        out = []
        start = t - seconds
        for labels, points in self._candidates(sel):
            if not matches(sel.matchers, dict(labels)):
                continue
            # points are in time order: find the window by bisection; (t, inf) sorts after any value at t
            window = points[bisect_left(points, (start,)):bisect_right(points, (t, math.inf))]
            if window:
                out.append((labels, window))
        return out


def _latest(points: List[Point], t: float) -> Optional[Point]:
    i = bisect_right(points, (t, math.inf))
    return points[i - 1] if i else None

