"""PromQL's syntax tree. Every node knows its result type, checked at parse time, so an
expression that loads is one that evaluates (runtime errors are PromQL's own: duplicate
series, invalid arguments)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple, Union

from ..labels import Matcher

SCALAR, VECTOR, MATRIX, STRING = "scalar", "vector", "matrix", "string"


@dataclass(frozen=True)
class At:
    """The @ modifier: a fixed time (seconds), or the query's start() or end()."""

    kind: str  # "time" | "start" | "end"
    time: float = 0.0


@dataclass
class Number:
    value: float
    type: str = SCALAR


@dataclass
class String:
    value: str
    type: str = STRING


@dataclass
class VectorSelector:
    name: str  # may be "" when only matchers select
    matchers: Tuple[Matcher, ...]
    offset: float = 0.0  # seconds; negative reads ahead
    at: Optional[At] = None
    type: str = VECTOR


@dataclass
class MatrixSelector:
    vector: VectorSelector  # carries the offset and @ of `x[5m] offset 1h`
    range: float  # seconds
    type: str = MATRIX


@dataclass
class Subquery:
    expr: "Node"
    range: float
    step: float = 0.0  # 0: the evaluation interval
    offset: float = 0.0
    at: Optional[At] = None
    type: str = MATRIX


@dataclass
class Call:
    func: str
    args: List["Node"]
    type: str = VECTOR


@dataclass
class Aggregate:
    op: str
    expr: "Node"
    grouping: Tuple[str, ...] = ()
    without: bool = False
    param: Optional["Node"] = None  # topk/bottomk/quantile: a scalar; count_values: a string
    type: str = VECTOR


@dataclass
class Matching:
    on: bool  # on(...) when True, ignoring(...) when False
    labels: Tuple[str, ...] = ()
    card: str = "one-to-one"  # one-to-one | many-to-one (group_left) | one-to-many (group_right) | many-to-many (sets)
    include: Tuple[str, ...] = ()  # group_left(...)/group_right(...) labels copied from the "one" side


@dataclass
class Binary:
    op: str
    lhs: "Node"
    rhs: "Node"
    bool_mod: bool = False
    matching: Optional[Matching] = None
    type: str = VECTOR


@dataclass
class Unary:
    op: str
    expr: "Node"
    type: str = VECTOR


@dataclass
class Paren:
    """Kept because PromQL tells `(x)[5m]` (invalid) from `x[5m]`; evaluates as its content."""

    expr: "Node"
    type: str = field(default=VECTOR)


Node = Union[Number, String, VectorSelector, MatrixSelector, Subquery, Call, Aggregate, Binary, Unary, Paren]


def children(node: object) -> List[object]:
    if isinstance(node, MatrixSelector):
        return [node.vector]
    if isinstance(node, Call):
        return list(node.args)
    if isinstance(node, Aggregate):
        return [node.expr] if node.param is None else [node.param, node.expr]
    if isinstance(node, (Unary, Paren, Subquery)):
        return [node.expr]
    if isinstance(node, Binary):
        return [node.lhs, node.rhs]
    return []


def unwrap(node: object) -> object:
    while isinstance(node, Paren):
        node = node.expr
    return node


def selectors(node: object, out: Optional[List[Tuple[VectorSelector, float]]] = None,
              outer: float = 0.0, span: Optional[Callable[[Subquery], float]] = None) -> List[Tuple[VectorSelector, float]]:
    """The (selector, reach) pairs an expression reads: how far back from the evaluation time
    each needs samples (range + offset, plus that of every subquery around it; the lookback
    is the History's to add). A fixed `@` time reaches arbitrarily far: infinity.
    `span`: how much of a subquery's range (one not inside another) will be evaluated, where
    its steps before that are known already (StepMemo); by default all of it."""
    out = [] if out is None else out
    if isinstance(node, VectorSelector):
        out.append((node, _reach(outer, 0.0, node.offset, node.at)))
    elif isinstance(node, MatrixSelector):
        out.append((node.vector, _reach(outer, node.range, node.vector.offset, node.vector.at)))
    elif isinstance(node, Subquery):
        rng = span(node) if span is not None else node.range
        selectors(node.expr, out, _reach(outer, rng, node.offset, node.at))  # (inside: its whole range at each step)
    else:
        for child in children(node):
            selectors(child, out, outer, span)
    return out


def _reach(outer: float, rng: float, offset: float, at: Optional[At]) -> float:
    if at is not None and at.kind == "time":
        return float("inf")
    return outer + rng + max(offset, 0.0)


def label_sources(node: object) -> List[VectorSelector]:
    """The selectors whose series give the result its labels: an alert "came from" these.
    `x > 0 and on(k) y > 0` keeps x's series (y only filters); `a or b` may come from either;
    aggregations and functions pass their argument's; `absent()` and numbers come from none."""
    if isinstance(node, VectorSelector):
        return [node]
    if isinstance(node, MatrixSelector):
        return [node.vector]
    if isinstance(node, Call):
        if node.func in ("absent", "absent_over_time", "vector", "time", "pi"):
            return []
        return [s for a in node.args if getattr(a, "type", SCALAR) in (VECTOR, MATRIX) for s in label_sources(a)]
    if isinstance(node, (Aggregate, Unary, Paren, Subquery)):
        return label_sources(node.expr)
    if isinstance(node, Binary):
        if node.op == "or":
            return label_sources(node.lhs) + label_sources(node.rhs)
        if node.lhs.type == SCALAR:
            return label_sources(node.rhs)
        if node.matching is not None and node.matching.card == "one-to-many":
            return label_sources(node.rhs)
        return label_sources(node.lhs)  # and, unless, one-to-one and many-to-one keep the left side's series
    return []


def reads_past_its_time(node: object) -> bool:
    """Whether evaluating `node` at t can read samples after t: an @ modifier or a negative
    offset anywhere in it (the history then loads past the query's end; a subquery's step is
    then not settled when its time is)."""
    stack = [node]
    while stack:  # without recursion, as depth()
        current = stack.pop()
        if getattr(current, "at", None) is not None or getattr(current, "offset", 0.0) < 0:
            return True
        stack.extend(children(current))
    return False


def depth(node: object) -> int:
    """How deeply the tree nests, counted without recursion (a 5,000-term sum is 5,000 deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        for child in children(current):
            stack.append((child, level + 1))
    return deepest
