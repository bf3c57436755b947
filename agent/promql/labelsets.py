"""A label set less some of its names, remembered.

The rules ask the same few hundred series the same questions every cycle: their labels without
__name__, or only those a `by` or an `on` names. Building the tuple again each time was a fifth
of a binary operation's cost (GpuOutlier: 124,500 matching signatures a 500 evaluations); a hit
costs a quarter of the build. Each memo is bounded (least recently used out), so a query over
20,000 series leaves at most REMEMBERED entries behind, not one per series.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

Labels = Tuple[Tuple[str, str], ...]

REMEMBERED = 2048  # label sets per memo: the defaults' rules read ~300 series (8 GPUs, 4 servers)


@lru_cache(maxsize=REMEMBERED)
def no_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != "__name__")


@lru_cache(maxsize=REMEMBERED)
def keep(labels: Labels, names: Tuple[str, ...]) -> Labels:
    """Only the labels in `names`."""
    return tuple(kv for kv in labels if kv[0] in names)


@lru_cache(maxsize=REMEMBERED)
def drop(labels: Labels, names: Tuple[str, ...]) -> Labels:
    """The labels not in `names`."""
    return tuple(kv for kv in labels if kv[0] not in names)
