"""Small inline SVG charts for the HTML report: no script, no external file, so the report
opens offline and in a mail client. Every label is escaped (they come from targets).

Each chart carries its title with its unit, a legend where it has more than one series, and
labels that cannot overlap: the x labels are thinned to what fits, a single point is drawn as
a point, and per-server figures are horizontal bars, one row each, whatever the number of
servers (a row's name is shortened, never drawn over its neighbour's)."""

from __future__ import annotations

import math
from html import escape
from typing import List, Optional, Sequence, Tuple

COLOURS = ("#2b6cb0", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#319795", "#c05621", "#718096")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 220, 52, 22, 40, 8
CHAR = 6.6  # px per character at the charts' 11px font (a generous average: labels are spaced by it)
ROW = 20  # px per horizontal bar
NAME_CHARS = 28  # a server's name in a bar chart, shortened past this


def _scale(values: Sequence[float], floor_zero: bool = True) -> Tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if floor_zero:
        lo = min(lo, 0.0)
    return (lo, hi if hi > lo else lo + 1.0)


def _number(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.1f}G"
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}" if a >= 10 else f"{v:.2g}"


def _short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def _open(title: str, height: int) -> List[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="{escape(title)}" style="width:100%;max-width:{WIDTH}px;height:auto;font:11px sans-serif">',
            f'<text class="title" x="4" y="15" font-weight="bold" font-size="13" fill="#1d1f23">{escape(title)}</text>']


def _legend(names: Sequence[str]) -> List[str]:
    """Below the title, left to right, each name after a swatch of its colour."""
    out, x = [], 4.0
    for k, name in enumerate(names):
        colour = COLOURS[k % len(COLOURS)]
        shown = _short(name, 24)
        out.append(f'<rect x="{x:.1f}" y="24" width="10" height="10" fill="{colour}"/>'
                   f'<text class="legend" x="{x + 14:.1f}" y="33" fill="#333">{escape(shown)}</text>')
        x += 14 + len(shown) * CHAR + 12
    return out


def _frame(lo: float, hi: float, labels: Sequence[str], title: str) -> List[str]:
    out = _open(title, HEIGHT)
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = TOP + (1 - i / 4) * (HEIGHT - TOP - BOTTOM)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{_number(v)}</text>')
    n = len(labels)
    slot = (WIDTH - LEFT - RIGHT) / max(n, 1)
    widest = max((len(label) for label in labels), default=1) * CHAR + 8
    step = max(1, math.ceil(widest / slot))  # every step-th label: each has room for the widest
    for i in range(0, n, step):
        x = LEFT + (i + 0.5) * slot
        out.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="middle" fill="#666">'
                   f'{escape(labels[i])}</text>')
    return out


def _y(v: float, lo: float, hi: float) -> float:
    return TOP + (1 - (v - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM)


def bars(labels: Sequence[str], values: Sequence[Optional[float]], title: str) -> str:
    """One bar per x label (days)."""
    lo, hi = _scale([v for v in values if v is not None])
    out = _frame(lo, hi, labels, title)
    width = (WIDTH - LEFT - RIGHT) / max(len(values), 1)
    base = _y(0.0, lo, hi)
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            continue
        y = _y(v, lo, hi)
        out.append(f'<rect x="{LEFT + i * width + width * 0.15:.1f}" y="{min(y, base):.1f}" width="{width * 0.7:.1f}" '
                   f'height="{max(abs(base - y), 1.0):.1f}" fill="{COLOURS[0]}"><title>{escape(labels[i])}: '
                   f'{_number(v)}</title></rect>')
    return "".join(out) + "</svg>"


def lines(labels: Sequence[str], series: Sequence[Tuple[str, Sequence[Optional[float]]]], title: str) -> str:
    """One line per named series over the same x labels, each point marked (a single point is
    a point); gaps where a value is missing; a legend when there is more than one series."""
    lo, hi = _scale([v for _, values in series for v in values if v is not None])
    out = _frame(lo, hi, labels, title)
    if len(series) > 1:
        out += _legend([name for name, _ in series])
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for k, (name, values) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        path, points, pen = [], [], "M"
        for i, v in enumerate(values):
            if v is None or not math.isfinite(v):
                pen = "M"
                continue
            x, y = LEFT + (i + 0.5) * slot, _y(v, lo, hi)
            path.append(f"{pen}{x:.1f},{y:.1f}")
            points.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(name)} '
                          f'{escape(labels[i])}: {_number(v)}</title></circle>')
            pen = "L"
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += points
    return "".join(out) + "</svg>"


def hbars(names: Sequence[str], values: Sequence[Optional[float]], title: str, unit: str = "",
          lo: Optional[float] = None, hi: Optional[float] = None) -> str:
    """One horizontal bar per name, one row each: any number of servers, no label over another."""
    height = TOP + ROW * max(len(names), 1) + 8
    out = _open(title, height)
    label_w = min(NAME_CHARS, max((len(n) for n in names), default=1)) * CHAR + 8
    value_w = 9 * CHAR
    span_lo, span_hi = _scale([v for v in values if v is not None], floor_zero=lo is None)
    span_lo, span_hi = (lo if lo is not None else span_lo), (hi if hi is not None else span_hi)
    room = WIDTH - RIGHT - label_w - value_w
    for i, (name, v) in enumerate(zip(names, values)):
        y = TOP + i * ROW
        out.append(f'<text class="axis" x="{label_w - 6:.1f}" y="{y + 14}" text-anchor="end" fill="#333">'
                   f'{escape(_short(name, NAME_CHARS))}<title>{escape(name)}</title></text>')
        if v is None or not math.isfinite(v):
            out.append(f'<text class="value" x="{label_w:.1f}" y="{y + 14}" fill="#666">no data</text>')
            continue
        share = min(1.0, max(0.0, (v - span_lo) / (span_hi - span_lo))) if span_hi > span_lo else 1.0
        w = max(1.0, room * share)
        out.append(f'<rect x="{label_w:.1f}" y="{y + 3}" width="{w:.1f}" height="{ROW - 6}" fill="{COLOURS[0]}"/>'
                   f'<text class="value" x="{label_w + w + 4:.1f}" y="{y + 14}" fill="#333">{escape(_value(v, unit))}</text>')
    return "".join(out) + "</svg>"


def _value(v: float, unit: str) -> str:
    return f"{v:.3f}{unit}" if unit == " %" else f"{_number(v)}{unit}"
