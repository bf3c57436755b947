"""A range query evaluated across all its steps at once, where every node of the expression
allows it: instant selectors, rate, increase and delta over a selector's range (batched as
range_steps batches them), numbers, parentheses, unary minus, aggregations without a
parameter, histogram_quantile, and arithmetic or comparison of such a vector with a scalar.
`1 - avg without (cpu, mode) (rate(...))` over a week at Grafana's 10-minute step is 1,009
steps: evaluated one by one, each walked the tree and built its vectors again (~14 us a step,
most of the panel's time once the rates were batched).

A value across the steps is a column per series (its value at each step, None where it is
absent) or, for a scalar, one list of values. The answer is the one evaluating each step alone
gives, to the bit: values are folded in the order a step would see them (so an aggregation
reads only a vector whose series keep one order at every step: a selector's, a rate's or one
derived from them by a scalar operation, not another aggregation's), and each step is charged the samples a step
alone spends (`work`), so the caller refuses the same query at the same step. Anything else
(another function, vector matching, a subquery, @, two series that would share a label set)
is left to the step-by-step evaluation: range_columns answers None."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import functions as fn
from .aggregation import fold, group_key
from .ast import SCALAR, Aggregate, Binary, Call, Number, Paren, Unary, VectorSelector
from .evaluator import COMPARE, Budget, arith, batchable, bucket_groups, named_series, no_name, rates_at_steps
from ..labels import Labels

Column = List[Optional[float]]
Series = List[Tuple[Labels, Column]]
# what range_columns answers: the value (a scalar's list, or each series' column) and, per
# step, the samples a step alone would spend on it
Columns = Tuple[Union[List[float], Series], List[int]]

_FOLDS = ("sum", "avg", "count", "group", "min", "max", "stddev", "stdvar")
_ONE_IS_ITSELF = ("sum", "avg", "min", "max")


def fold_one(op: str, v: float) -> float:
    """An aggregation of one of _ONE_IS_ITSELF over one value: a finite value other than zero is
    itself, to the bit (fsum of one value is it, the mean divides it by one, min and max pick
    it); zeros (fsum writes -0 as 0), infinities and NaN are folded as a step folds them."""
    return v if v and math.isfinite(v) else fold(op, [v], None)


class _Declined(Exception):
    """Met something the columns cannot answer as every step alone would: the caller steps."""


class _Value:
    __slots__ = ("scalar", "series", "work", "ordered")

    def __init__(self, work: List[int], scalar: Optional[List[float]] = None, series: Optional[Series] = None,
                 ordered: bool = True):
        self.work = work  # samples a step alone spends on this subtree, at each step
        self.scalar = scalar
        self.series = series
        # whether a step alone sees the series in this order at every step (an aggregation's
        # groups come in the order their first present member has at that step: not so)
        self.ordered = ordered


def range_columns(history: Any, node: object, times: List[float], budget: Budget) -> Optional[Columns]:
    """`node` at every one of `times` at once, or None where a node does not allow it (the
    caller evaluates step by step). Needs the history's columns (tsdb.query.Loaded); holds
    every step's values at once, so answers None where those would pass the samples budget."""
    if getattr(history, "columns", None) is None or not times or not _allowed(node):
        return None
    try:
        value = _Evaluation(history, times, budget).eval(node)
    except _Declined:
        return None
    return (value.scalar if value.scalar is not None else value.series or []), value.work


def _allowed(node: object) -> bool:
    """Whether every node of the expression is one the columns evaluate (checked before any
    work, so a declined query costs nothing)."""
    if isinstance(node, Number):
        return True
    if isinstance(node, VectorSelector):
        return node.at is None
    if isinstance(node, Paren):
        return _allowed(node.expr)
    if isinstance(node, Call):
        if node.func == "histogram_quantile":  # its buckets are sorted: it reads a vector in any order
            return len(node.args) == 2 and _allowed(node.args[0]) and _allowed(node.args[1])
        return batchable(node)
    if isinstance(node, Aggregate):
        return node.op in _FOLDS and node.param is None and _allowed(node.expr)
    if isinstance(node, Unary):
        return _allowed(node.expr)
    if isinstance(node, Binary):
        return ((node.lhs.type == SCALAR or node.rhs.type == SCALAR) and node.op not in ("and", "or", "unless")
                and _allowed(node.lhs) and _allowed(node.rhs))
    return False


class _Evaluation:
    def __init__(self, history: Any, times: List[float], budget: Budget):
        self.history = history
        self.times = times
        self.budget = budget
        self.held = 0  # cells held at once, against the samples budget

    def _hold(self, cells: int) -> None:
        self.held += cells
        if self.held > self.budget.max_samples:
            raise _Declined()  # step by step holds one step at a time
        self.budget.spend(0)  # the deadline

    def eval(self, node: object) -> _Value:
        n = len(self.times)
        if isinstance(node, Number):
            return _Value([0] * n, scalar=[node.value] * n)
        if isinstance(node, Paren):
            return self.eval(node.expr)
        if isinstance(node, VectorSelector):
            return self._select(node)
        if isinstance(node, Call):
            if node.func == "histogram_quantile":
                return self._histogram_quantile(self.eval(node.args[0]), self.eval(node.args[1]))
            return self._call(node)
        if isinstance(node, Aggregate):
            return self._aggregate(node, self.eval(node.expr))
        if isinstance(node, Unary):
            return self._negate(self.eval(node.expr))
        assert isinstance(node, Binary)
        return self._binary(node, self.eval(node.lhs), self.eval(node.rhs))

    def _select(self, sel: VectorSelector) -> _Value:
        if getattr(self.history, "instants", None) is None:
            raise _Declined()
        self._hold(self.history.count(sel) * len(self.times))  # before a cell is made
        series = self.history.instants(sel, [t - sel.offset for t in self.times])
        work = [0] * len(self.times)  # a step spends one sample for each series it selects
        for _, column in series:
            for k, v in enumerate(column):
                if v is not None:
                    work[k] += 1
        return _Value(work, series=series)

    def _call(self, call: Call) -> _Value:
        series = named_series(self.history, call)
        if series is None:
            raise _Declined()  # a step refuses two series of one label set
        self._hold(len(series) * len(self.times))
        work = [0] * len(self.times)
        out: Series = []
        for _, name, rates, counts in rates_at_steps(self.history, call, series, self.times, self.budget):
            # a step spends the window's samples, then one for each series of its answer
            for k, (value, count) in enumerate(zip(rates, counts)):
                work[k] += count + (value is not None)
            out.append((name, rates))
        return _Value(work, series=out)

    def _aggregate(self, node: Aggregate, operand: _Value) -> _Value:
        if operand.series is None or not operand.ordered:
            raise _Declined()  # a scalar (a parse error, not here) or values a step would fold in another order
        groups: Dict[Labels, List[Column]] = {}
        for labels, member in operand.series:
            groups.setdefault(group_key(labels, node, node.grouping), []).append(member)
        self._hold(len(groups) * len(self.times))
        work = list(operand.work)
        out: Series = []
        for key, members in groups.items():
            self.budget.spend(0)
            column: Column = []
            if len(members) == 1 and node.op in _ONE_IS_ITSELF:  # `sum by (le, server)`: each group one series
                for k, v in enumerate(members[0]):
                    if v is not None:
                        column.append(fold_one(node.op, v))
                        work[k] += 1
                    else:
                        column.append(None)
                out.append((key, column))
                continue
            for k, values in enumerate(zip(*members)):
                present = [v for v in values if v is not None]
                if present:
                    column.append(fold(node.op, present, None))
                    work[k] += 1
                else:
                    column.append(None)
            out.append((key, column))
        return _Value(work, series=out, ordered=False)

    def _histogram_quantile(self, q: _Value, operand: _Value) -> _Value:
        assert q.scalar is not None and operand.series is not None
        groups = bucket_groups(operand.series)  # grouped as a step groups them
        out: Series = []
        for key, members in groups.items():
            self.budget.spend(0)
            quantiles: Column = []
            for k, fraction in enumerate(q.scalar):
                buckets = [(bound, v) for bound, column in members if (v := column[k]) is not None]
                quantiles.append(fn.bucket_quantile(fraction, buckets) if buckets else None)
            out.append((no_name(key), quantiles))
        # groups come in the order their first present bucket has at a step
        return self._vector_result(out, [a + b for a, b in zip(q.work, operand.work)], ordered=False)

    def _negate(self, operand: _Value) -> _Value:
        if operand.scalar is not None:
            return _Value(operand.work, scalar=[-v for v in operand.scalar])
        assert operand.series is not None
        out = [(no_name(labels), [None if v is None else -v for v in column]) for labels, column in operand.series]
        return self._vector_result(out, operand.work, operand.ordered)

    def _binary(self, node: Binary, lhs: _Value, rhs: _Value) -> _Value:
        op = node.op
        work = [a + b for a, b in zip(lhs.work, rhs.work)]
        if lhs.scalar is not None and rhs.scalar is not None:
            if op in COMPARE:
                test = COMPARE[op]
                return _Value(work, scalar=[1.0 if test(a, b) else 0.0 for a, b in zip(lhs.scalar, rhs.scalar)])
            return _Value(work, scalar=[arith(op, a, b) for a, b in zip(lhs.scalar, rhs.scalar)])
        swap = lhs.scalar is not None
        vector, scalar = (rhs, lhs.scalar) if swap else (lhs, rhs.scalar)
        assert vector.series is not None and scalar is not None
        out: Series = []
        compare: Optional[Callable[[float, float], bool]] = COMPARE.get(op)
        for labels, column in vector.series:
            self.budget.spend(0)
            values: Column = []
            for v, s in zip(column, scalar):
                if v is None:
                    values.append(None)
                    continue
                a, b = (s, v) if swap else (v, s)
                if compare is None:
                    values.append(arith(op, a, b))
                elif node.bool_mod:
                    values.append(1.0 if compare(a, b) else 0.0)
                else:
                    values.append(v if compare(a, b) else None)  # a filter keeps the vector's own value
            # a filter keeps the series' name, atan2 too; every other operation drops it
            out.append((labels if (compare is not None and not node.bool_mod) or op == "atan2" else no_name(labels),
                        values))
        return self._vector_result(out, work, vector.ordered)

    def _vector_result(self, out: Series, work: List[int], ordered: bool) -> _Value:
        """A vector an operation made: a step alone spends one sample for each series present in
        it; two series of one label set are left to the step that refuses them."""
        if len({labels for labels, _ in out}) != len(out):
            raise _Declined()
        self._hold(len(out) * len(self.times))
        work = list(work)
        for _, column in out:
            for k, v in enumerate(column):
                if v is not None:
                    work[k] += 1
        return _Value(work, series=out, ordered=ordered)

