"""Rollups: a series summarised per fixed bucket (1 minute, 1 hour) as min, max, sum, count
and last, stamped with the time of the bucket's last sample (so a query never sees a value
before it happened, and `last` is exact for counters).

Rollups merge: two partial summaries of one bucket combine into the summary of both, so an
hour is built from the half-hours sealed at different times, and the unsealed head is
summarised at query time and merged with what is on disk.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Sequence, Tuple

# t (last sample's time), min, max, sum, count, last
Rollup = Tuple[float, float, float, float, float, float]
COLUMNS = ("min", "max", "sum", "count", "last")


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
        total = math.fsum(window)  # correctly rounded: a sum of decimals stays a decimal, and compresses as one
        if total != total:  # a NaN inside (or infinities of both signs): summarise the numbers only
            kept = [(times[k], values[k]) for k in range(i, j) if values[k] == values[k]]
            if kept:
                vals = [v for _, v in kept]
                out.append((kept[-1][0], min(vals), max(vals), math.fsum(vals), float(len(vals)), vals[-1]))
        else:
            out.append((times[j - 1], min(window), max(window), total, float(j - i), window[-1]))
        i = j
    return out


def merge(older: Iterable[Rollup], newer: Iterable[Rollup], resolution: float) -> List[Rollup]:
    """Both lists as one, in time order; the summaries of one bucket become one (their sums
    added in one correctly rounded step, so an hour made of minutes sums like the hour)."""
    buckets: List[List[Rollup]] = []
    for point in sorted(list(older) + list(newer), key=lambda p: p[0]):
        if buckets and math.floor(buckets[-1][0][0] / resolution) == math.floor(point[0] / resolution):
            buckets[-1].append(point)
        else:
            buckets.append([point])
    out: List[Rollup] = []
    for group in buckets:
        if len(group) == 1:
            out.append(group[0])
            continue
        out.append((group[-1][0], min(p[1] for p in group), max(p[2] for p in group), math.fsum(p[3] for p in group),
                    sum(p[4] for p in group), group[-1][5]))
    return out


def value_of(point: Rollup, column: str) -> float:
    """The value a query reads from a rollup: `avg` (sum / count), or one column by name."""
    if column == "avg":
        return point[3] / point[4] if point[4] else math.nan
    return point[1 + COLUMNS.index(column)]
