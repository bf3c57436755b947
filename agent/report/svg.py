"""Small inline SVG charts for the HTML report: no script, no external file, so the report
opens offline and in a mail client. Every label is escaped (they come from targets)."""

from __future__ import annotations

import math
from html import escape
from typing import List, Optional, Sequence, Tuple

COLOURS = ("#2b6cb0", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#319795", "#c05621", "#718096")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 200, 52, 22, 8, 8


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


def _frame(lo: float, hi: float, labels: Sequence[str], title: str) -> List[str]:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(title)}" style="width:100%;max-width:{WIDTH}px;height:auto;font:11px sans-serif">']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = TOP + (1 - i / 4) * (HEIGHT - TOP - BOTTOM)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{_number(v)}</text>')
    n = len(labels)
    step = max(1, n // 8)
    for i in range(0, n, step):
        x = LEFT + (i + 0.5) * (WIDTH - LEFT - RIGHT) / max(n, 1)
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="middle" fill="#666">{escape(labels[i])}</text>')
    return out


def bars(labels: Sequence[str], values: Sequence[Optional[float]], title: str) -> str:
    lo, hi = _scale([v for v in values if v is not None])
    out = _frame(lo, hi, labels, title)
    n = max(len(values), 1)
    width = (WIDTH - LEFT - RIGHT) / n
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            continue
        y = TOP + (1 - (v - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM)
        base = TOP + (1 - (0 - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM)
        out.append(f'<rect x="{LEFT + i * width + width * 0.15:.1f}" y="{min(y, base):.1f}" width="{width * 0.7:.1f}" '
                   f'height="{abs(base - y):.1f}" fill="{COLOURS[0]}"><title>{escape(labels[i])}: {_number(v)}</title></rect>')
    return "".join(out) + "</svg>"


def lines(labels: Sequence[str], series: Sequence[Tuple[str, Sequence[Optional[float]]]], title: str) -> str:
    """One line per named series over the same x labels; gaps where a value is missing."""
    lo, hi = _scale([v for _, values in series for v in values if v is not None])
    out = _frame(lo, hi, labels, title)
    n = max(len(labels), 1)
    for k, (name, values) in enumerate(series):
        path, pen = [], "M"
        for i, v in enumerate(values):
            if v is None or not math.isfinite(v):
                pen = "M"
                continue
            x = LEFT + (i + 0.5) * (WIDTH - LEFT - RIGHT) / n
            y = TOP + (1 - (v - lo) / (hi - lo)) * (HEIGHT - TOP - BOTTOM)
            path.append(f"{pen}{x:.1f},{y:.1f}")
            pen = "L"
        colour = COLOURS[k % len(COLOURS)]
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"><title>{escape(name)}</title></path>')
        out.append(f'<text x="{LEFT + 8 + 90 * k}" y="{TOP + 10}" fill="{colour}">{escape(name[:14])}</text>')
    return "".join(out) + "</svg>"
