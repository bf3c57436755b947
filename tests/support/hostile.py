"""Hostile /metrics bodies: every way a target can try to break the agent's exposition or
claim its names. Used by the sanitizer's fuzz test and by the real-Prometheus scrape test."""

from __future__ import annotations

import random
from typing import List

NASTY_LINES = [
    'dup{a="1",a="2"} 1',  # a label twice
    'named{__name__="other"} 1',  # a __name__ label
    'reserved{__meta_x="1"} 1',
    'srv{server="inner",exported_server="x"} 1',  # both server and exported_server
    "# TYPE llm_agent_collector_success gauge",  # the agent's own families
    'llm_agent_collector_success{collector="agent"} 0',
    "llm_agent_alerts 7",
    "# TYPE llm_agent_alerts counter",
    "# TYPE h histogram",
    "h 1",  # a histogram sample without a suffix
    'h_bucket{le="abc"} 1',  # a bucket without a numeric le
    'h_bucket{le="+Inf"} 3',
    "h_count 3",
    "h_sum 1.5",
    "# TYPE h_bucket gauge",  # a gauge that collides with the histogram's buckets
    "h_bucket 4",
    "# TYPE s summary",
    "s 2",  # a summary sample without a quantile
    's{quantile="0.5"} 2',
    "# TYPE c counter",
    "c 1",
    "c_total 2",  # a counter with both spellings
    "# TYPE c2_total counter",
    "c2_total 1",
    "# TYPE c2 gauge",  # the OpenMetrics name of the counter above
    "c2 5",
    "# HELP weird help with \\\\ backslash and \\n newline",
    "# TYPE weird gauge",
    'weird{v="quote \\" backslash \\\\ newline \\n"} 1',
    "weird 2",
    "# TYPE gg gauge",
    "# TYPE gg counter",  # a second TYPE line
    "gg 1",
    "gg 2",  # the same series twice
    'utf{v="\u00e9\u4e2d\U0001f600"} 1',
    "nan_value NaN",
    "inf_value +Inf",
    "# TYPE neg_counter_total counter",
    "neg_counter_total -5",
    "node_load1 99",  # the host collector's names
    "# TYPE node_load1 counter",
    "process_cpu_seconds_total 12",
    "DCGM_FI_DEV_GPU_TEMP 1000",
    "# TYPE DCGM_FI_DEV_GPU_UTIL histogram",
    'DCGM_FI_DEV_GPU_UTIL_bucket{le="1"} 1',
    'ok{a="1"} 1 1700000000000',  # a timestamp
    "# EOF",
    "garbage line {{{",
    'x{a="1"} 1 # {trace_id="abc"} 1.0',  # an exemplar
    '{a="1"} 2',
    "xx{} 3",
    'long_label{l="' + "v" * 200 + '"} 1',
]


def hostile_body(rng: random.Random, lines: int = 30) -> str:
    """A random mix of the nasty lines above, in random order, with random repeats."""
    chosen: List[str] = [rng.choice(NASTY_LINES) for _ in range(lines)]
    return "\n".join(chosen) + "\n"
