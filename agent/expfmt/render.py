"""Render metric families as text 0.0.4 or OpenMetrics 1.0 bytes."""

from __future__ import annotations

import math
from typing import Iterable, List

from ..model import COUNTER, UNTYPED, MetricFamily

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def format_value(v: float) -> str:
    """A value as Prometheus writes it: integers without a fraction, +Inf, -Inf, NaN."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _escape_label(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def _series(lines: List[str], fam: MetricFamily) -> None:
    for s in fam.samples:
        if s.labels:
            lbl = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels)
            lines.append(f"{s.name}{{{lbl}}} {format_value(s.value)}")
        else:
            lines.append(f"{s.name} {format_value(s.value)}")


def render_text(families: Iterable[MetricFamily]) -> bytes:
    """The text format 0.0.4, as every Prometheus version scrapes it."""
    lines: List[str] = []
    for fam in families:
        if not fam.samples:
            continue
        help_ = fam.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {fam.name} {help_}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        _series(lines, fam)
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def render_openmetrics(families: Iterable[MetricFamily]) -> bytes:
    """OpenMetrics 1.0. A counter's family name drops `_total`; a counter whose samples lack
    `_total` (dcgm-exporter's DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, llama-server's
    n_tokens_max) is declared `unknown` so its series keep the exact names dashboards use."""
    lines: List[str] = []
    for fam in families:
        if not fam.samples:
            continue
        name, mtype = fam.name, fam.type
        if mtype == COUNTER:
            if name.endswith("_total"):
                name = name[:-6]
            else:
                mtype = UNTYPED
        if mtype == UNTYPED:
            mtype = "unknown"
        help_ = fam.help.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {mtype}")
        _series(lines, fam)
    lines.append("# EOF\n")
    return "\n".join(lines).encode("utf-8")
