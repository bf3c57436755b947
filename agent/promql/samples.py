"""What the evaluator reads, and how far back an instant selector looks."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Any, Iterator, List, Protocol, Sequence, Tuple

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


class Window(Sequence[Point]):
    """A series' samples, oldest first, as two arrays of doubles read as (t, v) points: a
    range's slice of the rules' in-memory history, or a series a query loaded from the history
    file. Range functions that need only the values (rate, increase, *_over_time) take `values`
    as it is, instead of a tuple a point made for every sample of every window each cycle."""

    __slots__ = ("times", "values")

    def __init__(self, times: array, values: array):
        self.times = times
        self.values = values

    @classmethod
    def of(cls, points: Sequence[Point]) -> "Window":
        """(t, v) points as a Window: a Window as it is, a list as two arrays."""
        if isinstance(points, Window):
            return points
        return cls(array("d", [p[0] for p in points]), array("d", [p[1] for p in points]))

    def between(self, start: float, end: float) -> "Window":
        """The samples in [start, end], both ends included (Prometheus 2.x)."""
        a, b = bisect_left(self.times, start), bisect_right(self.times, end)
        return Window(self.times[a:b], self.values[a:b])

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return list(zip(self.times[i], self.values[i]))
        return (self.times[i], self.values[i])

    def __iter__(self) -> Iterator[Point]:
        return zip(self.times, self.values)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, Window)) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable arrays: not a key

    def __repr__(self) -> str:
        return f"Window({list(self)!r})"
