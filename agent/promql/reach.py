"""How far back a PromQL expression reads, and whether the in-memory history can answer it:
rule files, the configuration and the engine ask before a rule runs (kept apart from the rule
file reader so that the engine never loads PyYAML)."""

from __future__ import annotations

from typing import List, Optional

from ..timefmt import format_duration
from .ast import Subquery, children, selectors
from .parser import parse

MAX_SUBQUERY_STEPS = 11_000  # Prometheus' limit on points per series of a range query


def reach_problem(expr: str, limit: float) -> Optional[str]:
    """Why a rule cannot run on the in-memory history (it reads further back than `limit`, or
    a fixed @ time, or a subquery of too many steps); None if it can."""
    try:
        tree = parse(expr)
    except ValueError:
        return None  # reported by the parser's own check
    for sel, reach in selectors(tree):
        if sel.at is not None and sel.at.kind == "time":
            return ("reads a fixed time (@ <timestamp>); the in-memory history keeps only the last "
                    f"{format_duration(limit)} ([alerting] memory_history)")
        if reach > limit:
            return (f"reads {format_duration(reach)} back (range + offset), further than the in-memory history keeps "
                    f"([alerting] memory_history = {format_duration(limit)}); raise it (memory grows with the series "
                    "the rule reads) or shorten the rule")
    for node in _subqueries(tree):
        if node.at is not None and node.at.kind == "time":
            return "reads a fixed time (@ <timestamp>) in a subquery; the in-memory history keeps only recent samples"
        if node.step and node.range / node.step > MAX_SUBQUERY_STEPS:
            return (f"its subquery [{format_duration(node.range)}:{format_duration(node.step)}] evaluates "
                    f"{int(node.range / node.step):,} steps a cycle; at most {MAX_SUBQUERY_STEPS:,}")
    return None


def _subqueries(node: object) -> List[Subquery]:
    out = [node] if isinstance(node, Subquery) else []
    for child in children(node):
        out.extend(_subqueries(child))
    return out
