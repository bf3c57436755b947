"""A target's /metrics is never trusted: whatever it sends, the agent's own exposition stays
one Prometheus accepts (in text 0.0.4 and OpenMetrics), and the agent's own families stay its own.

Two steps, both pure:
- `check_limits`: Prometheus' per-target `sample_limit`, `label_limit`,
  `label_name_length_limit` and `label_value_length_limit`. Exceeding one fails that scrape
  with its reason, as Prometheus does (the parser already stopped at `sample_limit`, so a body
  of a million tiny series never becomes a million objects).
- `sanitize`: drops, and counts by reason, each series Prometheus would reject or that would
  break the exposition: a family under the agent's own prefix, a `__` label, a label given
  twice, a sample whose name does not fit its family's type (a histogram bucket without a
  numeric `le`), a negative or NaN counter, and a family whose names collide with an earlier
  one's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Set, Tuple

from ..model import COUNTER, HISTOGRAM, SUMMARY, MetricFamily, Sample, owned_names

RESERVED_PREFIXES = ("llm_agent_",)  # the agent's own families: a target can neither replace nor add to them


@dataclass(frozen=True)
class Limits:
    """Per-target limits; 0 means none (Prometheus' meaning)."""

    sample_limit: int = 50_000
    label_limit: int = 64
    label_name_length_limit: int = 256
    label_value_length_limit: int = 4096


class LimitExceeded(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_limits(families: Iterable[MetricFamily], limits: Limits, extra_labels: int = 0) -> None:
    """Raise LimitExceeded for the first limit the scrape breaks (labels counted with the
    `extra_labels` the agent adds, as Prometheus counts target labels)."""
    n = 0
    for fam in families:
        n += len(fam.samples)
        if limits.sample_limit and n > limits.sample_limit:
            raise LimitExceeded("sample_limit", f"more than sample_limit {limits.sample_limit} samples")
        for s in fam.samples:
            if limits.label_limit and len(s.labels) + extra_labels > limits.label_limit:
                raise LimitExceeded("label_limit", f"{s.name} has {len(s.labels) + extra_labels} labels, "
                                                   f"over label_limit {limits.label_limit}")
            for k, v in s.labels:
                if limits.label_name_length_limit and len(k) > limits.label_name_length_limit:
                    raise LimitExceeded("label_name_length_limit", f"{s.name} has a label name longer than "
                                                                   f"{limits.label_name_length_limit}")
                if limits.label_value_length_limit and len(v) > limits.label_value_length_limit:
                    raise LimitExceeded("label_value_length_limit", f"{s.name} label {k} is longer than "
                                                                    f"{limits.label_value_length_limit}")


def _float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sample_fits(fam: MetricFamily, s: Sample) -> bool:
    """Whether `s` is a sample its family's type allows, by name and special label."""
    f, name, labels = fam.name, s.name, dict(s.labels)
    if fam.type == HISTOGRAM:
        if name == f + "_bucket":
            return _float(labels.get("le", "x"))
        return name in (f + "_sum", f + "_count", f + "_created")
    if fam.type == SUMMARY:
        if name == f:
            return _float(labels.get("quantile", "x"))
        return name in (f + "_sum", f + "_count", f + "_created")
    if fam.type == COUNTER:
        if f.endswith("_total"):
            return name in (f, f[:-6] + "_created")
        return name in (f, f + "_total", f + "_created")
    return name == f


_COUNTER_LIKE = ("_total", "_sum", "_count", "_bucket")


def value_fits(fam: MetricFamily, s: Sample) -> bool:
    """OpenMetrics: counter-like samples are neither negative nor NaN; quantiles not negative."""
    v = s.value
    if fam.type in (COUNTER, HISTOGRAM, SUMMARY) and s.name != fam.name and s.name.endswith(_COUNTER_LIKE) \
            or fam.type == COUNTER and fam.name.endswith("_total"):
        return v >= 0  # False for NaN too
    if fam.type == SUMMARY and s.name == fam.name:
        return not v < 0
    return True


def _series_error(labels: Tuple[Tuple[str, str], ...]) -> str:
    names = [k for k, _ in labels]
    if any(k.startswith("__") for k in names):
        return "reserved_label"
    if len(set(names)) != len(names):
        return "duplicate_label"
    return ""


def sanitize(families: List[MetricFamily]) -> Tuple[List[MetricFamily], Dict[str, int]]:
    """The families and series that are safe to expose, and what was dropped, by reason."""
    dropped: Dict[str, int] = {}

    def drop(reason: str, n: int = 1) -> None:
        dropped[reason] = dropped.get(reason, 0) + n

    out: List[MetricFamily] = []
    claimed: Set[str] = set()
    for fam in families:
        if fam.name.startswith(RESERVED_PREFIXES):
            drop("reserved_name", len(fam.samples))
            continue
        kept = []
        for s in fam.samples:
            reason = _series_error(s.labels) or ("" if sample_fits(fam, s) else "invalid_series") or \
                ("" if value_fits(fam, s) else "invalid_value")
            if reason:
                drop(reason)
            else:
                kept.append(s)
        if fam.type == COUNTER and {s.name for s in kept} & {fam.name} and {s.name for s in kept} - {fam.name}:
            # both `x` and `x_total` in one counter: no format can say that; keep the _total ones
            drop("invalid_series", sum(1 for s in kept if s.name == fam.name))
            kept = [s for s in kept if s.name != fam.name]
        if not kept:
            continue
        fam.samples = kept
        names = owned_names(fam)
        if names & claimed:
            drop("name_clash", len(kept))
            continue
        claimed |= names
        out.append(fam)
    return out, dropped
