"""Render metric families as text 0.0.4 or OpenMetrics 1.0 bytes."""

from __future__ import annotations

import math
import threading
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..model import COUNTER, UNTYPED, Labels, MetricFamily

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


# sample name -> labels -> (the series' last line, its value): the line is reused while the value
# holds; by name, so that the memo holds no (name, labels) key per series
Lines = Dict[str, Dict[Labels, Tuple[str, float]]]
_NONE: Dict[Labels, Tuple[str, float]] = {}


def _prefix(name: str, labels: Labels) -> str:
    if not labels:
        return name + " "
    lbl = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
    return f"{name}{{{lbl}}} "


def _line(prefix: str, v: float) -> str:
    # format_value's common case inline: most values are whole numbers (counters, bytes)
    return prefix + (str(int(v)) if v.is_integer() and -1e15 < v < 1e15 else format_value(v))


def _series(fam: MetricFamily) -> List[str]:
    """The family's series lines, made afresh (a one-off render; the exporter's Renderer remembers)."""
    return [_line(_prefix(s.name, s.labels), s.value) for s in fam.samples]


def _block(fam: MetricFamily, last: Lines, lines_now: Lines) -> str:
    """The family's series lines as one string, from what the last render wrote where it can."""
    lines = []
    name, was, now = "", _NONE, _NONE
    for s in fam.samples:
        if s.name != name:  # a family's samples mostly share one name
            name, was, now = s.name, last.get(s.name, _NONE), lines_now.setdefault(s.name, {})
        v = s.value
        entry = was.get(s.labels)
        if entry is None:
            entry = (_line(_prefix(s.name, s.labels), v), v)
        elif entry[1] != v:  # moved (NaN never equals itself: rewritten every time)
            line = entry[0]
            entry = (_line(line[:line.rfind(" ") + 1], v), v)  # a value's text has no space; a label's may
        now[s.labels] = entry
        lines.append(entry[0])
    return "\n".join(lines)


def _text_header(fam: MetricFamily) -> List[str]:
    help_ = fam.help.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {fam.name} {help_}", f"# TYPE {fam.name} {fam.type}"]


def _openmetrics_header(fam: MetricFamily) -> List[str]:
    # A counter's family name drops `_total`; a counter whose samples lack `_total`
    # (dcgm-exporter's DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION) is declared `unknown` so its
    # series keep the exact names dashboards use.
    name, mtype = fam.name, fam.type
    if mtype == COUNTER:
        if name.endswith("_total"):
            name = name[:-6]
        elif any(s.name == name for s in fam.samples):
            mtype = UNTYPED
        # else: family `x` with samples `x_total` (a server that wrote TYPE without the suffix)
    if mtype == UNTYPED:
        mtype = "unknown"
    help_ = fam.help.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return [f"# HELP {name} {help_}", f"# TYPE {name} {mtype}"]


Spans = List[Tuple[int, int]]  # each family's series block in a body, as (start, end)


class Renderer:
    """Renders snapshots, remembering from one to the next each series' line while its value
    holds (labels rarely change between cycles; their escaping and joining were most of the
    rendering cost). A second format of the same snapshot takes the series blocks out of the
    first one's bytes (`first`): only the headers differ. The memo holds the series of the last
    render only (no growth as series churn), and no snapshot or body."""

    def __init__(self) -> None:
        self._lines: Lines = {}
        self._lock = threading.Lock()  # the exporter renders on a scrape, from its request threads

    def render(self, families: Sequence[MetricFamily], fmt: str,
               first: Optional[Tuple[bytes, Spans]] = None) -> Tuple[bytes, Spans]:
        """One format ("text" or "openmetrics") and where each family's series are in it: a
        scrape asks for one, and a 32-target host's body is megabytes. `first`: the same
        families already rendered in the other format, and its spans."""
        header = _openmetrics_header if fmt == "openmetrics" else _text_header
        if first is not None:
            body, spans = first
            blocks = [body[a:b] for a, b in spans]
        else:
            with self._lock:
                last, self._lines = self._lines, {}  # the last render's series not in this one are dropped
                blocks = [_block(fam, last, self._lines).encode("utf-8") if fam.samples else b"" for fam in families]
        out: List[bytes] = []
        spans = []
        at = 0
        for fam, block in zip(families, blocks):
            if block:
                for line in header(fam):
                    out.append(line.encode("utf-8"))
                    at += len(out[-1]) + 1
                out.append(block)
                spans.append((at, at + len(block)))
                at += len(block) + 1
            else:
                spans.append((0, 0))
        out.append(b"# EOF\n" if fmt == "openmetrics" else b"")
        return b"\n".join(out), spans


def render_one(families: Iterable[MetricFamily], fmt: str) -> bytes:
    header = _openmetrics_header if fmt == "openmetrics" else _text_header
    lines: List[str] = []
    for fam in families:
        if fam.samples:
            lines += header(fam)
            lines += _series(fam)
    lines.append("# EOF\n" if fmt == "openmetrics" else "")
    return "\n".join(lines).encode("utf-8")


def render_both(families: Iterable[MetricFamily]) -> Tuple[bytes, bytes]:
    """(text 0.0.4, OpenMetrics 1.0) at once: the series lines are the same in both formats,
    so each is formatted once."""
    text: List[str] = []
    om: List[str] = []
    for fam in families:
        if not fam.samples:
            continue
        series = _series(fam)
        text += _text_header(fam)
        text += series
        om += _openmetrics_header(fam)
        om += series
    text.append("")
    om.append("# EOF\n")
    return "\n".join(text).encode("utf-8"), "\n".join(om).encode("utf-8")


def render_text(families: Iterable[MetricFamily]) -> bytes:
    """The text format 0.0.4, as every Prometheus version scrapes it."""
    return render_both(families)[0]


def render_openmetrics(families: Iterable[MetricFamily]) -> bytes:
    """OpenMetrics 1.0 (what Prometheus asks for first)."""
    return render_both(families)[1]
