"""PromQL's aggregation operators over an instant vector, as Prometheus 2.42 computes them
(promql/engine.go aggregation): groups by `by` (those labels) or `without` (the rest, never
__name__); topk/bottomk keep whole series and rank NaN last; count_values adds its label
before grouping."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Union

from . import functions as fn
from .ast import Aggregate
from .labelsets import drop, keep
from .vectorfuncs import LABEL_NAME, format_value

Labels = Tuple[Tuple[str, str], ...]
Vector = List[Tuple[Labels, float]]
INT64 = 2.0 ** 63


def group_key(labels: Labels, node: Aggregate, grouping: Tuple[str, ...]) -> Labels:
    if node.without:
        return drop(labels, grouping + ("__name__",))
    return keep(labels, grouping)


def aggregate(node: Aggregate, vector: Vector, param: Optional[Union[float, str]] = None) -> Vector:
    op = node.op
    if op in ("topk", "bottomk"):
        return _top(node, vector, param)
    grouping = node.grouping
    if op == "count_values":
        label = str(param)
        if not LABEL_NAME.match(label):
            raise ValueError(f"invalid label name {label!r}")
        vector = [(tuple(sorted(dict(labels, **{label: format_value(v)}).items())), 1.0) for labels, v in vector]
        if not node.without:
            grouping = grouping + (label,)
        op = "count"
    groups: Dict[Labels, List[float]] = {}
    for labels, v in vector:
        groups.setdefault(group_key(labels, node, grouping), []).append(v)
    return [(key, fold(op, values, param)) for key, values in groups.items()]


def fold(op: str, values: List[float], param: Optional[Union[float, str]]) -> float:
    if op == "sum":
        return fn.sum_over_time(values)
    if op == "avg":
        return fn.avg_over_time(values)
    if op == "count":
        return float(len(values))
    if op == "group":
        return 1.0
    if op == "min":
        return fn.min_over_time(values)
    if op == "max":
        return fn.max_over_time(values)
    if op == "quantile":
        return fn.quantile(float(param), values)  # type: ignore[arg-type]
    if op in ("stddev", "stdvar"):
        # Welford, as Prometheus' aggregation does it (no compensation, unlike stddev_over_time)
        count, mean, acc = 1.0, values[0], 0.0
        for v in values[1:]:
            count += 1
            delta = v - mean
            mean += delta / count
            acc += delta * (v - mean)
        return acc / count if op == "stdvar" else math.sqrt(acc / count)
    raise ValueError(f"unknown aggregation {op}")


def _top(node: Aggregate, vector: Vector, param) -> Vector:
    k = float(param)
    if not (-INT64 <= k <= INT64 - 1):
        raise ValueError(f"Scalar value {k} overflows int64")
    count = int(k)
    if count < 1:
        return []
    groups: Dict[Labels, Vector] = {}
    for sample in sorted(vector):  # Prometheus reads series in label order; among equal values the first wins
        groups.setdefault(group_key(sample[0], node, node.grouping), []).append(sample)
    out: Vector = []
    sign = -1.0 if node.op == "topk" else 1.0
    for members in groups.values():
        ranked = sorted(members, key=lambda s: (math.isnan(s[1]), sign * s[1] if not math.isnan(s[1]) else 0.0))
        out.extend(ranked[:count])
    return out
