"""A short history of the series the loaded rules read, in bounded ring buffers.

Only series matching a registered selector are kept, and each only as long as the longest
range any rule reads it over (plus the 5-minute lookback for instant selectors): with N
matching series, interval I and longest range R, memory is about N * (R + 300) / I samples.
A series missing from a snapshot gets a staleness marker, as Prometheus writes one when a
series vanishes from a scrape: instant selectors stop returning it at once, ranges keep its
older samples until they age out.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Deque, Dict, Iterable, List, Optional, Tuple

from ..model import Snapshot
from .ast import Matcher, VectorSelector

LOOKBACK = 300.0  # Prometheus' default lookback delta
STALE = float("nan")  # a distinct NaN object; identity marks staleness, as Prometheus' special NaN does
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
        self.series: Dict[str, Dict[Labels, Deque[Point]]] = {}  # by metric name
        self.selectors: List[Tuple[VectorSelector, float]] = []
        self.dropped_series = 0
        self.series_count = 0

    def register(self, selector: VectorSelector, range_seconds: float) -> None:
        self.selectors.append((selector, range_seconds))

    def clear_selectors(self) -> None:
        self.selectors = []

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
            points = by_name[labels] = deque()
            self.series_count += 1
        points.append((t, v))

    def ingest(self, snapshot: Snapshot) -> None:
        """Record every snapshot series a registered selector wants; mark the vanished stale."""
        t = snapshot.timestamp
        seen = set()
        for family in snapshot.families:
            for s in family.samples:
                labels = tuple(sorted(s.labels + (("__name__", s.name),)))
                if labels in seen or not self._wanted(s.name, labels):
                    continue
                seen.add(labels)
                self.add(labels, t, s.value)
        horizon = t - self.keep_for()
        for name, by_name in list(self.series.items()):
            for labels, points in list(by_name.items()):
                if labels not in seen and points and points[-1][1] is not STALE:
                    points.append((t, STALE))
                while points and points[0][0] < horizon:
                    points.popleft()
                if not points or (len(points) == 1 and points[0][1] is STALE):
                    del by_name[labels]
                    self.series_count -= 1
            if not by_name:
                del self.series[name]

    def _wanted(self, name: str, labels: Labels) -> bool:
        as_dict = None
        for sel, _ in self.selectors:
            if sel.name and sel.name != name:
                continue
            as_dict = as_dict or dict(labels)
            if matches(sel.matchers, as_dict):
                return True
        return False

    def sample_count(self) -> int:
        return sum(len(p) for by_name in self.series.values() for p in by_name.values())

    # -- reading -----------------------------------------------------------------------------

    def _candidates(self, sel: VectorSelector) -> Iterable[Tuple[Labels, Deque[Point]]]:
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
            if latest is not None and latest[1] is not STALE and latest[0] >= t - self.lookback:
                out.append((labels, latest[1]))
        return out

    def range(self, sel: VectorSelector, t: float, seconds: float) -> List[Tuple[Labels, List[Point]]]:
        """Samples in [t - seconds, t] (Prometheus 2.x: both ends included), staleness markers dropped."""
        out = []
        start = t - seconds
        for labels, points in self._candidates(sel):
            if not matches(sel.matchers, dict(labels)):
                continue
            window = [p for p in points if start <= p[0] <= t and p[1] is not STALE]
            if window:
                out.append((labels, window))
        return out


def _latest(points: Deque[Point], t: float) -> Optional[Point]:
    for p in reversed(points):
        if p[0] <= t:
            return p
    return None

