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

import functools
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..model import COUNTER, HISTOGRAM, SUMMARY, MetricFamily, Sample, owned_names

RESERVED_PREFIXES = ("llm_agent_",)  # the agent's own families: a target can neither replace nor add to them
# what Prometheus writes itself for each target it scrapes (and the agent keeps in its history, scrape_series.py)
RESERVED_NAMES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                            "scrape_samples_post_metric_relabeling", "scrape_series_added"})


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


@dataclass(frozen=True)
class _Shape:
    """What one family allows, worked out once per family rather than once per sample."""

    allowed: frozenset  # sample names its type allows
    label_for: Dict[str, str]  # sample name -> the label it must carry, numeric (le, quantile)
    non_negative: frozenset  # sample names whose values must be >= 0 and not NaN


def _shape(fam: MetricFamily) -> _Shape:
    return _shape_of(fam.name, fam.type)


@functools.lru_cache(maxsize=16384)  # the same families come back every scrape
def _shape_of(f: str, kind: str) -> _Shape:
    if kind == HISTOGRAM:
        hist = (f + "_bucket", f + "_sum", f + "_count", f + "_created")
        return _Shape(frozenset(hist), {f + "_bucket": "le"}, frozenset(hist[:3]))
    if kind == SUMMARY:
        summ = (f + "_sum", f + "_count", f + "_created")
        return _Shape(frozenset((f,) + summ), {f: "quantile"}, frozenset(summ[:2]) | {f})
    if kind == COUNTER:
        if f.endswith("_total"):
            return _Shape(frozenset((f, f[:-6] + "_created")), {}, frozenset((f,)))
        return _Shape(frozenset((f, f + "_total", f + "_created")), {}, frozenset((f + "_total",)))
    return _Shape(frozenset((f,)), {}, frozenset())


def _label(labels: Tuple[Tuple[str, str], ...], name: str) -> Optional[str]:
    for k, v in labels:
        if k == name:
            return v
    return None


def sample_fits(fam: MetricFamily, s: Sample, shape: Optional[_Shape] = None) -> bool:
    """Whether `s` is a sample its family's type allows, by name and special label."""
    shape = shape or _shape(fam)
    if s.name not in shape.allowed:
        return False
    special = shape.label_for.get(s.name)
    return special is None or _float(_label(s.labels, special) or "x")


def value_fits(fam: MetricFamily, s: Sample, shape: Optional[_Shape] = None) -> bool:
    """OpenMetrics: counter-like samples are neither negative nor NaN; quantiles not negative."""
    shape = shape or _shape(fam)
    if s.name not in shape.non_negative:
        return True
    if fam.type == SUMMARY and s.name == fam.name:
        return not s.value < 0  # a quantile may be NaN
    return s.value >= 0  # False for NaN too


def _series_error(labels: Tuple[Tuple[str, str], ...]) -> str:
    for k, _ in labels:
        if k.startswith("__"):
            return "reserved_label"
    if len(labels) > 1 and len({k for k, _ in labels}) != len(labels):
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
        if fam.name.startswith(RESERVED_PREFIXES) or fam.name in RESERVED_NAMES:
            drop("reserved_name", len(fam.samples))
            continue
        kept = []
        shape = _shape(fam)
        for s in fam.samples:
            reason = _series_error(s.labels) or ("" if sample_fits(fam, s, shape) else "invalid_series") or \
                ("" if value_fits(fam, s, shape) else "invalid_value")
            if reason:
                drop(reason)
            else:
                kept.append(s)
        if fam.type == COUNTER and not fam.name.endswith("_total"):
            bare = sum(1 for s in kept if s.name == fam.name)
            if 0 < bare < len(kept):
                # both `x` and `x_total` in one counter: no format can say that; keep the _total ones
                drop("invalid_series", bare)
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
