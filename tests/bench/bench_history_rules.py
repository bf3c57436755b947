"""Issue 32: what the history rules cost once the history holds a week, not the half hour a
real-time run starts with. The rules (agent/perf/history_rules.toml) compare a series' last
half hour with its last 7 days, every 5 minutes, in their own thread: on a fresh file a round
reads minutes of data, on a week-old one 7 days of 1-minute rollups.

The series are the real daemon's: an in-process agent on 8 fake GPUs and 4 real llama-servers
(probes every 2 s, so the probe series exist) gives one cycle's families, and bench_history's
`Load` moves their values as a busy server's do (counters climb, gauges walk) through `--days`
(7) days at 5 s into a real HistoryStore, sealed and rolled up as in real time. Then rounds of
the shipped rules run as the daemon runs them (`HistoryRules.evaluate`, one session, the
default query budget), 5 minutes of new cycles between rounds, so that every round after the
first is a steady one.

Printed: each rule's CPU in a steady round, a round's CPU (first and the median of the steady
ones), what that is per 5-second cycle at one round every 5 minutes, the rules that failed, and
how far each round's peak RSS rose over the RSS before it and what it left; then what refusing a
query over every series and a day of raw samples costs (the budget stops the read where it is
passed). `--file` reuses a history file made before (the code before a change, on the same file).

    python tests/bench/bench_history_rules.py [--days 7] [--rounds 4] [--file history.db]
"""

import argparse
import gc
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.perf.anomaly import HistoryRules  # noqa: E402
from agent.tsdb.query import Querier, QueryError  # noqa: E402
from agent.tsdb.store import HistoryStore  # noqa: E402
from tests.bench.bench_history import INTERVAL, Load, daemon_families, rss_mib, write_history  # noqa: E402
from tests.support.peers import LlamaServer  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402

ROUND_EVERY = 300.0  # HistoryRules' period
CYCLE = 5.0  # the agent's default interval


def reset_peak_rss():
    """Linux: the peak (VmHWM) starts again from now (clear_refs 5), so each round has its own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def refused(querier: Querier, t: float) -> None:
    """A query over every series and most of a day of raw samples (~20M on this file): refused
    by the default budget (500,000), and what refusing it cost: CPU and the peak RSS over the
    RSS before it."""
    expr = 'count(count_over_time({__name__=~".+"}[20h]))'
    reset_peak_rss()
    before = rss_mib()
    c = time.thread_time()
    try:
        querier.instant(expr, t)
        outcome = "answered"
    except QueryError as e:
        outcome = f"refused ({e})"
    print(f"{expr}: {outcome} in {time.thread_time() - c:.2f} s of CPU, peak RSS +{rss_mib('VmHWM') - before:.0f} MiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--file", help="a history file made by an earlier run (copied, not changed)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-history-rules-")
    try:
        model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
        servers = [LlamaServer(model, log_dir=tmp).start() for _ in range(4)]
        try:
            families = daemon_families('[agent]\nhostname = "bench"\n[discovery]\nenabled = false\n' + "".join(
                f'[[targets]]\nname = "llama{i}"\nurl = "{s.url}"\n' for i, s in enumerate(servers)), tmp)
        finally:
            for s in servers:
                s.kill()
        load = Load(families)
        path = os.path.join(tmp, "history.db")
        if args.file:
            for suffix in ("", "-wal"):
                if os.path.exists(args.file + suffix):
                    shutil.copy(args.file + suffix, path + suffix)
            with sqlite3.connect(path) as db:
                clock = [db.execute("SELECT max(t) FROM head").fetchone()[0] + INTERVAL]
            store = HistoryStore(path, clock=lambda: clock[0])
        else:
            cycles = int(args.days * 86400 / INTERVAL)
            clock = [time.time() - cycles * INTERVAL]
            store = HistoryStore(path, clock=lambda: clock[0])
            started = time.monotonic()
            print(f"writing {args.days:g} days of {sum(len(f.samples) for f in families)} series at {INTERVAL:g}s ...",
                  flush=True)
            write_history(store, load, clock, cycles)
            print(f"  {time.monotonic() - started:.0f}s; {os.path.getsize(path) / 1e6:.0f} MB", flush=True)
        querier = Querier(store, lambda: clock[0])
        rules = HistoryRules(lambda expr, t, steps: querier.instant(expr, t, steps=steps)[0], clock=lambda: clock[0],
                             session=querier.session, start=False)
        per_rule = {r.record: [] for r in rules.rules}
        query = rules.query

        def timed(expr, t, steps):
            c = time.thread_time()
            try:
                return query(expr, t, steps)
            finally:
                per_rule[next(r.record for r in rules.rules if r.expr == expr)].append(time.thread_time() - c)

        rules.query = timed
        gc.collect()
        gc.freeze()  # as the daemon leaves what its start made out of every collection (daemon.tune_gc)
        rounds, peaks, after = [], [], []
        for _ in range(args.rounds):
            reset_peak_rss()
            before = rss_mib()
            c = time.thread_time()
            rules.evaluate(clock[0])
            rules.give_back_memory()  # as the daemon's thread does after each round
            rounds.append(time.thread_time() - c)
            peaks.append(rss_mib("VmHWM") - before)
            after.append(rss_mib() - before)
            write_history(store, load, clock, int(ROUND_EVERY / INTERVAL))  # the 5 minutes to the next round
        steady = statistics.median(rounds[1:]) if len(rounds) > 1 else rounds[0]
        for record, took in per_rule.items():
            print(f"  {1e3 * statistics.median(took[1:] or took):7.1f} ms  {record}")
        print(f"a round of {len(rules.rules)} history rules on {args.days if not args.file else 'the given'} days: first "
              f"{1e3 * rounds[0]:.0f} ms, steady {1e3 * steady:.0f} ms of CPU (median of {max(len(rounds) - 1, 1)}); "
              f"{1e3 * steady * CYCLE / ROUND_EVERY:.2f} ms per {CYCLE:g} s cycle at one round every "
              f"{ROUND_EVERY / 60:g} minutes")
        print(f"failed: {dict(rules.failures) or 'none'}; peak RSS over the RSS before the round: first "
              f"+{peaks[0]:.1f} MiB, steady +{statistics.median(peaks[1:] or peaks):.1f} MiB; RSS left after the "
              f"first round +{after[0]:.1f} MiB, after each steady one {', '.join(f'{a:+.1f}' for a in after[1:])} MiB")
        refused(querier, clock[0])
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
