"""Benchmark: the PromQL engine's cost, printed (no assertions).

1. The default rules per cycle (8 fake GPUs, the host collector; cycles fast-forwarded 5 s
   apart until the 30-minute ranges are full): median and p95 of Engine.evaluate.
2. 300 user rules of realistic shapes (rates and ratios, on()/group_left joins, histogram
   quantiles, absent, avg_over_time, label_replace, topk, offset, a few subqueries) on the
   same data, on top of the defaults: median and p95.
3. Parsing and validating a 500-rule Prometheus rule file: median of 5, beside
   `promtool check rules` on the same file (the peer, run here).

    python tests/bench/bench_rules.py
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.rules.engine import Engine, Group  # noqa: E402
from agent.rules.history import History  # noqa: E402
from agent.rules.loader import build_file_rule, load_rules  # noqa: E402
from agent.rulefile import load_file, parse_text  # noqa: E402
from tests.bench.common import fake_gpu_agent, fast_forward, pct  # noqa: E402
from tests.support.peers import promtool_path  # noqa: E402

SHAPES = [
    'avg_over_time(DCGM_FI_DEV_GPU_UTIL{{gpu="{g}"}}[{w}m]) < {n}',
    'DCGM_FI_DEV_FB_USED{{gpu="{g}"}} / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.{n}',
    'max by (gpu) (DCGM_FI_DEV_GPU_TEMP) > {n}',
    'rate(node_cpu_seconds_total{{mode="idle"}}[{w}m]) < 0.0{n}',
    'sum without (cpu, mode) (rate(node_cpu_seconds_total[{w}m])) > {n}',
    'DCGM_FI_DEV_POWER_USAGE * on(gpu, UUID) group_left(modelName) (DCGM_FI_DEV_GPU_TEMP * 0 + 1) > {n}00',
    'absent(llm_agent_target_up{{server="s{n}"}})',
    'label_replace(DCGM_FI_DEV_SM_CLOCK, "card", "$1", "gpu", "(.*)") > {n}000',
    'topk(2, DCGM_FI_DEV_GPU_TEMP) > {n}',
    'DCGM_FI_DEV_GPU_TEMP - DCGM_FI_DEV_GPU_TEMP offset {w}m > {n}',
    'max_over_time(DCGM_FI_DEV_GPU_TEMP[{w}m:1m]) > {n}',
    'histogram_quantile(0.9, sum by (le) (rate(llm_agent_probe_ttft_seconds_bucket[{w}m]))) > {n}',
    '1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes > 0.{n}',
    'deriv(node_filesystem_avail_bytes[{w}m]) < -{n}',
    'count(DCGM_FI_DEV_GPU_UTIL > {n}) < 8',
]


def user_rules(n):
    lines = ["groups:", "  - name: user", "    rules:"]
    for i in range(n):
        expr = SHAPES[i % len(SHAPES)].format(g=i % 8, w=1 + i % 10, n=1 + i % 9)
        lines += [f"      - alert: User{i}", f"        expr: '{expr}'", "        for: 1m",
                  "        labels: {severity: warning}", f"        annotations: {{summary: 'rule {i} at {{{{ $value }}}}'}}"]
    return "\n".join(lines) + "\n"


def evaluate_cost(agent, engine, keep=100):
    costs = []
    for snap in fast_forward(agent):
        engine.history.ingest(snap)
        c0 = time.process_time()
        engine.evaluate(snap.timestamp)
        costs.append(time.process_time() - c0)
    return costs[-keep:]


def main():
    agent = fake_gpu_agent()
    try:
        defaults = load_rules(agent.config)
        engine = Engine(defaults.groups, History(), defaults.inhibit, step=5.0)
        costs = evaluate_cost(agent, engine)
        print(f"default rules ({len(defaults.alerts)}): evaluation per cycle median {statistics.median(costs) * 1000:.2f} ms, "
              f"p95 {pct(costs, 95) * 1000:.2f} ms (target: median <= 2 ms)")
        groups = parse_text(user_rules(300), "user.yml")
        user = [build_file_rule(r, f"u{i}") for i, r in enumerate(groups[0].rules)]
        engine = Engine(defaults.groups + [Group("user", user)], History(), defaults.inhibit, step=5.0)
        costs = evaluate_cost(agent, engine)
        print(f"defaults + 300 user rules: evaluation per cycle median {statistics.median(costs) * 1000:.2f} ms, "
              f"p95 {pct(costs, 95) * 1000:.2f} ms (target: median <= 15 ms); failures {sum(engine.failures.values())}")
    finally:
        agent.close(drain=0)
    path = os.path.join(tempfile.mkdtemp(), "rules.yml")
    with open(path, "w") as f:
        f.write(user_rules(500))
    ours = []
    for _ in range(5):
        t0 = time.perf_counter()
        load_file(path)
        ours.append(time.perf_counter() - t0)
    theirs = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([promtool_path(), "check", "rules", path], check=True, capture_output=True)
        theirs.append(time.perf_counter() - t0)
    print(f"500-rule file: agent parse+validate median {statistics.median(ours) * 1000:.0f} ms (target <= 1 s); "
          f"promtool check rules (a process) median {statistics.median(theirs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
