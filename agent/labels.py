"""Label sets and matchers, as Prometheus' model/labels: the leaf that PromQL, the rules,
silences, inhibition, routing and the history file all match with. Imports nothing of the agent
but its RE2 wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

from . import regex

Labels = Tuple[Tuple[str, str], ...]  # sorted (name, value) pairs, __name__ included where there is one


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str


def _match_one(m: Matcher, value: str) -> bool:
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    hit = regex.fullmatch(m.value, value)
    return hit if m.op == "=~" else not hit


def matches(matchers: Iterable[Matcher], labels: Dict[str, str]) -> bool:
    """PromQL matching: a missing label has the empty value; regexes are anchored (RE2)."""
    return all(_match_one(m, labels.get(m.label, "")) for m in matchers)
