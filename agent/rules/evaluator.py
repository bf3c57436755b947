"""Evaluate a parsed expression at a time against the History, with PromQL's semantics:
label handling (which operations drop __name__), one-to-one vector matching with on/ignoring,
comparison filters and `bool`, set operators, aggregation grouping and NaN rules."""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Tuple, Union

from . import functions as fn
from .ast import SCALAR, Aggregate, Binary, Call, Matching, MatrixSelector, Number, Unary, VectorSelector
from .history import History, Labels

Vector = List[Tuple[Labels, float]]
Value = Union[float, Vector]


class EvalError(Exception):
    """A runtime failure PromQL also reports (duplicate series in a one-to-one match, ...)."""


def _vector(value: Value) -> Vector:
    """An instant vector, as the parser's type checks promise at this point."""
    if not isinstance(value, list):
        raise EvalError("expected an instant vector, got a scalar")
    return value


def _scalar(value: Value) -> float:
    if isinstance(value, list):
        raise EvalError("expected a scalar, got an instant vector")
    return value


def _selector(node: object) -> MatrixSelector:
    if not isinstance(node, MatrixSelector):
        raise EvalError("expected a range vector")
    return node


def _drop(labels: Labels, names: Tuple[str, ...]) -> Labels:
    return tuple(kv for kv in labels if kv[0] not in names)


def _keep(labels: Labels, names: Tuple[str, ...]) -> Labels:
    return tuple(kv for kv in labels if kv[0] in names)


def _no_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != "__name__")


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "%":
            return math.fmod(a, b)
        if op == "^":
            return math.pow(a, b)
    except ZeroDivisionError:
        if op == "/":
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
        return math.nan  # x % 0
    except (OverflowError, ValueError):
        if op == "^":
            try:
                return a ** b if not (a < 0 and b != int(b)) else math.nan
            except (OverflowError, ZeroDivisionError):
                return math.inf
        return math.nan
    raise EvalError(f"unknown operator {op}")


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
            "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}


class Evaluator:
    """Evaluates expressions at time `t`; counts how many series its selectors matched."""

    def __init__(self, history: History, cache: Optional[Dict[tuple, tuple]] = None):
        self.history = history
        self.selected: Dict[int, List[Labels]] = {}  # by id() of the selector node: the series it returned
        # results of range functions, shared by the rules of one evaluation (two default rules
        # read avg_over_time(DCGM_FI_DEV_GPU_UTIL[30m])): computed once per cycle
        self.cache = cache if cache is not None else {}

    def eval(self, node: object, t: float) -> Value:
        self.selected = {}
        return self._eval(node, t)

    def _record(self, selector: VectorSelector, labels: Iterable[Labels]) -> None:
        self.selected.setdefault(id(selector), []).extend(labels)

    def _eval(self, node: object, t: float) -> Value:
        if isinstance(node, Number):
            return node.value
        if isinstance(node, VectorSelector):
            found = self.history.instant(node, t)
            self._record(node, (labels for labels, _ in found))
            return found
        if isinstance(node, Call):
            return self._call(node, t)
        if isinstance(node, Aggregate):
            return self._aggregate(node, _vector(self._eval(node.expr, t)))
        if isinstance(node, Unary):
            operand = self._eval(node.expr, t)
            if node.type == SCALAR:
                return -_scalar(operand)
            return [(_no_name(labels), -v) for labels, v in _vector(operand)]
        if isinstance(node, Binary):
            return self._binary(node, self._eval(node.lhs, t), self._eval(node.rhs, t))
        raise EvalError(f"cannot evaluate {type(node).__name__}")

    # -- functions -----------------------------------------------------------------------------

    def _matrix(self, node: MatrixSelector, t: float):
        found = self.history.range(node.vector, t, node.range)
        self._record(node.vector, (labels for labels, _ in found))
        return found

    def _call(self, node: Call, t: float) -> Vector:
        f, args = node.func, node.args
        if f in ("rate", "increase", "delta", "irate", "deriv", "predict_linear") or f in fn.OVER_TIME:
            matrix = _selector(args[0])
            extra = _scalar(self._eval(args[1], t)) if f == "predict_linear" else None
            key = (f, matrix.vector.name, matrix.vector.matchers, matrix.range, extra, t)
            if key in self.cache:
                result, selected = self.cache[key]
                self._record(matrix.vector, selected)
                return list(result)
            out = self._range_function(f, matrix, extra, t)
            self.cache[key] = (tuple(out), tuple(self.selected.get(id(matrix.vector), ())))
            return out
        if f == "quantile_over_time":
            q = _scalar(self._eval(args[0], t))
            return [(_no_name(labels), fn.quantile(q, [v for _, v in points]))
                    for labels, points in self._matrix(_selector(args[1]), t)]
        if f in ("clamp_min", "clamp_max"):
            vector, bound = _vector(self._eval(args[0], t)), _scalar(self._eval(args[1], t))
            pick = max if f == "clamp_min" else min
            return [(_no_name(labels), math.nan if math.isnan(v) or math.isnan(bound) else pick(v, bound))
                    for labels, v in vector]
        if f == "absent":
            return self._absent(args[0], _vector(self._eval(args[0], t)))
        if f == "histogram_quantile":
            return self._histogram_quantile(_scalar(self._eval(args[0], t)), _vector(self._eval(args[1], t)))
        raise EvalError(f"unknown function {f}")

    def _range_function(self, f: str, matrix: MatrixSelector, extra: Optional[float], t: float) -> Vector:
        out = []
        for labels, points in self._matrix(matrix, t):
            if f == "irate":
                value = fn.irate(points)
            elif f == "deriv":
                value = fn.deriv(points)
            elif f == "predict_linear":
                value = fn.predict_linear(points, t, extra if extra is not None else 0.0)
            elif f in fn.OVER_TIME:
                value = fn.OVER_TIME[f]([v for _, v in points])
            else:
                value = fn.extrapolated_rate(points, t - matrix.range, t, f != "delta", f == "rate")
            if value is not None:
                out.append((_no_name(labels), value))
        return out

    @staticmethod
    def _absent(arg: object, vector: Vector) -> Vector:
        if vector:
            return []
        labels: Dict[str, str] = {}
        if isinstance(arg, VectorSelector):
            seen = set()
            for m in arg.matchers:
                if m.op == "=" and m.label != "__name__":
                    if m.label in seen:  # two equality matchers on one label: no label can be set
                        labels.pop(m.label, None)
                        continue
                    seen.add(m.label)
                    labels[m.label] = m.value
        return [(tuple(sorted(labels.items())), 1.0)]

    @staticmethod
    def _histogram_quantile(q: float, vector: Vector) -> Vector:
        groups: Dict[Labels, List[Tuple[float, float]]] = {}
        for labels, v in vector:
            le = dict(labels).get("le")
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            groups.setdefault(_drop(labels, ("le", "__name__")), []).append((bound, v))
        return [(labels, fn.bucket_quantile(q, buckets)) for labels, buckets in groups.items()]

    # -- aggregation ---------------------------------------------------------------------------

    @staticmethod
    def _aggregate(node: Aggregate, vector: Vector) -> Vector:
        groups: Dict[Labels, List[float]] = {}
        for labels, v in vector:
            key = _drop(labels, node.grouping + ("__name__",)) if node.without else _keep(labels, node.grouping)
            groups.setdefault(key, []).append(v)
        out = []
        for key, values in groups.items():
            if node.op == "sum":
                value = fn.sum_over_time(values)
            elif node.op == "avg":
                value = fn.avg_over_time(values)
            elif node.op == "count":
                value = float(len(values))
            elif node.op == "min":
                value = fn.min_over_time(values)
            else:
                value = fn.max_over_time(values)
            out.append((key, value))
        return out

    # -- binary operators ----------------------------------------------------------------------

    def _binary(self, node: Binary, lhs: Value, rhs: Value) -> Value:
        op = node.op
        if not isinstance(lhs, list) and not isinstance(rhs, list):
            if op in _COMPARE:
                return 1.0 if _COMPARE[op](lhs, rhs) else 0.0
            return _arith(op, lhs, rhs)
        if not isinstance(lhs, list):
            return self._vector_scalar(node, _vector(rhs), lhs, swap=True)
        if not isinstance(rhs, list):
            return self._vector_scalar(node, lhs, rhs, swap=False)
        if op in ("and", "or", "unless"):
            return self._set_op(op, node.matching, lhs, rhs)
        return self._vector_vector(node, lhs, rhs)

    @staticmethod
    def _vector_scalar(node: Binary, vector: Vector, scalar: float, swap: bool) -> Vector:
        """`vector op scalar`, or `scalar op vector` when `swap`."""
        out = []
        for labels, v in vector:
            a, b = (scalar, v) if swap else (v, scalar)
            if node.op in _COMPARE:
                keep = _COMPARE[node.op](a, b)
                if node.bool_mod:
                    out.append((_no_name(labels), 1.0 if keep else 0.0))
                elif keep:
                    out.append((labels, v))  # a filter keeps the vector's own value and name
            else:
                out.append((_no_name(labels), _arith(node.op, a, b)))
        return out

    @staticmethod
    def _signature(labels: Labels, matching: Optional[Matching]) -> Labels:
        if matching is None:
            return _no_name(labels)
        if matching.on:
            return _keep(labels, matching.labels)
        return _drop(labels, matching.labels + ("__name__",))

    def _vector_vector(self, node: Binary, lhs: Vector, rhs: Vector) -> Vector:
        right: Dict[Labels, float] = {}
        for labels, v in rhs:
            sig = self._signature(labels, node.matching)
            if sig in right:
                raise EvalError(f"found duplicate series for the match group {dict(sig)} on the right hand side "
                                "of the operation: many-to-many matching is not supported")
            right[sig] = v
        out, seen = [], set()
        comparison = node.op in _COMPARE
        for labels, lv in lhs:
            sig = self._signature(labels, node.matching)
            if sig not in right:
                continue
            if sig in seen:
                raise EvalError(f"multiple matches for labels {dict(sig)}: many-to-one matching must be explicit "
                                "(group_left/group_right is not supported)")
            seen.add(sig)
            rv = right[sig]
            result = labels
            if not comparison or node.bool_mod:
                result = _no_name(result)
            if node.matching is not None:
                result = _keep(result, node.matching.labels) if node.matching.on else _drop(result, node.matching.labels)
            if comparison:
                keep = _COMPARE[node.op](lv, rv)
                if node.bool_mod:
                    out.append((result, 1.0 if keep else 0.0))
                elif keep:
                    out.append((result, lv))
            else:
                out.append((result, _arith(node.op, lv, rv)))
        return out

    def _set_op(self, op: str, matching: Optional[Matching], lhs: Vector, rhs: Vector) -> Vector:
        right = {self._signature(labels, matching) for labels, _ in rhs}
        if op == "and":
            return [(labels, v) for labels, v in lhs if self._signature(labels, matching) in right]
        if op == "unless":
            return [(labels, v) for labels, v in lhs if self._signature(labels, matching) not in right]
        left = {self._signature(labels, matching) for labels, _ in lhs}
        return list(lhs) + [(labels, v) for labels, v in rhs if self._signature(labels, matching) not in left]
