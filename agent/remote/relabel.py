"""write_relabel, as Prometheus' `write_relabel_configs` for the four actions a box needs:
`keep` and `drop` series whose `source_labels` (joined by `separator`) match `regex` fully,
`labeldrop` and `labelkeep` label names that match it. Patterns are RE2, as Prometheus';
the configuration validated them (config/schema.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import regex

Labels = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class Relabel:
    action: str
    regex: str
    source_labels: Tuple[str, ...] = ("__name__",)
    separator: str = ";"

    def apply(self, labels: Labels) -> Optional[Labels]:
        """The labels after this step, or None when the series is dropped."""
        pattern = regex.anchored(self.regex)  # compiled once, its answers cached (bounded)
        if self.action in ("keep", "drop"):
            as_dict = dict(labels)
            value = self.separator.join(as_dict.get(name, "") for name in self.source_labels)
            return labels if pattern.fullmatch(value) == (self.action == "keep") else None
        keep = self.action == "labelkeep"
        return tuple((k, v) for k, v in labels if k == "__name__" or pattern.fullmatch(k) == keep)


def from_settings(rules: Sequence[Dict[str, Any]]) -> List[Relabel]:
    return [Relabel(r["action"], r["regex"], tuple(r["source_labels"]), r["separator"]) for r in rules]


def relabel(rules: Sequence[Relabel], labels: Labels) -> Optional[Labels]:
    for rule in rules:
        after = rule.apply(labels)
        if after is None:
            return None
        labels = after
    return labels
