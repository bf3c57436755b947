"""Benchmark: time from killing a real llama-server to the webhook receiving the alert.

1. llm-agent with its default config (5 s interval, default rules) plus one target and one
   webhook channel: N trials (default 20), kill -9 at a random moment, median and p95.
2. The same fault through Prometheus + Alertmanager with their default settings (scrape and
   evaluation every 1 m, group_wait 30 s), rule `up == 0`: M trials (default 3; each takes
   minutes), each with a fresh Prometheus and Alertmanager.
3. Rule evaluation CPU per cycle with the default rules and 8 fake GPUs, and history memory.

    python tests/bench/bench_alert.py [--trials 20] [--prom-trials 3]
"""

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.bench.common import fake_gpu_agent, fast_forward, pct, start_agent  # noqa: E402
from tests.support.peers import Alertmanager, LlamaServer, Prometheus, wait_until  # noqa: E402
from tests.support.receivers import WEBHOOK, Receiver  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402



def agent_trials(model, tmp, trials):
    server = LlamaServer(model, log_dir=tmp).start()
    rx = Receiver(WEBHOOK, "ok")
    agent = start_agent(tmp, server.url, rx.url)
    latencies = []
    try:
        for _ in range(trials):
            resolved_before = len(rx.alerts("resolved"))
            time.sleep(random.uniform(5.5, 10.5))  # the target is up and scraped; kill at a random phase
            server.kill()
            t0 = time.time()
            firing_before = len(rx.alerts("firing"))
            wait_until(lambda n=firing_before: len(rx.alerts("firing")) > n, 30, 0.01, "firing alert")
            latencies.append(time.time() - t0)
            server.start()
            wait_until(lambda n=resolved_before: len(rx.alerts("resolved")) > n, 30, 0.05, "resolve")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        server.kill()
        rx.close()
    return latencies


def prometheus_trials(model, tmp, trials):
    latencies = []
    for i in range(trials):
        work = tempfile.mkdtemp(dir=tmp)
        server = LlamaServer(model, log_dir=work).start()
        rx = Receiver(WEBHOOK, "ok")
        am = Alertmanager(work)
        with open(am.config, "w") as f:  # Alertmanager's defaults: group_wait 30s, group_interval 5m
            f.write(f"route:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {rx.url}\n")
        am.start()
        rules = os.path.join(work, "rules.yml")
        with open(rules, "w") as f:
            f.write('groups:\n  - name: llama\n    rules:\n      - alert: LlamaDown\n        expr: up{job="llama"} == 0\n')
        prom = Prometheus([], work)
        with open(prom.config, "w") as f:  # Prometheus' defaults: scrape and evaluate every 1m
            f.write(f"rule_files: [{rules}]\nalerting:\n  alertmanagers:\n    - static_configs:\n"
                    f"        - targets: ['127.0.0.1:{am.port}']\n"
                    f"scrape_configs:\n  - job_name: llama\n    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n")
        prom.start()
        try:
            wait_until(lambda prom=prom: prom.query('up{job="llama"} == 1'), 120, 1, "Prometheus' first scrape")
            time.sleep(random.uniform(0, 60))
            server.kill()
            t0 = time.time()
            wait_until(lambda rx=rx: rx.alerts("firing"), 400, 0.1, "Alertmanager's webhook")
            latencies.append(time.time() - t0)
            print(f"  prometheus trial {i + 1}: {latencies[-1]:.1f} s", flush=True)
        finally:
            prom.stop()
            am.stop()
            server.kill()
            rx.close()
    return latencies


def history_bytes(h):
    """Bytes held by the history's points: the lists, their tuples and the floats in them."""
    seen, total = set(), 0
    for by_name in h.series.values():
        for points in by_name.values():
            total += sys.getsizeof(points)
            for p in points:
                total += sys.getsizeof(p)
                for x in p:
                    if id(x) not in seen:
                        seen.add(id(x))
                        total += sys.getsizeof(x)
    return total


def rule_cost():
    agent = fake_gpu_agent()
    try:
        costs = []
        for snap in fast_forward(agent):
            c0 = time.process_time()
            agent.alerting.process(snap)
            costs.append(time.process_time() - c0)
        h = agent.alerting.history
        return costs[-100:], h.series_count, h.sample_count(), len(agent.alerting.engine.rules), history_bytes(h)
    finally:
        agent.close(drain=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--prom-trials", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    costs, series, samples, nrules, nbytes = rule_cost()
    print(f"rules: {nrules} default rules, 8 fake GPUs + host: evaluation CPU (history ingest included) median "
          f"{statistics.median(costs) * 1000:.2f} ms, p95 {pct(costs, 95) * 1000:.2f} ms per cycle; history {series} series, "
          f"{samples} samples, {nbytes / 2**20:.1f} MiB after 33 min of 5 s cycles", flush=True)
    agent = agent_trials(model, tmp, args.trials)
    print(f"llm-agent (5 s interval, default rules): kill -> webhook median {statistics.median(agent):.2f} s, "
          f"p95 {pct(agent, 95):.2f} s, max {max(agent):.2f} s over {len(agent)} trials", flush=True)
    if args.prom_trials:
        prom = prometheus_trials(model, tmp, args.prom_trials)
        print(f"Prometheus + Alertmanager (defaults): kill -> webhook median {statistics.median(prom):.1f} s over "
              f"{len(prom)} trials; ratio of medians {statistics.median(prom) / statistics.median(agent):.0f}x", flush=True)


if __name__ == "__main__":
    main()
