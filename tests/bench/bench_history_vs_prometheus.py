"""Issue 32: the agent's history against Prometheus' own storage, the same samples in both.

The series are the ones the contrib host dashboard (contrib/grafana/llm-agent-host.json) draws,
made as bench_history.py makes them (`Load`: counters climb at their own rates, gauges walk
with noise at the resolution their source reports, a histogram's buckets fill): 8 GPUs'
utilisation, power, memory and temperature, 16 CPU-mode counters, available memory, 4
servers' generated-token counters and the probes' TTFT histogram (97 series), one sample each
every 5 s for `--days` (30) days, ending two minutes ago.

The same values go two ways, in one run:
- through the agent's HistoryStore (its fast-forwarded clock sealing, rolling up and expiring
  as it does in real time) into `history.db`, served by the real daemon (`llm-agent run` on
  that state directory) through its Prometheus query API;
- into an OpenMetrics file, turned into blocks by `promtool tsdb create-blocks-from
  openmetrics` (a file per 2-hour block), served by a real Prometheus (2.42 on Debian), which is given time to compact
  them as it would its own.

Printed: bytes per sample on disk (Prometheus' blocks against the agent's raw tier, and the
agent's whole file), and for each dashboard query over 1 h, 24 h, 7 d and 30 d (Grafana's
steps for a ~1000-pixel panel), the median latency of 5 HTTP query_range calls on each, and how
far the agent's answer is from Prometheus' (the median and largest relative difference per
point; raw data must match exactly, a rollup's documented semantics allow more: docs/history.md).

    python tests/bench/bench_history_vs_prometheus.py [--days 30]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import requests  # noqa: E402

from agent.model import COUNTER, HISTOGRAM  # noqa: E402
from agent.tsdb.store import HistoryStore  # noqa: E402
from tests.bench.bench_history import INTERVAL, Load, base_families, tier_sizes  # noqa: E402
from tests.bench.common import agent_process  # noqa: E402
from tests.support.peers import Prometheus  # noqa: E402

KINDS = {COUNTER: "counter", HISTOGRAM: "histogram"}
FAMILIES = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP",
            "node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "llamacpp:tokens_predicted_total",
            "llm_agent_probe_ttft_seconds")
# the host dashboard's panels over these series ($__rate_interval written out as W)
QUERIES = (
    ("GPU utilisation", "DCGM_FI_DEV_GPU_UTIL"),
    ("GPU power", "DCGM_FI_DEV_POWER_USAGE"),
    ("GPU memory used", "DCGM_FI_DEV_FB_USED"),
    ("CPU busy", '1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode="idle"}[W]))'),
    ("tokens/s", "sum by (server) (rate(llamacpp:tokens_predicted_total[W]))"),
    ("probe TTFT p95", "histogram_quantile(0.95, sum by (server, le) (rate(llm_agent_probe_ttft_seconds_bucket[W])))"),
)
# range, Grafana's step for a ~1000-pixel panel, and its $__rate_interval (max(step + scrape, 4 x scrape))
RANGES = (("1h", 3600, 15), ("24h", 86400, 120), ("7d", 7 * 86400, 600), ("30d", 30 * 86400, 3600))


def openmetrics_name(fam):
    """OpenMetrics names a counter's family without its _total."""
    return fam.name[:-len("_total")] if fam.type == COUNTER and fam.name.endswith("_total") else fam.name


def label_text(labels):
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


WINDOW = 7200  # promtool's block span; it reads its input once per block, so each window is its own file


def generate(families, days, end, workdir):
    """Both stores from the same values: the agent's state directory, the OpenMetrics files (one
    per 2-hour block, each family's samples together as OpenMetrics wants), the series and cycle
    counts, the tiers' sizes and the seconds it took."""
    load = Load(families)
    cycles = int(days * 86400 / INTERVAL)
    clock = [end - (cycles - 1) * INTERVAL]
    state = os.path.join(workdir, "state")
    os.makedirs(state)
    store = HistoryStore(os.path.join(state, "history.db"), clock=lambda: clock[0])
    prefixes = [[s.name + label_text(s.labels) + " " for s in fam.samples] for fam in families]
    headers = [f"# TYPE {openmetrics_name(fam)} {KINDS.get(fam.type, 'gauge')}\n" for fam in families]
    files = []
    window, lines = None, [[] for _ in families]

    def flush():
        if window is None:
            return
        path = os.path.join(workdir, f"window-{window}.om")
        with open(path, "w") as f:
            for header, family_lines in zip(headers, lines):
                f.write(header)
                f.write("".join(family_lines))
            f.write("# EOF\n")
        files.append(path)

    started = time.monotonic()
    for i in range(cycles):
        snap = load.snapshot(clock[0])
        store.append(snap)
        store.maintain(clock[0])
        store.settle()  # in real time a seal has 30 minutes; fast-forwarded, it is waited for
        if int(clock[0]) // WINDOW != window:
            flush()
            window, lines = int(clock[0]) // WINDOW, [[] for _ in families]
        stamp = f" {int(clock[0])}\n"
        for out, pre, fam in zip(lines, prefixes, snap.families):
            out.append("".join(p + repr(s.value) + stamp for p, s in zip(pre, fam.samples)))
        clock[0] += INTERVAL
        if i and i % 17280 == 0:
            print(f"  day {i // 17280}: {time.monotonic() - started:.0f}s", flush=True)
    flush()
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tiers = tier_sizes(store)
    store.close()
    series = sum(len(fam.samples) for fam in families)
    return state, files, series, cycles, tiers, time.monotonic() - started


def dir_bytes(path, skip=("wal", "chunks_head")):
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in skip]
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def settled_prometheus(prom):
    """Wait until Prometheus has compacted the backfilled blocks (its block count holds for 150 s)."""
    def blocks():
        text = requests.get(prom.url + "/metrics", timeout=5).text
        return next((line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("prometheus_tsdb_blocks_loaded ")), "")
    last, since = blocks(), time.monotonic()
    while time.monotonic() - since < 150:  # its compaction loop runs every minute
        time.sleep(2)
        now = blocks()
        if now != last:
            last, since = now, time.monotonic()
    return last


def query(base, expr, start, end, step, auth=None):
    t0 = time.perf_counter()
    r = requests.post(base + "/api/v1/query_range", data={"query": expr, "start": start, "end": end, "step": step},
                      timeout=120)
    elapsed = time.perf_counter() - t0
    body = r.json()
    if body.get("status") != "success":
        raise Refused(f"{body.get('errorType')}: {body.get('error')}")
    return elapsed, body["data"]["result"], body.get("warnings", [])


class Refused(Exception):
    """A side answered the query with an error (printed in its row, the run goes on)."""


def differences(ours, theirs):
    """Relative differences per point where both answer, and points only one of them has."""
    mine = {tuple(sorted(s["metric"].items())): dict(s["values"]) for s in ours}
    diffs, missing = [], 0
    for s in theirs:
        points = mine.get(tuple(sorted(s["metric"].items())), {})
        for t, v in s["values"]:
            if t not in points:
                missing += 1
                continue
            a, b = float(points[t]), float(v)
            diffs.append(0.0 if a == b else abs(a - b) / max(abs(a), abs(b), 1e-12))
    extra = sum(len(v) for v in mine.values()) - (len(diffs))
    return diffs, missing, max(0, extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=30.0)
    args = ap.parse_args()
    families = [f for f in base_families() if f.name in FAMILIES]
    tmp = tempfile.mkdtemp(prefix="history-vs-prom-")
    end = float(int(time.time() - 120) // 5 * 5)
    print(f"generating {args.days:g} days at {INTERVAL:g}s ...", flush=True)
    state, files, series, cycles, tiers, took = generate(families, args.days, end, tmp)
    samples = series * cycles
    print(f"{series} series x {cycles:,} cycles = {samples:,} samples in {took:.0f}s; OpenMetrics "
          f"{sum(os.path.getsize(f) for f in files) / 1e9:.2f} GB in {len(files)} files", flush=True)

    blocks = os.path.join(tmp, "prometheus")
    t0 = time.monotonic()
    for path in files:
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", path, blocks], check=True,
                       stdout=subprocess.DEVNULL)
        os.unlink(path)
    print(f"promtool backfill: {time.monotonic() - t0:.0f}s", flush=True)
    prom = Prometheus([], tmp, interval="15s", data_dir=blocks,
                      args=["--storage.tsdb.retention.time=400d"]).start()
    agent = None
    try:
        loaded = settled_prometheus(prom)
        prom_bytes = dir_bytes(blocks)
        agent_file = os.path.getsize(os.path.join(state, "history.db"))
        raw_cycles = min(cycles, int(86400 / INTERVAL))
        raw_bytes = tiers.get(0, (0, 0))[1]
        print(f"\nbytes per sample on disk ({series} series):")
        print(f"  Prometheus 2.42 blocks ({loaded} after its compaction, index included): {prom_bytes / 1e6:.1f} MB "
              f"for {samples:,} samples = {prom_bytes / samples:.2f} B/sample")
        print(f"  agent raw tier (the last 24 h, chunk data): {raw_bytes / 1e6:.2f} MB for {series * raw_cycles:,} "
              f"samples = {raw_bytes / (series * raw_cycles):.2f} B/sample   (goal: <= Prometheus')")
        print(f"  agent history.db, every tier (raw 24 h, 1-min rollups 30 d, 1-h rollups; index, alerts): "
              f"{agent_file / 1e6:.1f} MB = {agent_file / samples:.3f} B per sample taken")

        agent, metrics_url = agent_process(tmp, "[discovery]\nenabled = false\n", state=state)
        base = metrics_url[:-len("/metrics")]
        print("\nquery_range, median of 5 over HTTP (agent | Prometheus), and the agent's answer against Prometheus' "
              "(relative difference per point: median, largest; points only one side has):")
        print(f"  {'query':<16} {'range':>5} {'step':>5} {'agent':>9} {'Prometheus':>11} {'ratio':>6}  "
              f"{'diff median':>11} {'diff max':>9}  only-one  tier")
        for label, expr_w in QUERIES:
            for rng, span, step in RANGES:
                if span > args.days * 86400:
                    continue
                window = f"{max(step + int(INTERVAL), 4 * int(INTERVAL))}s"
                expr = expr_w.replace("[W]", f"[{window}]")
                start = end - span
                times = {"agent": [], "prom": []}
                try:
                    for side, url in (("agent", base), ("prom", prom.url)):
                        query(url, expr, start, end, step)  # warm: the first read of a file
                        for _ in range(5):
                            took, result, warnings = query(url, expr, start, end, step)
                            times[side].append(took)
                        if side == "agent":
                            ours, tier = result, (warnings[0][:40] if warnings else "raw")
                        else:
                            theirs = result
                except Refused as e:
                    print(f"  {label:<16} {rng:>5} {step:>4}s  refused by the {side}: {str(e)[:120]}", flush=True)
                    continue
                diffs, missing, extra = differences(ours, theirs)
                a, p = statistics.median(times["agent"]), statistics.median(times["prom"])
                print(f"  {label:<16} {rng:>5} {step:>4}s {a * 1000:7.1f}ms {p * 1000:9.1f}ms {a / p:6.2f}  "
                      f"{statistics.median(diffs) if diffs else 0:11.2e} {max(diffs) if diffs else 0:9.2e}  "
                      f"{missing}/{extra:<6} {tier}", flush=True)
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(20)
        prom.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
