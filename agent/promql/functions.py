"""PromQL's functions over range vectors and histograms, with Prometheus 2.x's arithmetic
(promql/functions.go, quantile.go): extrapolated rates, Kahan-compensated sums, the same
NaN rules. Points are (seconds, value) pairs, oldest first."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from itertools import compress, repeat
from operator import lt, mul, ne
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

Point = Tuple[float, float]


def values_of(points: Sequence[Point]) -> Sequence[float]:
    """The values of a range's points: a history Window's own array, or a list made of them."""
    values = getattr(points, "values", None)
    return values if values is not None else [v for _, v in points]


def _kahan_inc(inc: float, total: float, c: float) -> Tuple[float, float]:
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def _kahan_sum(incs: Iterable[float]) -> Tuple[float, float]:
    """_kahan_inc over `incs` in order, from zero: the sum and its compensation."""
    total = c = 0.0
    for inc in incs:
        t = total + inc
        c += (total - t) + inc if abs(total) >= abs(inc) else (inc - t) + total
        total = t
    return total, c


def extrapolated_rate(points: Sequence[Point], range_start: float, range_end: float,
                      is_counter: bool, is_rate: bool) -> Optional[float]:
    """rate, increase and delta: the change over the window, extrapolated to its edges."""
    count = len(points)
    if count < 2:
        return None
    times = getattr(points, "times", None)
    if times is not None:  # a Window (every rule's range): its arrays, not a tuple a point
        first_t, last_t = times[0], times[-1]
        first_v, last_v = points.values[0], points.values[-1]  # type: ignore[attr-defined]
    else:
        (first_t, first_v), (last_t, last_v) = points[0], points[-1]
    result = last_v - first_v
    if is_counter:
        values = values_of(points)
        if any(map(lt, values[1:], values)):  # a reset (rare): add back what each one lost
            prev = 0.0
            for v in values:
                if v < prev:
                    result += prev
                prev = v
    return _extrapolate(result, first_t, first_v, last_t, count, range_start, range_end, is_counter, is_rate)


def _extrapolate(result: float, first_t: float, first_v: float, last_t: float, count: int, range_start: float,
                 range_end: float, is_counter: bool, is_rate: bool) -> float:
    """The change seen between the first and last sample, extrapolated to the window's edges
    (Prometheus' extrapolatedRate)."""
    to_start = first_t - range_start
    to_end = range_end - last_t
    sampled = last_t - first_t
    average_gap = sampled / (count - 1)
    if is_counter and result > 0 and first_v >= 0:
        to_zero = sampled * (first_v / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average_gap * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average_gap / 2
    interval += to_end if to_end < threshold else average_gap / 2
    result = result * (interval / sampled)
    if is_rate:
        result /= range_end - range_start
    return result


def extrapolated_rates(times: Sequence[float], values: Sequence[float], ends: Sequence[float], seconds: float,
                       is_counter: bool, is_rate: bool) -> Tuple[List[Optional[float]], List[int]]:
    """extrapolated_rate over the window [end - seconds, end] at each of `ends` (ascending), one
    series walked once: the same doubles, with no window made. Also each window's sample count.
    A range query's rate panel asked it at 1,000 steps, a window sliced and a reset scan each."""
    resets = list(compress(range(1, len(values)), map(lt, values[1:], values))) if is_counter else []
    out: List[Optional[float]] = []
    counts: List[int] = []
    lo = hi = 0
    for end in ends:
        start = end - seconds
        lo = bisect_left(times, start, lo)
        hi = bisect_right(times, end, max(hi, lo))
        count = hi - lo
        counts.append(count)
        if count < 2:
            out.append(None)
            continue
        first_v, last = values[lo], hi - 1
        result = values[last] - first_v
        if resets:  # the resets inside (lo, last], in order, as extrapolated_rate adds them
            for j in resets[bisect_right(resets, lo):bisect_right(resets, last)]:
                result += values[j - 1]
        out.append(_extrapolate(result, times[lo], first_v, times[last], count, start, end, is_counter, is_rate))
    return out, counts


def irate(points: Sequence[Point]) -> Optional[float]:
    if len(points) < 2:
        return None
    (t0, v0), (t1, v1) = points[-2], points[-1]
    change = v1 if v1 < v0 else v1 - v0  # a counter reset: the new value is the increase
    dt = t1 - t0
    return None if dt == 0 else change / dt


def linear_regression(points: Sequence[Point], intercept_time: float) -> Tuple[float, float]:
    n = float(len(points))
    values = values_of(points)
    init_y = values[0]
    const_y = not any(map(ne, values[1:], repeat(init_y)))
    xs = [t - intercept_time for t, _ in points]
    # each sum over the points in order, as Prometheus adds them (four sums in one loop there)
    sx, cx = _kahan_sum(xs)
    sy, cy = _kahan_sum(values)
    sxy, cxy = _kahan_sum(map(mul, xs, values))
    sx2, cx2 = _kahan_sum(map(mul, xs, xs))
    if const_y:
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = cov / var if var != 0 else (math.nan if cov == 0 else math.copysign(math.inf, cov))
    return slope, sy / n - slope * sx / n


def deriv(points: Sequence[Point]) -> Optional[float]:
    if len(points) < 2:
        return None
    return linear_regression(points, points[0][0])[0]


def predict_linear(points: Sequence[Point], t: float, seconds: float) -> Optional[float]:
    if len(points) < 2:
        return None
    slope, intercept = linear_regression(points, t)
    return slope * seconds + intercept


def _finite_fsum(values: Sequence[float]) -> Optional[float]:
    """math.fsum when every value is finite (exactly rounded, and done in C); else None."""
    try:
        total = math.fsum(values)
    except (OverflowError, ValueError):
        return None
    return total if math.isfinite(total) else None


def avg_over_time(values: Sequence[float]) -> float:
    total = _finite_fsum(values)
    if total is not None:
        return total / len(values)
    mean = c = 0.0
    count = 0.0
    for v in values:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue  # the mean stays infinite
            if not math.isinf(v) and not math.isnan(v):
                continue  # a finite value cannot move an infinite mean
        mean, c = _kahan_inc(v / count - mean / count, mean, c)
    if math.isinf(mean):
        return mean
    return mean + c


def sum_over_time(values: Sequence[float]) -> float:
    exact = _finite_fsum(values)
    if exact is not None:
        return exact
    total = c = 0.0
    for v in values:
        total, c = _kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def stdvar_over_time(values: Sequence[float]) -> float:
    count = mean = cmean = aux = caux = 0.0
    for v in values:  # _kahan_inc twice a point, written out: a week of minutes is 10,000 points a series
        count += 1
        delta = v - (mean + cmean)
        inc = delta / count
        t = mean + inc
        cmean += (mean - t) + inc if abs(mean) >= abs(inc) else (inc - t) + mean
        mean = t
        inc = delta * (v - (mean + cmean))
        t = aux + inc
        caux += (aux - t) + inc if abs(aux) >= abs(inc) else (inc - t) + aux
        aux = t
    return (aux + caux) / count


def stddev_over_time(values: Sequence[float]) -> float:
    return math.sqrt(stdvar_over_time(values))


def min_over_time(values: Sequence[float]) -> float:
    best = values[0]
    for v in values:
        if v < best or math.isnan(best):
            best = v
    return best


def max_over_time(values: Sequence[float]) -> float:
    best = values[0]
    for v in values:
        if v > best or math.isnan(best):
            best = v
    return best


def _out_of_range(q: float) -> Optional[float]:
    """What PromQL returns for a quantile outside [0, 1] (NaN, -Inf, +Inf); None inside."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    return None


def _nan_first(v: float) -> Tuple[bool, float]:
    """Sort key of Prometheus' vectorByValueHeap: NaN below everything."""
    return (not math.isnan(v), v if not math.isnan(v) else 0.0)


def quantile(q: float, values: Sequence[float]) -> float:
    """The φ-quantile with linear interpolation (Prometheus' `quantile`)."""
    if not values:
        return math.nan
    outside = _out_of_range(q)
    if outside is not None:
        return outside
    ordered = sorted(values, key=_nan_first)
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def changes(values: Sequence[float]) -> float:
    count, prev = 0, values[0]
    for v in values[1:]:
        if v != prev and not (math.isnan(v) and math.isnan(prev)):
            count += 1
        prev = v
    return float(count)


def resets(values: Sequence[float]) -> float:
    count, prev = 0, values[0]
    for v in values[1:]:
        if v < prev:
            count += 1
        prev = v
    return float(count)


OVER_TIME: Dict[str, Callable[[Sequence[float]], float]] = {
    "avg_over_time": avg_over_time, "sum_over_time": sum_over_time, "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time, "min_over_time": min_over_time, "max_over_time": max_over_time,
    "count_over_time": lambda values: float(len(values)), "last_over_time": lambda values: values[-1],
    "present_over_time": lambda values: 1.0, "changes": changes, "resets": resets,
}


def idelta(points: Sequence[Point]) -> Optional[float]:
    if len(points) < 2:
        return None
    return points[-1][1] - points[-2][1]


def holt_winters(points: Sequence[Point], sf: float, tf: float) -> Optional[float]:
    """Double exponential smoothing (Prometheus' holt_winters; 3.x calls it double_exponential_smoothing)."""
    if not 0 < sf < 1:
        raise ValueError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:f}")
    if not 0 < tf < 1:
        raise ValueError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf:f}")
    if len(points) < 2:
        return None
    s0, s1 = 0.0, points[0][1]
    b = points[1][1] - points[0][1]
    for i in range(1, len(points)):
        x = sf * points[i][1]
        if i > 1:  # the first trend is the first difference
            b = tf * (s1 - s0) + (1 - tf) * b
        y = (1 - sf) * (s1 + b)
        s0, s1 = s1, x + y
    return s1


def bucket_quantile(q: float, buckets: List[Tuple[float, float]]) -> float:
    """histogram_quantile over (upper bound, cumulative count) pairs."""
    outside = _out_of_range(q)
    if outside is not None:
        return outside
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    merged: List[List[float]] = []
    for bound, count in buckets:  # coalesce buckets with the same bound
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    highest = -math.inf
    for bucket in merged:  # enforce monotonic counts, as Prometheus does
        if bucket[1] < highest:
            bucket[1] = highest
        highest = bucket[1]
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def _over_time(f: Callable[[Sequence[float]], float]) -> "RangeFunction":
    return lambda points, start, end, extra: f(values_of(points))


# A range function's value for one series: (points, window start, window end, scalar arguments).
RangeFunction = Callable[[Sequence[Point], float, float, Tuple[float, ...]], Optional[float]]

# Every range-vector function but absent_over_time (which answers for the whole matrix, not
# per series): the evaluator looks the name up here instead of walking an if-chain.
RANGE: Dict[str, RangeFunction] = {
    "rate": lambda points, start, end, extra: extrapolated_rate(points, start, end, True, True),
    "increase": lambda points, start, end, extra: extrapolated_rate(points, start, end, True, False),
    "delta": lambda points, start, end, extra: extrapolated_rate(points, start, end, False, False),
    "irate": lambda points, start, end, extra: irate(points),
    "idelta": lambda points, start, end, extra: idelta(points),
    "deriv": lambda points, start, end, extra: deriv(points),
    "predict_linear": lambda points, start, end, extra: predict_linear(points, end, extra[0]),
    "holt_winters": lambda points, start, end, extra: holt_winters(points, extra[0], extra[1]),
    "quantile_over_time": lambda points, start, end, extra: quantile(extra[0], values_of(points)),
    **{name: _over_time(f) for name, f in OVER_TIME.items()},
}
