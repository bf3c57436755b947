"""Benchmark the health features against a real llama-server, with the default config
(5 s interval, hang_after 5 s, target timeout 3 s, probes every 60 s):

1. Probe overhead on the served model: tokens per probe, the server's CPU time per probe, and
   both per hour at the default interval.
2. kill -STOP -> hang alert at the webhook (N trials, median and p95).
3. kill -9 -> page at the webhook now that exits are watched (N trials; target p95 < 2 s).

    python tests/bench/bench_health.py [--trials 10]
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

import psutil  # noqa: E402

from agent.probes.completion import ProbeSpec, run_probe  # noqa: E402
from tests.bench.common import pct, start_agent  # noqa: E402
from tests.support.peers import LlamaServer, wait_until  # noqa: E402
from tests.support.receivers import WEBHOOK, Receiver  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402



def probe_overhead(server, n=30):
    proc = psutil.Process(server.proc.pid)
    spec = ProbeSpec(server.url)  # the defaults: 8 tokens, temperature 0
    run_probe(spec)
    cpu0, agent0 = sum(proc.cpu_times()[:2]), time.process_time()
    results = [run_probe(spec) for _ in range(n)]
    server_cpu = (sum(proc.cpu_times()[:2]) - cpu0) / n
    agent_cpu = (time.process_time() - agent0) / n
    tokens = statistics.mean(r.tokens for r in results)
    ttft = statistics.median(r.ttft for r in results if r.success)
    return tokens, server_cpu, agent_cpu, ttft, sum(r.success for r in results)


def trials(server, rx, n, fault, alertname, recover):
    latencies = []
    for _ in range(n):
        firing = len([a for a in rx.alerts("firing") if a["labels"]["alertname"] == alertname])
        resolved = len(rx.alerts("resolved"))
        time.sleep(random.uniform(5.5, 10.5))
        fault()
        t0 = time.time()
        wait_until(lambda n=firing: len([a for a in rx.alerts("firing") if a["labels"]["alertname"] == alertname]) > n,
                   60, 0.01, alertname)
        latencies.append(time.time() - t0)
        recover()
        wait_until(lambda n=resolved: len(rx.alerts("resolved")) > n, 60, 0.05, "resolve")
    return latencies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    server = LlamaServer(model, log_dir=tmp).start()
    tokens, server_cpu, agent_cpu, ttft, ok = probe_overhead(server)
    print(f"probe: {tokens:.0f} tokens, server CPU {server_cpu * 1000:.1f} ms, agent CPU {agent_cpu * 1000:.1f} ms, "
          f"TTFT median {ttft * 1000:.1f} ms per probe ({ok}/30 ok, tiny model on CPU); at the default 60 s interval: "
          f"{tokens * 60:.0f} tokens/hour, {server_cpu * 60:.2f} s server CPU/hour", flush=True)
    rx = Receiver(WEBHOOK, "ok")
    agent = start_agent(tmp, server.url, rx.url)
    try:
        time.sleep(6)
        hang = trials(server, rx, args.trials, lambda: server.proc.send_signal(signal.SIGSTOP), "LlmTargetHung",
                      lambda: server.proc.send_signal(signal.SIGCONT))
        print(f"kill -STOP -> LlmTargetHung at the webhook: median {statistics.median(hang):.2f} s, "
              f"p95 {pct(hang, 95):.2f} s over {len(hang)} trials (the defaults: hang_after 5 s from the first silent "
              f"request, 5 s interval, 3 s timeout)", flush=True)
        crash = trials(server, rx, args.trials, server.kill, "LlmTargetDown", server.start)
        print(f"kill -9 -> LlmTargetDown at the webhook: median {statistics.median(crash):.2f} s, "
              f"p95 {pct(crash, 95):.2f} s, max {max(crash):.2f} s over {len(crash)} trials", flush=True)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        server.kill()
        rx.close()


if __name__ == "__main__":
    main()
