"""What the evaluator reads, and how far back an instant selector looks."""

from __future__ import annotations

from typing import List, Protocol, Sequence, Tuple

from ..labels import Labels
from .ast import VectorSelector

LOOKBACK = 300.0  # Prometheus' default lookback delta
Point = Tuple[float, float]


class Samples(Protocol):
    """The rules' in-memory History (rules/history.py), or a query's load from the history file
    (tsdb.query.Loaded)."""

    def instant(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, float]]: ...

    def instant_points(self, sel: VectorSelector, t: float) -> List[Tuple[Labels, Point]]: ...

    def range(self, sel: VectorSelector, t: float, seconds: float) -> Sequence[Tuple[Labels, Sequence[Point]]]: ...
