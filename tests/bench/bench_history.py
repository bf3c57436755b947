"""Benchmark: the on-disk history through 30 simulated days, printed (no assertions).

The load is the issue's default: the series of an agent on 8 fake GPUs with the host
collector, plus 4 llama.cpp targets (the captured llama-server metrics and the agent's
per-target series for each), about 850 samples a cycle, every 5 s. Values move as real ones
do: counters climb at their own rates, gauges walk (integers stay integers), info and limits
stay put. A fast-forward clock drives 30 days (518,400 cycles) through the real HistoryStore:

- write cost: CPU (process time) of append + maintain per cycle: median, p95, mean, and the
  seal that runs every 30 minutes of data;
- disk: the file (and WAL) at the end, with each tier's share; the 1-hour tier is full only
  after 400 days, so its 30-day size is also projected to 400 days;
- RSS growth of this process from after the first hour to the end;
- a 7-day query of one series (query_range, 5-minute step) and a 30-day one (1-hour step):
  median of 20;
- a 7-day and a 30-day report (`llm-agent report`'s figures, the previous period included): median of 3;
- and, for scale, node_exporter-free peers do not apply here: the budget figures are the
  issue's (1 ms, 250 MB, 8 MiB, 50 ms, 2 s).

    python tests/bench/bench_history.py [days]
"""

import os
import random
from array import array
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.expfmt.parse import parse_text  # noqa: E402
from agent.model import COUNTER, HISTOGRAM, MetricFamily, Sample, Snapshot  # noqa: E402
from agent.tsdb.query import Querier  # noqa: E402
from agent.tsdb.store import HistoryStore  # noqa: E402
from tests.bench.common import fake_gpu_agent, pct  # noqa: E402

INTERVAL = 5.0
TARGETS = ("llama-a", "llama-b", "llama-c", "llama-d")


def base_families():
    """The families of one realistic cycle: 8 fake GPUs, the host, 4 llama.cpp targets."""
    agent = fake_gpu_agent()
    families = [f for f in agent.snapshot.families if not any(s.label("server") for s in f.samples)]
    per_target = [f for f in agent.snapshot.families if any(s.label("server") for s in f.samples)]
    with open(os.path.join(ROOT, "tests", "fixtures", "llamacpp", "metrics.txt")) as f:
        llama = parse_text(f.read()).families
    for name in TARGETS:
        for fam in per_target:
            seen = set()
            samples = []
            for s in fam.samples:
                labels = tuple((k, name if k == "server" else v) for k, v in s.labels)
                if labels not in seen:
                    seen.add(labels)
                    samples.append(Sample(s.name, labels, s.value))
            families.append(MetricFamily(fam.name, fam.type, fam.help, samples))
        for fam in llama:
            families.append(MetricFamily(fam.name, fam.type, fam.help,
                                         [Sample(s.name, s.labels + (("server", name),), s.value) for s in fam.samples]))
    merged = {}
    for fam in families:  # one family per name, as the agent serves them
        if fam.name in merged:
            merged[fam.name].samples.extend(fam.samples)
        else:
            merged[fam.name] = MetricFamily(fam.name, fam.type, fam.help, list(fam.samples))
    return list(merged.values())


class Load:
    """Values that move like real ones, one snapshot per call: what NVML, /proc and llama.cpp
    report has a resolution (whole degrees, percent, MHz, bytes and tokens; watts from
    milliwatts; CPU seconds in 1/100 s), and the values here keep it."""

    def __init__(self, families, seed=1):
        self.rand = random.Random(seed)
        self.families = families
        self.kinds = []
        for fam in families:
            for s in fam.samples:
                whole = float(s.value).is_integer()
                if fam.type == COUNTER or (fam.type == HISTOGRAM and s.name != fam.name):
                    rate = self.rand.choice((0.0, 0.5, 1.0, 3.0, 50.0))
                    self.kinds.append(("counter", (rate, 1.0 if whole else 100.0)))
                elif s.name.endswith("_info") or "limit" in s.name or "total" in s.name or s.value in (0.0, 1.0):
                    self.kinds.append(("constant", (0.0, 1.0)))
                else:
                    self.kinds.append(("walk", (1.0, 1.0 if whole else 1000.0)))
        self.values = [s.value for fam in families for s in fam.samples]

    def snapshot(self, t):
        rand = self.rand.random
        values = self.values
        for i, (kind, (rate, scale)) in enumerate(self.kinds):
            if kind == "counter" and rate:
                values[i] = round(values[i] * scale + rate * INTERVAL * (0.5 + rand()) * scale) / scale
            elif kind == "walk" and rand() < 0.3:
                step = round((rand() - 0.5) * 4 * max(1.0, abs(values[i]) * 0.01 * scale)) or 1
                values[i] = max(0.0, round(values[i] * scale + step) / scale)
        out = []
        i = 0
        for fam in self.families:
            samples = []
            for s in fam.samples:
                samples.append(Sample(s.name, s.labels, values[i]))
                i += 1
            out.append(MetricFamily(fam.name, fam.type, fam.help, samples))
        return Snapshot(t, tuple(out))


def daemon_families(config_text, workdir):
    """One cycle's families of an in-process agent on `config_text` (its targets real servers)
    and 8 fake GPUs, with a few probes run: the series the daemon on that config writes."""
    from agent.config import parse_config
    from agent.daemon import Agent
    from tests.bench.agent_process import eight_gpus
    from tests.support.fake_pynvml import FakeNvml

    agent = Agent(parse_config(config_text + '\n[probes]\ninterval = "2s"\n'), nvml=FakeNvml(eight_gpus()),
                  state_dir=tempfile.mkdtemp(dir=workdir))
    try:
        for _ in range(8):
            agent.cycle()
            time.sleep(1.5)
        return list(agent.snapshot.families)
    finally:
        agent.close()


def write_history(store, load, clock, cycles):
    """`cycles` of `load` into `store` from clock[0] on, INTERVAL apart, sealed as in real time."""
    for _ in range(cycles):
        store.append(load.snapshot(clock[0]))
        store.maintain(clock[0])
        store.settle()  # in real time a seal has 30 minutes; fast-forwarded, it is waited for
        clock[0] += INTERVAL


def rss_mib(field="VmRSS"):
    """This process' resident memory (VmRSS), or its peak (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tier_sizes(store):
    rows = store.db.execute("SELECT tier, COUNT(*), SUM(LENGTH(data)) FROM chunks GROUP BY tier").fetchall()
    return {tier: (count, size or 0) for tier, count, size in rows}


def main(days=30.0):
    families = base_families()
    load = Load(families)
    per_cycle = sum(len(f.samples) for f in families)
    workdir = tempfile.mkdtemp()
    clock = [1_767_225_600.0]  # 2026-01-01, midnight UTC
    store = HistoryStore(os.path.join(workdir, "history.db"), clock=lambda: clock[0])
    cycles = int(days * 86400 / INTERVAL)
    costs = array("d", bytes(8 * cycles))  # allocated before RSS is first read: the bench's own memory stays put
    seals = []
    rss_start = None
    started = time.monotonic()
    print(f"history bench: {per_cycle} samples a cycle, {cycles} cycles ({days:g} days at {INTERVAL:g}s)", flush=True)
    for i in range(cycles):
        snap = load.snapshot(clock[0])
        seal_cpu = store.stats.seal_seconds
        c0 = time.thread_time()
        store.append(snap)
        store.maintain(clock[0])
        costs[i] = time.thread_time() - c0
        store.settle()  # in real time a seal has 30 minutes to finish; fast-forwarded, it is waited for
        if store.stats.seal_seconds != seal_cpu:
            seals.append(store.stats.seal_seconds - seal_cpu)
        clock[0] += INTERVAL
        if i == 720:
            rss_start = rss_mib()
        if i and i % 17280 == 0:
            print(f"  day {i // 17280}: {store.size_bytes() / 1e6:.0f} MB, RSS {rss_mib():.1f} MiB, "
                  f"{time.monotonic() - started:.0f}s elapsed", flush=True)
    rss_end = rss_mib()
    costs = list(costs)
    print(f"write cost per cycle (main thread CPU): median {statistics.median(costs) * 1000:.3f} ms, p95 "
          f"{pct(costs, 95) * 1000:.3f} ms, max {max(costs) * 1000:.1f} ms   (budget: median <= 1 ms)")
    if seals:
        mean = (sum(costs) + sum(seals)) / len(costs)
        print(f"seal (background thread CPU, every 30 min of data): median {statistics.median(seals) * 1000:.0f} ms, "
              f"max {max(seals) * 1000:.0f} ms ({len(seals)} seals); all history CPU averaged over every cycle: "
              f"{mean * 1000:.3f} ms")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = store.size_bytes()
    tiers = tier_sizes(store)
    names = {0: "raw", 1: "1m", 2: "1h", 3: "5m"}
    print(f"disk after {days:g} days: {size / 1e6:.1f} MB  (budget: <= 250 MB at steady state)")
    for tier, (count, data) in sorted(tiers.items()):
        print(f"  {names[tier]:>3}: {count} chunks, {data / 1e6:.1f} MB of chunk data")
    if days >= 29 and 2 in tiers:
        hour_tier = tiers[2][1]
        projected = size + hour_tier * (400 / days - 1)
        print(f"  projected at steady state (1h tier full at 400 days): {projected / 1e6:.1f} MB")
    print(f"RSS: {rss_start:.1f} MiB after the first hour, {rss_end:.1f} MiB at the end: grew "
          f"{rss_end - rss_start:.1f} MiB  (budget: <= 8 MiB)")
    querier = Querier(store, clock=lambda: clock[0])
    now = clock[0] - INTERVAL
    for label, span, step in (("7-day", 7 * 86400, 300), ("30-day", 30 * 86400, 3600)):
        if span > days * 86400:
            continue
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            data, warnings = querier.range('DCGM_FI_DEV_GPU_TEMP{gpu="3"}', now - span, now, step)
            times.append(time.perf_counter() - t0)
        points = len(data["result"][0]["values"]) if data["result"] else 0
        print(f"{label} query of one series (step {step}s, {points} points): median "
              f"{statistics.median(times) * 1000:.1f} ms  (budget: 7-day <= 50 ms); {warnings[:1]}")
    if days >= 7:
        from agent.report.compute import Period, Reporter

        reporter = Reporter(store, clock=lambda: clock[0])
        for span in (7, 30):
            if span > days:
                continue
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                doc = reporter.report(Period(now - span * 86400, now))
                times.append(time.perf_counter() - t0)
            print(f"{span}-day report (with the previous period for comparison): median {statistics.median(times):.2f} s "
                  f"({len(doc['days'])} days, {len(doc['gpus'])} GPUs, {len(doc['targets'])} targets)  "
                  f"(budget: 30-day <= 2 s)")
    store.close()
    return store


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
