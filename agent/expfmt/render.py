"""Render metric families as text 0.0.4 or OpenMetrics 1.0 bytes."""

from __future__ import annotations

import math
import threading
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

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


def _prefix(name: str, labels: Labels) -> str:
    if not labels:
        return name + " "
    lbl = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
    return f"{name}{{{lbl}}} "


def _line(prefix: str, v: float) -> str:
    # format_value's common case inline: most values are whole numbers (counters, bytes)
    return prefix + (str(int(v)) if v.is_integer() and -1e15 < v < 1e15 else format_value(v))


def _moved(line: str, v: float) -> str:
    return _line(line[:line.rfind(" ") + 1], v)  # a value's text has no space; a label's may


def _series(fam: MetricFamily) -> List[str]:
    """The family's series lines, made afresh (a one-off render; the exporter's Renderer remembers)."""
    return [_line(_prefix(s.name, s.labels), s.value) for s in fam.samples]


class _Block:
    """A family as the last render wrote it: its series (names, labels, values), their lines,
    those joined, and its header in each format asked for."""

    __slots__ = ("names", "labels", "values", "lines", "data", "kind", "headers")

    def __init__(self, names: List[str], labels: List[Labels], values: List[float], lines: List[str],
                 kind: Tuple[str, str]):
        self.names = names
        self.labels = labels
        self.values = values
        self.lines = lines
        self.data = "\n".join(lines).encode("utf-8")
        self.kind = kind  # (type, help): the header's inputs besides the names
        self.headers: Dict[Tuple[str, bool], bytes] = {}


def _block(fam: MetricFamily, was: Optional[_Block]) -> _Block:
    """The family's series block, from what the last render wrote where it can: the same
    series in the same order (label tuples are shared, model.intern_labels, so comparing the
    lists is mostly `is`) with the same values is the last block itself; moved values rewrite
    only their lines; other series find their lines by name and labels."""
    samples = fam.samples
    names = [s.name for s in samples]
    labels = [s.labels for s in samples]
    values = [s.value for s in samples]
    kind = (fam.type, fam.help)
    if was is not None and was.labels == labels and was.names == names:
        if was.values == values and was.kind == kind:  # NaN never equals itself: rewritten every time
            return was
        lines = list(was.lines)
        for i, (old, v) in enumerate(zip(was.values, values)):
            if old != v or v != v:
                lines[i] = _moved(lines[i], v)
    else:
        known = {} if was is None else dict(zip(zip(was.names, was.labels), zip(was.lines, was.values)))
        lines = []
        for name, lbl, v in zip(names, labels, values):
            entry = known.get((name, lbl))
            if entry is None:
                lines.append(_line(_prefix(name, lbl), v))
            else:
                lines.append(entry[0] if entry[1] == v else _moved(entry[0], v))
    block = _Block(names, labels, values, lines, kind)
    if was is not None and was.kind == kind:
        block.headers = was.headers
    return block


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
    """Renders snapshots, remembering from one to the next each family's block (labels rarely
    change between cycles, and many values hold: escaping, joining and encoding them was most
    of the rendering cost) and headers. A second format of the same snapshot takes the series
    blocks out of the first one's bytes (`first`): only the headers differ. The memo holds the
    families of the last render only (no growth as series churn), and no snapshot or body."""

    def __init__(self) -> None:
        self._blocks: Dict[str, _Block] = {}
        self._lock = threading.Lock()  # the exporter renders on a scrape, from its request threads
        self.last_size = 0  # bytes of the last body rendered

    def render(self, families: Sequence[MetricFamily], fmt: str,
               first: Optional[Tuple[bytes, Spans]] = None) -> Tuple[bytes, Spans]:
        """One format ("text" or "openmetrics") and where each family's series are in it: a
        scrape asks for one, and a 32-target host's body is megabytes. `first`: the same
        families already rendered in the other format, and its spans."""
        header = _openmetrics_header if fmt == "openmetrics" else _text_header
        with self._lock:
            if first is None:
                last, self._blocks = self._blocks, {}  # the last render's families not in this one are dropped
                memo = self._blocks
                for fam in families:
                    if fam.samples:
                        memo[fam.name] = _block(fam, last.get(fam.name))
                blocks = [memo[fam.name].data if fam.samples else b"" for fam in families]
            else:
                body, spans = first
                blocks = [body[a:b] for a, b in spans]
            out: List[bytes] = []
            spans = []
            at = 0
            for fam, block in zip(families, blocks):
                if block:
                    head = self._header(fam, fmt, header)
                    out.append(head)
                    at += len(head) + 1
                    out.append(block)
                    spans.append((at, at + len(block)))
                    at += len(block) + 1
                else:
                    spans.append((0, 0))
        out.append(b"# EOF\n" if fmt == "openmetrics" else b"")
        body = b"\n".join(out)
        self.last_size = len(body)
        return body, spans

    def _header(self, fam: MetricFamily, fmt: str, header: Callable[[MetricFamily], List[str]]) -> bytes:
        block = self._blocks.get(fam.name)
        if block is None or block.kind != (fam.type, fam.help):  # not remembered: made afresh
            return "\n".join(header(fam)).encode("utf-8")
        # an OpenMetrics counter without `_total` is declared by what its samples are called
        key = fmt, fam.type == COUNTER and not fam.name.endswith("_total") and any(s.name == fam.name for s in fam.samples)
        head = block.headers.get(key)
        if head is None:
            head = block.headers[key] = "\n".join(header(fam)).encode("utf-8")
        return head


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
