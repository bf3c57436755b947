"""Benchmark: precision and recall of the anomaly rules on synthetic histories with planted
anomalies.

30 days of generation tokens/s for a busy server are written to a real history file at 5-minute
steps: a daily wave (+-20%), a weekly pattern (weekends 25% lower; --flat: neither), noise (4%), and N planted
slowdowns (30-50% lower for 1-3 hours) in the last 16 days. The shipped history rules
(agent/perf/history_rules.toml: the z-score against the last 7 days, and against the same hour
a week ago) are evaluated every 15 minutes over those 16 days through the history's query
engine, and the alert rule's condition (z < -3 for 30 minutes: two evaluations in a row) turns
them into alert episodes. An episode overlapping a planted slowdown (or the hour after it) is a
true positive; the others are false positives. Prints precision and recall for each rule.

    python tests/bench/bench_anomaly.py [--anomalies 12] [--seed 1] [--flat]
"""

import argparse
import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.model import Snapshot, gauge  # noqa: E402
from agent.perf.anomaly import load_history_rules, vector_of  # noqa: E402
from agent.tsdb.query import Querier  # noqa: E402
from agent.tsdb.store import HistoryStore  # noqa: E402

T0 = 1_767_225_600.0  # a Thursday, 00:00 UTC
STEP = 300
DAYS = 30
LABELS = {"server": "llama", "engine": "llamacpp", "model": "m"}
FLAT = False  # --flat: no daily or weekly pattern


def plant(rng, n):
    """n slowdowns (start, end, factor) in the last 16 days, apart from each other."""
    out = []
    while len(out) < n:
        start = T0 + (DAYS - 16) * 86400 + rng.uniform(0, 15.8 * 86400)
        end = start + rng.uniform(3600, 3 * 3600)
        if all(end + 6 * 3600 < s or start > e + 6 * 3600 for s, e, _ in out):
            out.append((start, end, rng.uniform(0.5, 0.7)))
    return sorted(out)


def tokens_per_second(t, rng, anomalies):
    day = (t - T0) / 86400
    weekday = (int(day) + 3) % 7  # T0 is a Thursday: 5 and 6 are the weekend
    value = 100.0
    if not FLAT:
        value *= 1 + 0.2 * math.sin(2 * math.pi * (day % 1 - 0.25))
        if weekday >= 5:
            value *= 0.75
    value *= 1 + rng.gauss(0, 0.04)
    for start, end, factor in anomalies:
        if start <= t < end:
            value *= factor
    return value


def episodes(times, flags):
    """Alert episodes: runs of the condition lasting two evaluations or more (for: 30m)."""
    out, run = [], []
    for t, flag in zip(times, flags):
        if flag:
            run.append(t)
        else:
            if len(run) >= 2:
                out.append((run[1], run[-1]))
            run = []
    if len(run) >= 2:
        out.append((run[1], run[-1]))
    return out


def score(found, anomalies):
    tp = sum(1 for s, e in found if any(s <= ae + 3600 and e >= as_ for as_, ae, _ in anomalies))
    detected = sum(1 for as_, ae, _ in anomalies if any(s <= ae + 3600 and e >= as_ for s, e in found))
    precision = tp / len(found) if found else 1.0
    return precision, detected / len(anomalies), tp, len(found) - tp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anomalies", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flat", action="store_true", help="traffic without daily and weekly patterns")
    args = ap.parse_args()
    global FLAT
    FLAT = args.flat
    rng = random.Random(args.seed)
    anomalies = plant(rng, args.anomalies)
    now = [T0]
    path = os.path.join(tempfile.mkdtemp(), "history.db")
    store = HistoryStore(path, clock=lambda: now[0])
    t_write = time.perf_counter()
    for i in range(DAYS * 86400 // STEP):
        now[0] = T0 + STEP * i
        fams = (gauge("llm_agent_generation_tokens_per_second", "").add(LABELS, tokens_per_second(now[0], rng, anomalies)),
                gauge("llm_agent_requests_running", "").add(LABELS, 4))
        store.append(Snapshot(now[0], fams))
        store.maintain(now[0])
        store.settle()
    print(f"history: {DAYS} days at {STEP} s written in {time.perf_counter() - t_write:.1f} s; "
          f"{len(anomalies)} slowdowns planted (30-50% for 1-3 h); traffic "
          f"{'flat' if FLAT else 'with daily and weekly patterns'}", flush=True)
    end = now[0]
    querier = Querier(store, lambda: end)
    times = [T0 + (DAYS - 16) * 86400 + 900 * k for k in range(16 * 96)]
    for rule in load_history_rules():
        if not rule.record.startswith("llm_agent:generation_tokens_per_second:zscore"):
            continue
        t_eval = time.perf_counter()
        values = []
        for t in times:
            vec = vector_of(querier.instant(rule.expr, t)[0])
            values.append(vec[0][1] if vec else 0.0)
        found = episodes(times, [v < -3 for v in values])
        precision, recall, tp, fp = score(found, anomalies)
        per = (time.perf_counter() - t_eval) / len(times) * 1000
        print(f"{rule.record}: precision {precision:.2f}, recall {recall:.2f} ({tp} true and {fp} false alert "
              f"episodes; {len(times)} evaluations, {per:.0f} ms each over the history file)", flush=True)
    store.close()


if __name__ == "__main__":
    main()
