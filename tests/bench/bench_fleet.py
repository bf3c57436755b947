"""Benchmark: the fleet path at size. N agents (default 50) on loopback, each its own state
directory, port and hostname, at the default 5 s interval with the default rules, watching two
shared real llama-servers and pushing to a real two-replica Alertmanager cluster (its default
group_wait 30 s, grouped by alertname); a real Prometheus scrapes every agent through file_sd
every 5 s. Then a fleet-wide fault: both llama-servers killed.

Printed: the agents' CPU (share of one core, per agent and all together) and RSS over a steady
minute; Prometheus' scrape durations and scrape success; notifications at the webhook per
Alertmanager group (target: 1 each, not one per host) and the time from fault to each.

    python tests/bench/bench_fleet.py [--agents 50] [--steady 60]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from tests.bench.common import pct  # noqa: E402
from tests.support.fleet import AlertmanagerCluster, file_sd_prometheus, group_notifications, start_agents  # noqa: E402
from tests.support.peers import LlamaServer, wait_until  # noqa: E402
from tests.support.receivers import WEBHOOK, Receiver  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402


def cpu_seconds(procs):
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--steady", type=float, default=60.0, help="seconds of steady state measured")
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    servers = [LlamaServer(model, log_dir=tmp).start() for _ in range(2)]
    hook = Receiver(WEBHOOK, "ok")
    cluster = AlertmanagerCluster(os.path.join(tmp, "am"), hook.url, group_wait="30s").start()
    started = time.time()
    agents = start_agents(args.agents, tmp, [s.url for s in servers], cluster.urls, interval="5s")
    print(f"{args.agents} agents serving after {time.time() - started:.0f} s")
    prom = file_sd_prometheus(os.path.join(tmp, "prom"), agents, interval="5s")
    try:
        wait_until(lambda: len(prom.query("up == 1")) == args.agents, 60, what="every agent scraped")
        time.sleep(20)  # past start-up: caches warm, first probes done
        procs = [psutil.Process(a.proc.pid) for a in agents]
        c0, t0 = cpu_seconds(procs), time.monotonic()
        time.sleep(args.steady)
        used = (cpu_seconds(procs) - c0) / (time.monotonic() - t0)
        rss = [p.memory_info().rss / 2**20 for p in procs]
        print(f"agents' CPU over {args.steady:.0f} s: {used * 100:.1f}% of one core in all, "
              f"{used / len(procs) * 100:.2f}% per agent; RSS median {statistics.median(rss):.1f} MiB, "
              f"max {max(rss):.1f} MiB")
        durations = [float(r["value"][1]) for r in prom.query('scrape_duration_seconds{job="llm-agent"}')]
        success = float(prom.query(f'avg(avg_over_time(up{{job="llm-agent"}}[{int(args.steady)}s]))')[0]["value"][1])
        samples = statistics.median(float(r["value"][1]) for r in prom.query('scrape_samples_scraped{job="llm-agent"}'))
        print(f"Prometheus scrapes: success {success * 100:.2f}% over the steady window; duration median "
              f"{statistics.median(durations) * 1000:.1f} ms, p95 {pct(durations, 95) * 1000:.1f} ms, "
              f"max {max(durations) * 1000:.1f} ms; {samples:.0f} samples per agent")

        before = len(hook.requests)
        for s in servers:
            s.kill()
        fault = time.time()
        arrivals = {}
        deadline = fault + 120
        while time.time() < deadline:
            for key in group_notifications([r["body"] for r in hook.requests[before:]]):
                arrivals.setdefault(key, time.time() - fault)
            if '{}:{alertname="LlmTargetDown"}' in arrivals and time.time() - fault > 60:
                break
            time.sleep(0.1)
        groups = group_notifications([r["body"] for r in hook.requests[before:]])
        print(f"fleet-wide fault (both llama-servers killed): {len(hook.requests) - before} webhook notifications "
              f"in {time.time() - fault:.0f} s")
        for key, bodies in sorted(groups.items()):
            hosts = {a["labels"].get("Hostname") for b in bodies for a in b["alerts"]}
            print(f"  {key}: {len(bodies)} notification(s), {sum(len(b['alerts']) for b in bodies)} alerts from "
                  f"{len(hosts)} hosts, first after {arrivals[key]:.1f} s (Alertmanager group_wait 30 s)")
        print(f"  scrape success during the fault: {float(prom.query('avg(up)')[0]['value'][1]) * 100:.1f}%")
    finally:
        for a in agents:
            a.stop(timeout=10)
        prom.stop()
        cluster.stop()
        hook.close()
        for s in servers:
            s.kill()


if __name__ == "__main__":
    main()
