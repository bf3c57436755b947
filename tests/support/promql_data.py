"""The data set the PromQL differential test evaluates: 20 minutes of samples every 15 s,
with counter resets, a NaN, a series that stops, histograms, and label sets made for vector
matching. Written as OpenMetrics for `promtool tsdb create-blocks-from openmetrics` and fed
sample by sample into the agent's History, so both sides hold exactly the same points."""

from __future__ import annotations

import math
from typing import Dict, Iterator, List, Tuple

STEP = 15
DURATION = 20 * 60
Series = Tuple[str, Dict[str, str]]


def _series() -> Iterator[Tuple[Series, List[Tuple[int, float]]]]:
    ticks = list(range(0, DURATION + 1, STEP))

    def counter(rate: float, reset_at: int = -1, start: float = 0.0):
        value, out = start, []
        for i, t in enumerate(ticks):
            if t == reset_at:
                value = 0.0
            value += rate * STEP * (1 + 0.3 * math.sin(i / 3.0))
            out.append((t, round(value, 3)))
        return out

    yield ("http_requests_total", {"job": "api", "instance": "a", "code": "200"}), counter(10)
    yield ("http_requests_total", {"job": "api", "instance": "a", "code": "500"}), counter(0.2)
    yield ("http_requests_total", {"job": "api", "instance": "b", "code": "200"}), counter(7, reset_at=600, start=5000)
    yield ("http_requests_total", {"job": "web", "instance": "c", "code": "200"}), counter(3)
    yield ("tokens_generated_total", {"server": "s1"}), counter(55)
    yield ("tokens_generated_total", {"server": "s2"}), [(t, 0.0) for t in ticks]
    for sensor, base in (("x", 60.0), ("y", 75.0)):
        yield ("temperature_celsius", {"sensor": sensor}), [(t, round(base + 8 * math.sin(t / 90.0), 2)) for t in ticks]
    yield ("temperature_celsius", {"sensor": "z"}), [(t, math.nan if t == ticks[-1] else 50.0) for t in ticks]
    yield ("queue_depth", {"server": "s1"}), [(t, 2 + t / 60.0) for t in ticks]
    yield ("queue_depth", {"server": "s2"}), [(t, 4.0) for t in ticks]
    yield ("short_lived", {"id": "1"}), [(t, 1.0) for t in ticks if t <= 600]
    for server, scale in (("s1", 1.0), ("s2", 3.0)):
        for le, share in (("0.1", 0.2), ("0.5", 0.6), ("1", 0.9), ("+Inf", 1.0)):
            yield (("request_duration_seconds_bucket", {"server": server, "le": le}),
                   [(t, round((t / STEP) * 4 * share * scale, 3)) for t in ticks])
    yield ("up", {"job": "api", "instance": "a"}), [(t, 1.0) for t in ticks]
    yield ("up", {"job": "api", "instance": "b"}), [(t, 0.0 if 300 <= t < 900 else 1.0) for t in ticks]
    yield ("mem_used_bytes", {"gpu": "0", "host": "h"}), [(t, 70e9 + 1e8 * (t // 60)) for t in ticks]
    yield ("mem_used_bytes", {"gpu": "1", "host": "h"}), [(t, 10e9) for t in ticks]
    yield ("mem_total_bytes", {"gpu": "0", "host": "h", "model": "H100"}), [(t, 80e9) for t in ticks]
    yield ("mem_total_bytes", {"gpu": "1", "host": "h", "model": "H100"}), [(t, 80e9) for t in ticks]
    yield ("dup_a", {"k": "1", "x": "p"}), [(t, 1.0) for t in ticks]
    yield ("dup_a", {"k": "1", "x": "q"}), [(t, 2.0) for t in ticks]
    yield ("dup_b", {"k": "1"}), [(t, 3.0) for t in ticks]
    yield ("dup_c", {"k": "1"}), [(t, 4.0) for t in ticks]
    # an info metric to join with group_left, and values for the math, date and label functions
    yield ("build_info", {"job": "api", "instance": "a", "version": "1.0"}), [(t, 1.0) for t in ticks]
    yield ("build_info", {"job": "api", "instance": "b", "version": "2.0"}), [(t, 1.0) for t in ticks]
    for kind, value in (("inf", math.inf), ("ninf", -math.inf), ("nan", math.nan), ("zero", 0.0), ("neg", -2.5),
                        ("half", 0.5), ("big", 1e300), ("tiny", 1e-300)):
        yield ("special", {"kind": kind}), [(t, value) for t in ticks]
    yield ("epoch_seconds", {"clock": "a"}), [(t, 1700000000.0 + t * 3601 * 7) for t in ticks]
    yield ("epoch_seconds", {"clock": "b"}), [(t, 951782400.0 + t * 86400) for t in ticks]  # 2000-02-29 onwards
    yield ("labelled", {"src": "abc-123", "dst": "old", "path": "/a/b"}), [(t, 1.0) for t in ticks]
    yield ("labelled", {"src": "xyz_9", "path": "/c"}), [(t, 2.0) for t in ticks]
    yield ("flappy", {"id": "1"}), [(t, float((i // 3) % 4)) for i, t in enumerate(ticks)]
    yield ("flappy", {"id": "2"}), [(t, float(i % 5)) for i, t in enumerate(ticks)]
    for le, share in (("0.1", 0.5), ("1", 0.8), ("+Inf", 1.0)):
        yield (("other_duration_seconds_bucket", {"server": "s1", "le": le}),
               [(t, round((t / STEP) * 2 * share, 3)) for t in ticks])
    # a gap: samples stop for 7 minutes (longer than the 5-minute lookback), then come back
    yield ("gappy", {"id": "1"}), [(t, float(t)) for t in ticks if not 300 < t < 720]


def dataset() -> List[Tuple[Series, List[Tuple[int, float]]]]:
    """[((name, labels), [(offset seconds, value)])]"""
    return list(_series())


def openmetrics(base: int) -> str:
    """The data set as OpenMetrics text with timestamps base+offset (seconds)."""
    by_name: Dict[str, List[str]] = {}
    for (name, labels), points in dataset():
        lbl = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines = by_name.setdefault(name, [])
        for t, v in points:
            value = "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf") if math.isinf(v) else repr(v)
            lines.append(f"{name}{{{lbl}}} {value} {base + t}")
    out = []
    for name, lines in by_name.items():
        out.append(f"# TYPE {name} unknown")
        out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def backfilled_prometheus(work):
    """A real Prometheus holding the data set, backfilled with `promtool tsdb create-blocks-from
    openmetrics` into `work` (a pathlib.Path); returns (base time, the started Prometheus)."""
    import subprocess
    import time

    from .peers import Prometheus, promtool_path

    base = (int(time.time()) - 3 * 3600) // 15 * 15
    source = work / "data.om"
    source.write_text(openmetrics(base))
    blocks = work / "tsdb"
    subprocess.run([promtool_path(), "tsdb", "create-blocks-from", "openmetrics", str(source), str(blocks)],
                   check=True, capture_output=True, timeout=120)
    return base, Prometheus([], str(work), data_dir=str(blocks)).start()
