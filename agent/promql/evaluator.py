"""Evaluate a parsed expression at a time against the History, with Prometheus 2.42's
semantics: offset and @, subqueries (steps aligned to multiples of the step since the epoch),
label handling (which operations drop __name__), vector matching with on/ignoring and
group_left/group_right, comparison filters and `bool`, set operators, every aggregation, and
the runtime errors Prometheus raises (duplicate series in a match or in a result)."""

from __future__ import annotations

import math
import pickle
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from .. import regex
from . import functions as fn
from . import vectorfuncs as vf
from .aggregation import aggregate
from .labelsets import drop as _drop, keep as _keep, no_name
from .ast import (Aggregate, At, Binary, Call, Matching, MatrixSelector, Number, Paren, String, Subquery, Unary,
                  VectorSelector, children, reads_past_its_time, unwrap)
from ..labels import Labels
from .samples import Point, Samples

Vector = List[Tuple[Labels, float]]


class Matrix(list):
    """A range vector: [(labels, [(t, v), ...])]."""


Value = Union[float, str, Vector, Matrix]


class EvalError(Exception):
    """A runtime failure PromQL also reports (duplicate series in a one-to-one match, ...)."""


class BudgetExceeded(EvalError):
    """An evaluation past its sample budget or its deadline; `kind`: "samples" or "timeout"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Budget:
    """What one evaluation may do, as Prometheus' query.max-samples and query.timeout, checked
    as the work is done: every sample a selector loads, every step of a subquery (counted
    before it runs: `[1d:1ms]` is refused at once, not after a gigabyte), every series an
    operator or a function makes. Shared by all the steps of a range query."""

    def __init__(self, max_samples: float = math.inf, seconds: float = math.inf,
                 clock: Callable[[], float] = time.monotonic):
        self.max_samples = max_samples
        self.seconds = seconds
        self.clock = clock
        self.spent = 0
        self.deadline = clock() + seconds if math.isfinite(seconds) else math.inf

    def spend(self, n: int) -> None:
        self.spent += n
        if self.spent > self.max_samples:
            raise BudgetExceeded("samples", f"query processing would load too many samples into memory in query "
                                            f"execution (more than {self.max_samples:g})")
        if self.deadline != math.inf and self.clock() > self.deadline:
            raise BudgetExceeded("timeout", f"query timed out in expression evaluation (after {self.seconds:g}s)")



def _vector(value: Value) -> Vector:
    if not isinstance(value, list) or isinstance(value, Matrix):
        raise EvalError("expected an instant vector")
    return value


def _scalar(value: Value) -> float:
    if not isinstance(value, float):
        raise EvalError("expected a scalar")
    return value


def _string(value: Value) -> str:
    if not isinstance(value, str):
        raise EvalError("expected a string")
    return value


def unique(vector: Vector) -> Vector:
    """PromQL refuses a result with two series of one label set (the names dropped, say)."""
    if len({labels for labels, _ in vector}) != len(vector):
        raise EvalError("vector cannot contain metrics with the same labelset")
    return vector


def arith(op: str, a: float, b: float) -> float:
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
        if op == "atan2":
            return math.atan2(a, b)
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


_COMPUTED = (Call, Binary, Aggregate, Unary)
COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
           "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
_RANGE_KEEPS_NAME = ("last_over_time",)


# range functions a range query evaluates at every step at once (range_steps)
BATCHED = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}


def range_steps(history: Any, node: object, times: List[float], budget: Budget) -> Dict[float, Dict[tuple, tuple]]:
    """For a range query at `times` (ascending): each rate, increase or delta over a selector's
    range (not inside a subquery, no @), evaluated at every step in one walk of each series,
    as the entries of the Evaluator's cache for each step (the same key, the same result, the
    same series recorded). A 7-day rate panel at 1,000 steps sliced a window per series per
    step, most of its time. Each step still spends its window's samples from the budget when
    it reads the entry, so a query refused before is refused at the same step. Needs the
    history's columns (tsdb.query.Loaded); a call a step could refuse for its labels (two
    series of one label set) is not batched, nor anything when every step's results together
    would pass the samples budget: those are evaluated step by step, as ever."""
    if getattr(history, "columns", None) is None or not times:
        return {}
    out: Dict[float, Dict[tuple, tuple]] = {t: {} for t in times}
    held = 0
    done = set()
    for call in _batchable(node):
        inner = unwrap(call.args[0])
        assert isinstance(inner, MatrixSelector)
        structure = _structure(call, inner)
        if structure in done:  # the same computation twice in one expression: one entry serves both
            continue
        done.add(structure)
        series = named_series(history, call)
        if series is None:
            continue  # a step may refuse it (two series of one label set): evaluated step by step
        held += len(series) * len(times)
        if held > budget.max_samples:  # every step's results are held at once: past the budget, none are
            return {}
        results: List[List[Tuple[Labels, float]]] = [[] for _ in times]
        selected: List[List[Labels]] = [[] for _ in times]
        most = [0] * len(times)  # each step's window samples, as _matrix spends them
        for labels, name, rates, counts in rates_at_steps(history, call, series, times, budget):
            for k, (value, count) in enumerate(zip(rates, counts)):
                if count:
                    selected[k].append(labels)
                    most[k] += count
                    if value is not None:
                        results[k].append((name, value))
        for k, t in enumerate(times):
            out[t][(structure, (), t)] = (tuple(results[k]), tuple(selected[k]), most[k])
    return out


def named_series(history: Any, call: Call) -> Optional[List[Tuple[Labels, Labels, Any, Any]]]:
    """The series a batchable call reads, each (labels, labels without the name, times, values),
    or None where two of them share a label set once the name is dropped (a step refuses that)."""
    inner = unwrap(call.args[0])
    assert isinstance(inner, MatrixSelector)
    series = [(labels, no_name(labels), stamps, values) for labels, stamps, values in history.columns(inner.vector)]
    if len({name for _, name, _, _ in series}) != len(series):
        return None
    return series


def rates_at_steps(history: Any, call: Call, series: List[Tuple[Labels, Labels, Any, Any]], times: List[float],
                   budget: Budget) -> Iterable[Tuple[Labels, Labels, List[Optional[float]], List[int]]]:
    """Each series' (labels, labels without the name, the call's value at each step or None,
    the samples in its window at each step), one walk of the series for every step."""
    inner = unwrap(call.args[0])
    assert isinstance(inner, MatrixSelector)
    seconds = max(inner.range, getattr(history, "min_range", 0.0))
    ends = [t - inner.vector.offset for t in times]
    is_counter, is_rate = BATCHED[call.func]
    for labels, name, stamps, values in series:
        budget.spend(0)  # the deadline
        rates, counts = fn.extrapolated_rates(stamps, values, ends, seconds, is_counter, is_rate)
        yield labels, name, rates, counts


def _structure(call: Call, inner: MatrixSelector) -> str:
    """What makes two range calls the same computation (the function, the selector, its range,
    offset and @), as one string made once per parsed node: the cache key is hashed at every
    step and for every rule, and hashing the matchers' dataclasses each time cost more than
    the lookup saved. Rules that read the same expression share it: equal structures, equal
    strings."""
    token = call.__dict__.get("_structure")
    if token is None:
        sel = inner.vector
        token = call.__dict__["_structure"] = repr((call.func, sel.name, sel.matchers, inner.range, sel.offset, sel.at))
    return token


def batchable(node: object) -> bool:
    """A rate, increase or delta over a selector's range without @: what the steps batch."""
    if not (isinstance(node, Call) and node.func in BATCHED and len(node.args) == 1):
        return False
    inner = unwrap(node.args[0])
    return isinstance(inner, MatrixSelector) and inner.vector.at is None


def _batchable(node: object) -> List[Call]:
    """The calls range_steps can batch: outside any subquery (its steps are its own)."""
    if isinstance(node, Subquery):
        return []
    found: List[Call] = [node] if isinstance(node, Call) and batchable(node) else []
    for child in children(node):
        found.extend(_batchable(child))
    return found


def bucket_groups(series: Iterable[Tuple[Labels, Any]]) -> Dict[Labels, List[Tuple[float, Any]]]:
    """histogram_quantile's groups: each series with a numeric `le` (a value, or a column of
    them), grouped by every other label (the name too), as (upper bound, value)."""
    groups: Dict[Labels, List[Tuple[float, Any]]] = {}
    for labels, v in series:
        le = dict(labels).get("le")
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        groups.setdefault(_drop(labels, ("le",)), []).append((bound, v))
    return groups


class StepMemo:
    """A subquery's inner values at its steps, kept from one evaluation of a query to the next
    (a history rule every 5 minutes over [7d:30m]: 336 steps, of which one is new): a step's
    value depends only on the samples at or before it, so once no sample can still come for
    that time (`settled`, seconds: set by the caller, who knows when its data is complete), its
    value is final. A subquery that reads past its step (an @ time, a negative offset) is
    evaluated at every step as before. Holds each subquery's last evaluation's settled steps
    only, as a list from its first step (steps are multiples of the step: a step's place is
    exact), an empty answer shared; keyed by the subquery's text, so a query parsed again
    finds its steps."""

    def __init__(self) -> None:
        self.settled = -math.inf
        self._steps: Dict[str, Tuple[int, int, List[Value]]] = {}  # key -> (first step, step (ms), values)

    def last(self, key: str, step_ms: int) -> Tuple[int, List[Value]]:
        """The first step (ms) and the values kept for the subquery `key` at this step."""
        first, step, values = self._steps.get(key, (0, 0, []))
        return (first, values) if step == step_ms else (0, [])

    def keep(self, key: str, first_ms: int, step_ms: int, values: List[Value]) -> None:
        self._steps[key] = (first_ms, step_ms, values)

    def rehome(self) -> None:
        """The kept steps copied into memory taken now. Made while a round read days of samples,
        they lie scattered among that round's freed points, and the allocator cannot give back
        an arena that holds one live object: on a week-old history ~1 MB of steps held ~12 MiB.
        Copied once the samples are gone, they fill the arenas still in use (pickle makes every
        object anew; copy.deepcopy would keep the tuples of numbers and strings it was given)."""
        self._steps = pickle.loads(pickle.dumps(self._steps, pickle.HIGHEST_PROTOCOL))

    def span(self, node: Subquery, t: float, default_step: float) -> float:
        """The part of `node`'s range, back from its end, whose steps an evaluation at `t` will
        compute (the rest it takes from here): what must be read for it. The whole range for a
        subquery that reads past its time (evaluated at every step) or was not kept."""
        step_ms = int(round((node.step or default_step) * 1000))
        if step_ms <= 0 or reads_past_its_time(node):
            return node.range
        end = t - node.offset  # (no @: it reads past its time)
        first = -(-int(round((end - node.range) * 1000)) // step_ms) * step_ms  # as _subquery counts them
        kept_from, kept = self.last(repr(node), step_ms)
        if not kept or first < kept_from:
            return node.range
        return max(0.0, min(node.range, end - (kept_from + len(kept) * step_ms) / 1000.0))


_NOTHING: Vector = []  # every kept empty step's answer, one list (never changed: steps are only read)


class Evaluator:
    """Evaluates expressions at time `t`; counts how many series its selectors matched.

    `step` is a subquery's default resolution (Prometheus uses the rule group's interval);
    `start`/`end` are what @ start() and @ end() mean (an instant query: both are t)."""

    def __init__(self, history: Samples, cache: Optional[Dict[tuple, tuple]] = None, step: float = 60.0,
                 start: Optional[float] = None, end: Optional[float] = None, budget: Optional[Budget] = None,
                 steps: Optional[StepMemo] = None):
        self.history = history
        self.steps = steps  # subqueries' settled steps from the last evaluation of the same query
        # history read from rollups (tsdb.query.Loaded): a range shorter than two of its points
        # holds at most one, and rate() would be empty; it is read as two points' span
        self.min_range: float = getattr(history, "min_range", 0.0)
        self.budget = budget if budget is not None else Budget()
        self.step = step
        self.start, self.end = start, end
        self.selected: Dict[int, List[Labels]] = {}  # by id() of the selector node: the series it returned
        # results of range functions, shared by the rules of one evaluation (two default rules
        # read avg_over_time(DCGM_FI_DEV_GPU_UTIL[30m])): computed once per cycle
        self.cache = cache if cache is not None else {}

    def eval(self, node: object, t: float) -> Value:
        self.selected = {}
        return self._eval(node, float(t))

    def _record(self, selector: VectorSelector, labels: Iterable[Labels]) -> None:
        self.selected.setdefault(id(selector), []).extend(labels)

    def _time(self, t: float, at: Optional[At], offset: float) -> float:
        """The time a selector or subquery reads at: its @ time (or t), less its offset."""
        if at is not None:
            if at.kind == "time":
                t = at.time
            else:  # an instant evaluation has no start or end of its own: both are t
                bound = self.start if at.kind == "start" else self.end
                t = t if bound is None else bound
        return t - offset

    def _eval(self, node: object, t: float) -> Value:
        if isinstance(node, _COMPUTED):  # first: a range query evaluates its operators at every step
            value = self._computed(node, t)
            if isinstance(value, list):
                self.budget.spend(len(value))  # what an operator or a function made holds memory too
            return value
        if isinstance(node, (Number, String)):
            return node.value
        if isinstance(node, VectorSelector):
            found = self.history.instant(node, self._time(t, node.at, node.offset))
            self.budget.spend(len(found))
            self._record(node, (labels for labels, _ in found))
            return found
        if isinstance(node, Paren):
            return self._eval(node.expr, t)
        if isinstance(node, MatrixSelector):
            return self._matrix(node, t)
        if isinstance(node, Subquery):
            return self._subquery(node, t)
        raise EvalError(f"cannot evaluate {type(node).__name__}")

    def _computed(self, node: object, t: float) -> Value:
        if isinstance(node, Call):
            return self._call(node, t)
        if isinstance(node, Binary):
            return self._binary(node, self._eval(node.lhs, t), self._eval(node.rhs, t))
        if isinstance(node, Aggregate):
            param = self._eval(node.param, t) if node.param is not None else None
            if isinstance(param, list):
                raise EvalError("expected a scalar or string parameter")
            try:
                return aggregate(node, _vector(self._eval(node.expr, t)), param)
            except ValueError as e:
                raise EvalError(str(e)) from None
        if isinstance(node, Unary):
            operand = self._eval(node.expr, t)
            if isinstance(operand, float):
                return -operand
            return unique([(no_name(labels), -v) for labels, v in _vector(operand)])
        raise EvalError(f"cannot evaluate {type(node).__name__}")

    # -- range vectors -------------------------------------------------------------------------

    def _matrix(self, node: MatrixSelector, t: float) -> Matrix:
        sel = node.vector
        found = self.history.range(sel, self._time(t, sel.at, sel.offset), max(node.range, self.min_range))
        self.budget.spend(sum(len(points) for _, points in found))
        self._record(sel, (labels for labels, _ in found))
        return Matrix(found)

    def _window(self, node: object, t: float) -> Tuple[Matrix, float, float]:
        """A range function's argument evaluated at t, with its window's start and end."""
        node = unwrap(node)
        if isinstance(node, MatrixSelector):
            end = self._time(t, node.vector.at, node.vector.offset)
            return self._matrix(node, t), end - max(node.range, self.min_range), end
        if isinstance(node, Subquery):
            end = self._time(t, node.at, node.offset)
            return self._subquery(node, t), end - node.range, end
        raise EvalError("expected a range vector")

    def _subquery(self, node: Subquery, t: float) -> Matrix:
        """The inner expression at every multiple of the step in [end - range, end]."""
        end = self._time(t, node.at, node.offset)
        step_ms = int(round((node.step or self.step) * 1000))
        if step_ms <= 0:
            raise EvalError("zero or negative query resolution step widths are not accepted")
        end_ms, start_ms = int(round(end * 1000)), int(round((end - node.range) * 1000))
        first = -(-start_ms // step_ms) * step_ms  # the first multiple of the step at or after start
        self.budget.spend(max(0, (end_ms - first) // step_ms + 1))  # every step, before any runs
        key, settled_ms, last_first = "", -math.inf, 0
        last: List[Value] = []
        kept: List[Value] = []
        if self.steps is not None and not reads_past_its_time(node):
            key, settled_ms = repr(node), self.steps.settled * 1000
            last_first, last = self.steps.last(key, step_ms)
        series: Dict[Labels, List[Point]] = {}
        for at_ms in range(first, end_ms + 1, step_ms):
            at = at_ms / 1000.0
            i = (at_ms - last_first) // step_ms
            value = last[i] if 0 <= i < len(last) else self._eval(node.expr, at)
            if at_ms <= settled_ms:
                kept.append(_NOTHING if isinstance(value, list) and not value else value)
            for labels, v in ([((), value)] if isinstance(value, float) else _vector(value)):
                series.setdefault(labels, []).append((at, v))
        if key:
            self.steps.keep(key, first, step_ms, kept)  # type: ignore[union-attr]  # (a key: there is a memo)
        return Matrix(series.items())

    # -- functions -----------------------------------------------------------------------------

    def _call(self, node: Call, t: float) -> Value:
        f = node.func
        if f in fn.RANGE or f == "absent_over_time":
            return self._range_call(node, t)
        if f in vf.DATE_PARTS:
            vector = _vector(self._eval(node.args[0], t)) if node.args else [((), t)]
            return unique([(no_name(labels), vf.date_part(f, v)) for labels, v in vector])
        if f in vf.MATH:
            op = vf.MATH[f]
            return unique([(no_name(labels), op(v)) for labels, v in _vector(self._eval(node.args[0], t))])
        call = self.CALLS.get(f)
        if call is None:
            raise EvalError(f"unknown function {f}")
        return call(self, node, t)

    def _scalar_call(self, node: Call, t: float) -> Value:
        vector = _vector(self._eval(node.args[0], t))
        return vector[0][1] if len(vector) == 1 else math.nan

    def _vector_function_call(self, node: Call, t: float) -> Value:
        return [((), _scalar(self._eval(node.args[0], t)))]

    def _timestamp_call(self, node: Call, t: float) -> Value:
        return self._timestamp(node.args[0], t)

    def _absent_call(self, node: Call, t: float) -> Value:
        return [] if self._eval(node.args[0], t) else [(_absent_labels(node.args[0]), 1.0)]

    def _histogram_quantile_call(self, node: Call, t: float) -> Value:
        q = _scalar(self._eval(node.args[0], t))
        return unique(self._histogram_quantile(q, _vector(self._eval(node.args[1], t))))

    def _sort_call(self, node: Call, t: float) -> Value:
        ascending = node.func == "sort"
        return sorted(_vector(self._eval(node.args[0], t)),
                      key=lambda s: (math.isnan(s[1]), s[1] if ascending else -s[1]))

    def _round_call(self, node: Call, t: float) -> Value:
        to = _scalar(self._eval(node.args[1], t)) if len(node.args) > 1 else 1.0
        return unique([(no_name(labels), vf.round_to(v, to)) for labels, v in _vector(self._eval(node.args[0], t))])

    def _clamp_call(self, node: Call, t: float) -> Value:
        f, args = node.func, node.args
        bounds = [_scalar(self._eval(a, t)) for a in args[1:]]
        low, high = (bounds[0], bounds[1]) if f == "clamp" else \
            (bounds[0], math.inf) if f == "clamp_min" else (-math.inf, bounds[0])
        if high < low:
            return []
        return unique([(no_name(labels), _go_max(low, _go_min(high, v)))
                       for labels, v in _vector(self._eval(args[0], t))])

    def _label_function_call(self, node: Call, t: float) -> Value:
        vector = _vector(self._eval(node.args[0], t))
        return unique(self._label_call(node.func, vector, [_string(self._eval(a, t)) for a in node.args[1:]]))

    def _label_call(self, f: str, vector: Vector, strings: List[str]) -> Vector:
        dst = strings[0]
        if not vf.LABEL_NAME.match(dst):
            raise EvalError(f"invalid destination label name in {f}(): {dst}")
        if f == "label_replace":
            try:
                regex.whole(strings[3])
            except regex.RegexError as e:
                raise EvalError(f"invalid regular expression in label_replace(): {strings[3]}: {e}") from None
            # the source label's name is not checked: Prometheus 2.42 reads a missing label as ""
        out = []
        for labels, v in vector:
            as_dict = dict(labels)
            changed = vf.label_replace(as_dict, dst, strings[1], strings[2], strings[3]) if f == "label_replace" \
                else vf.label_join(as_dict, dst, strings[1], strings[2:])
            out.append((labels if changed is as_dict else tuple(sorted(changed.items())), v))
        return out

    def _timestamp(self, arg: object, t: float) -> Vector:
        inner = unwrap(arg)
        if isinstance(inner, VectorSelector):  # the samples' own times, not the evaluation time
            found = self.history.instant_points(inner, self._time(t, inner.at, inner.offset))
            self._record(inner, (labels for labels, _ in found))
            return unique([(no_name(labels), point[0]) for labels, point in found])
        return unique([(no_name(labels), t) for labels, _ in _vector(self._eval(arg, t))])

    def _range_call(self, node: Call, t: float) -> Vector:
        f, args = node.func, node.args
        matrix_arg = args[1] if f == "quantile_over_time" else args[0]
        extra = tuple(_scalar(self._eval(a, t)) for a in args if a is not matrix_arg)
        inner = unwrap(matrix_arg)
        key = None
        sel: Optional[VectorSelector] = None
        if isinstance(inner, MatrixSelector):
            sel = inner.vector
            key = (_structure(node, inner), extra, t)
            if key in self.cache:
                result, selected, samples = self.cache[key]
                self.budget.spend(samples)  # as if its window were read again: the same budget either way
                self._record(sel, selected)
                return list(result)
        spent = self.budget.spent
        matrix, start, end = self._window(matrix_arg, t)
        samples = self.budget.spent - spent
        if f == "absent_over_time":
            out = [] if matrix else [(_absent_labels(matrix_arg), 1.0)]
        else:
            # predict_linear fits its line at the evaluation time, even under @ or offset (2.42)
            out = unique(self._range_function(f, matrix, extra, start, t if f == "predict_linear" else end))
        if key is not None and sel is not None:
            self.cache[key] = (tuple(out), tuple(self.selected.get(id(sel), ())), samples)
        return out

    @staticmethod
    def _range_function(f: str, matrix: Matrix, extra: Tuple[float, ...], start: float, end: float) -> Vector:
        per_series = fn.RANGE[f]
        out = []
        for labels, points in matrix:
            if not points:
                continue
            try:
                value = per_series(points, start, end, extra)
            except ValueError as e:  # holt_winters' smoothing factors out of (0, 1)
                raise EvalError(str(e)) from None
            if value is not None:
                out.append((labels if f in _RANGE_KEEPS_NAME else no_name(labels), value))
        return out

    @staticmethod
    def _histogram_quantile(q: float, vector: Vector) -> Vector:
        # output without the name: buckets of two metric names are two groups with one label
        # set, which PromQL refuses
        return [(no_name(labels), fn.bucket_quantile(q, buckets)) for labels, buckets in bucket_groups(vector).items()]

    # -- binary operators ----------------------------------------------------------------------

    def _binary(self, node: Binary, lhs: Value, rhs: Value) -> Value:
        op = node.op
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARE:
                return 1.0 if COMPARE[op](lhs, rhs) else 0.0
            return arith(op, lhs, rhs)
        if isinstance(lhs, float):
            return unique(self._vector_scalar(node, _vector(rhs), lhs, swap=True))
        if isinstance(rhs, float):
            return unique(self._vector_scalar(node, _vector(lhs), rhs, swap=False))
        matching = node.matching or Matching(False)
        if op in ("and", "or", "unless"):
            return self._set_op(op, matching, _vector(lhs), _vector(rhs))
        return unique(self._vector_vector(node, matching, _vector(lhs), _vector(rhs)))

    @staticmethod
    def _vector_scalar(node: Binary, vector: Vector, scalar: float, swap: bool) -> Vector:
        """`vector op scalar`, or `scalar op vector` when `swap`."""
        out = []
        for labels, v in vector:
            a, b = (scalar, v) if swap else (v, scalar)
            if node.op in COMPARE:
                keep = COMPARE[node.op](a, b)
                if node.bool_mod:
                    out.append((no_name(labels), 1.0 if keep else 0.0))
                elif keep:
                    out.append((labels, v))  # a filter keeps the vector's own value and name
            else:
                out.append((labels if node.op == "atan2" else no_name(labels), arith(node.op, a, b)))
        return out

    @staticmethod
    def _signature(labels: Labels, matching: Matching) -> Labels:
        if matching.on:
            return _keep(labels, matching.labels)
        return _drop(labels, matching.labels + ("__name__",))

    def _vector_vector(self, node: Binary, matching: Matching, lhs: Vector, rhs: Vector) -> Vector:
        swapped = matching.card == "one-to-many"
        if swapped:  # group_right: the right side is the "many" side; values keep their sides
            lhs, rhs = rhs, lhs
        one: Dict[Labels, Tuple[Labels, float]] = {}
        for labels, v in rhs:
            sig = self._signature(labels, matching)
            if sig in one:
                side = "left" if swapped else "right"
                raise EvalError(f"found duplicate series for the match group {dict(sig)} on the {side} hand-side of "
                                "the operation; many-to-many matching not allowed: matching labels must be unique on "
                                "one side")
            one[sig] = (labels, v)
        out: Vector = []
        matched: Dict[Labels, set] = {}
        comparison = node.op in COMPARE
        for labels, v in lhs:
            sig = self._signature(labels, matching)
            other = one.get(sig)
            if other is None:
                continue
            lv, rv = (other[1], v) if swapped else (v, other[1])
            if comparison:
                keep = COMPARE[node.op](lv, rv)
                if not keep and not node.bool_mod:
                    continue
                value = (1.0 if keep else 0.0) if node.bool_mod else lv
            else:
                value = arith(node.op, lv, rv)
            result = self._result_labels(labels, other[0], node, matching)
            if matching.card == "one-to-one":
                if sig in matched:
                    raise EvalError("multiple matches for labels: many-to-one matching must be explicit "
                                    "(group_left/group_right)")
                matched[sig] = set()
            else:
                seen = matched.setdefault(sig, set())
                if result in seen:
                    raise EvalError("multiple matches for labels: grouping labels must ensure unique matches")
                seen.add(result)
            out.append((result, value))
        return out

    @staticmethod
    def _result_labels(labels: Labels, one: Labels, node: Binary, matching: Matching) -> Labels:
        result = labels
        if node.op not in COMPARE and node.op != "atan2" or node.bool_mod:
            result = no_name(result)
        if matching.card == "one-to-one":
            result = _keep(result, matching.labels) if matching.on else _drop(result, matching.labels)
        if matching.include:
            as_dict = dict(result)
            from_one = dict(one)
            for name in matching.include:
                if from_one.get(name):
                    as_dict[name] = from_one[name]
                else:
                    as_dict.pop(name, None)
            result = tuple(sorted(as_dict.items()))
        return result

    def _set_op(self, op: str, matching: Matching, lhs: Vector, rhs: Vector) -> Vector:
        right = {self._signature(labels, matching) for labels, _ in rhs}
        if op == "and":
            return [(labels, v) for labels, v in lhs if self._signature(labels, matching) in right]
        if op == "unless":
            return [(labels, v) for labels, v in lhs if self._signature(labels, matching) not in right]
        left = {self._signature(labels, matching) for labels, _ in lhs}
        return list(lhs) + [(labels, v) for labels, v in rhs if self._signature(labels, matching) not in left]

    # Every function that is not a range function, a date part or a math function, by name: what
    # the evaluator calls with (evaluator, call, time). The parser's own table says which exist and
    # their argument types; a name here and not there is never reached.
    CALLS: Dict[str, Callable[["Evaluator", Call, float], Value]] = {
        "time": lambda ev, node, t: t,
        "pi": lambda ev, node, t: math.pi,
        "scalar": _scalar_call,
        "vector": _vector_function_call,
        "absent": _absent_call,
        "timestamp": _timestamp_call,
        # native histograms only; float series have none (Prometheus answers the same)
        **dict.fromkeys(("histogram_count", "histogram_sum", "histogram_fraction"), lambda ev, node, t: []),
        "histogram_quantile": _histogram_quantile_call,
        "sort": _sort_call,
        "sort_desc": _sort_call,
        "round": _round_call,
        **dict.fromkeys(("clamp", "clamp_min", "clamp_max"), _clamp_call),
        **dict.fromkeys(("label_replace", "label_join"), _label_function_call),
    }


def _go_max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _go_min(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)


def _absent_labels(arg: Any) -> Labels:
    """absent()'s labels: those set by an equality matcher, unless another matcher names the
    same label (a label with =~, != or !~ has no one value to report)."""
    inner = unwrap(arg)
    sel = inner.vector if isinstance(inner, MatrixSelector) else inner
    if not isinstance(sel, VectorSelector):  # absent(sum(x)): no labels to report
        return ()
    labels: Dict[str, str] = {}
    ruled_out = set()
    for m in sel.matchers:
        if m.label == "__name__":
            continue
        if m.op == "=" and m.label not in labels:
            labels[m.label] = m.value
        else:
            ruled_out.add(m.label)
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ruled_out and v))


__all__ = ["Evaluator", "EvalError", "Matrix", "Value", "Vector", "unique"]
