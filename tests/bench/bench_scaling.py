"""Benchmark: how the agent's cost grows with the host.

Targets: `llm-agent run` (the real daemon, default configuration, 5 s interval, probes off:
the fixture server does not generate) watching 1, 4, 16 and 32 vLLM-sized targets (about
2,000 series each, tests/bench/vllm_body.py, served by a separate local process whose counters
move every 5 s), scraped as Prometheus scrapes it (OpenMetrics, gzip) every 15 s. For each: the
daemon's CPU over a steady minute (per cycle, and as a share of one core) and its RSS at the
end; then the slope per target and per 1,000 series.

Rules: the default rules' engine alone on an 8-GPU host's fast-forwarded snapshots (as
bench_rules.py) with 30, 100 and 300 rules of realistic shapes; evaluation per cycle and the
slope per 100 rules.

    python tests/bench/bench_scaling.py [--seconds 60] [--targets 1,4,16,32]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.bench.common import agent_process, fast_forward, fake_gpu_agent, pct  # noqa: E402
from tests.bench.vllm_body import series_count, vllm_body  # noqa: E402
from tests.support.peers import free_port, wait_until  # noqa: E402

SERVE = """
import sys, time
sys.path.insert(0, sys.argv[2])
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from tests.bench.vllm_body import vllm_body
cache = {}
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        tick = int(time.time() / 5)
        if tick not in cache:
            cache.clear()
            cache[tick] = vllm_body(tick=tick).encode()
        body = cache[tick]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
"""


def daemon_cost(tmp, port, n, seconds):
    """(CPU seconds per cycle, share of one core, RSS bytes, cycles) of `llm-agent run` with n targets."""
    targets = "".join(f'[[targets]]\nname = "vllm{i}"\nkind = "openmetrics"\nurl = "http://127.0.0.1:{port}/t{i}"\n'
                      for i in range(n))
    proc, url = agent_process(tmp, f'[probes]\nenabled = false\n{targets}')
    try:
        time.sleep(12)  # past the first cycles (rates need two readings) and the first full history write
        p = psutil.Process(proc.pid)
        cycles0 = _cycles(url)
        cpu0, t0 = sum(p.cpu_times()[:2]), time.monotonic()
        while time.monotonic() - t0 < seconds:  # Prometheus' scrape, every 15 s
            requests.get(url, timeout=30, headers={"Accept": "application/openmetrics-text;version=1.0.0",
                                                   "Accept-Encoding": "gzip"})
            time.sleep(min(15.0, max(0.0, seconds - (time.monotonic() - t0))))
        cpu1, t1 = sum(p.cpu_times()[:2]), time.monotonic()
        cycles = _cycles(url) - cycles0
        rss = p.memory_info().rss
        return (cpu1 - cpu0) / max(cycles, 1), (cpu1 - cpu0) / (t1 - t0), rss, cycles
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def _cycles(url):
    for line in requests.get(url, timeout=5).text.splitlines():
        if line.startswith("llm_agent_cycles_total "):
            return float(line.split()[1])
    raise RuntimeError("llm_agent_cycles_total missing")


def slope(xs, ys):
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def rules_curve(counts):
    from agent.rules.engine import Engine, Group
    from agent.rules.history import History
    from agent.rules.loader import build_file_rule
    from agent.rulefile import parse_text
    from tests.bench.bench_rules import user_rules

    agent = fake_gpu_agent()
    out = []
    try:
        snaps = list(fast_forward(agent, 200))
        for n in counts:
            groups = parse_text(user_rules(n), "user.yml")
            engine = Engine([Group("user", [build_file_rule(r, f"u{i}") for i, r in enumerate(groups[0].rules)])],
                            History(), [], step=5.0)
            costs = []
            for snap in snaps:
                engine.history.ingest(snap)
                c0 = time.process_time()
                engine.evaluate(snap.timestamp)
                costs.append(time.process_time() - c0)
            out.append((n, statistics.median(costs[-100:]), pct(costs[-100:], 95)))
    finally:
        agent.close(drain=0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--targets", default="1,4,16,32")
    args = ap.parse_args()
    counts = [int(n) for n in args.targets.split(",")]
    per_target = series_count(vllm_body())
    tmp = tempfile.mkdtemp()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(port), ROOT])
    rows = []
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/t0/metrics", timeout=2).ok, 30, what="the fixture server")
        for n in counts:
            per_cycle, share, rss, cycles = daemon_cost(tmp, port, n, args.seconds)
            rows.append((n, per_cycle, share, rss))
            print(f"{n:3d} targets ({n * per_target:6d} series): CPU per cycle {per_cycle * 1000:7.1f} ms, "
                  f"{share * 100:5.1f}% of one core at the 5 s interval, RSS {rss / 2**20:6.1f} MiB ({cycles:.0f} cycles)",
                  flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) > 1:
        ns = [r[0] for r in rows]
        cpu_slope = slope(ns, [r[1] for r in rows])
        rss_slope = slope(ns, [r[3] for r in rows])
        print(f"slope: {cpu_slope * 1000:.2f} ms CPU per cycle and {rss_slope / 2**20:.2f} MiB RSS per target; "
              f"{cpu_slope * 1000 / per_target * 1000:.2f} ms and {rss_slope / 2**20 / per_target * 1000:.2f} MiB "
              f"per 1,000 series")
    big = [r for r in rows if r[0] == 32]
    if big:
        print(f"32 targets at 5 s: {big[0][2] * 100:.1f}% of one core (goal < 25%), RSS {big[0][3] / 2**20:.1f} MiB "
              f"(goal < 150 MiB)")
    curve = rules_curve([30, 100, 300])
    for n, med, p95 in curve:
        print(f"{n:3d} rules: evaluation per cycle median {med * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms")
    print(f"slope: {slope([c[0] for c in curve], [c[1] for c in curve]) * 1000 * 100:.2f} ms per 100 rules")


if __name__ == "__main__":
    main()
