"""The PromQL subset's syntax tree. Every node knows its result type, checked at parse time,
so an expression that loads is one that evaluates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

SCALAR, VECTOR, MATRIX = "scalar", "vector", "matrix"


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str


@dataclass
class Number:
    value: float
    type: str = SCALAR


@dataclass
class VectorSelector:
    name: str  # may be "" when only matchers select
    matchers: Tuple[Matcher, ...]
    type: str = VECTOR


@dataclass
class MatrixSelector:
    vector: VectorSelector
    range: float  # seconds
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
    type: str = VECTOR


@dataclass
class Matching:
    on: bool  # on(...) when True, ignoring(...) when False
    labels: Tuple[str, ...] = ()


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


Node = Union[Number, VectorSelector, MatrixSelector, Call, Aggregate, Binary, Unary]


def selectors(node: object, out: Optional[List[Tuple[VectorSelector, float]]] = None) -> List[Tuple[VectorSelector, float]]:
    """The (selector, range seconds) pairs an expression reads, for the history to keep."""
    out = [] if out is None else out
    if isinstance(node, VectorSelector):
        out.append((node, 0.0))
    elif isinstance(node, MatrixSelector):
        out.append((node.vector, node.range))
    elif isinstance(node, Call):
        for a in node.args:
            selectors(a, out)
    elif isinstance(node, (Aggregate, Unary)):
        selectors(node.expr, out)
    elif isinstance(node, Binary):
        selectors(node.lhs, out)
        selectors(node.rhs, out)
    return out


def label_sources(node: object) -> List[VectorSelector]:
    """The selectors whose series give the result its labels: an alert "came from" these.
    `x > 0 and on(k) y > 0` keeps x's series (y only filters); `a or b` may come from either;
    aggregations and functions pass their argument's; `absent()` and numbers come from none."""
    if isinstance(node, VectorSelector):
        return [node]
    if isinstance(node, MatrixSelector):
        return [node.vector]
    if isinstance(node, Call):
        if node.func == "absent":
            return []
        return [s for a in node.args if getattr(a, "type", SCALAR) != SCALAR for s in label_sources(a)]
    if isinstance(node, (Aggregate, Unary)):
        return label_sources(node.expr)
    if isinstance(node, Binary):
        if node.op == "or":
            return label_sources(node.lhs) + label_sources(node.rhs)
        if node.lhs.type == SCALAR:
            return label_sources(node.rhs)
        return label_sources(node.lhs)  # and, unless, and one-to-one matching keep the left side's series
    return []


def depth(node: object) -> int:
    """How deeply the tree nests, counted without recursion (a 5,000-term sum is 5,000 deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        for child in _children(current):
            stack.append((child, level + 1))
    return deepest


def _children(node: object) -> List[object]:
    if isinstance(node, MatrixSelector):
        return [node.vector]
    if isinstance(node, Call):
        return list(node.args)
    if isinstance(node, (Aggregate, Unary)):
        return [node.expr]
    if isinstance(node, Binary):
        return [node.lhs, node.rhs]
    return []
