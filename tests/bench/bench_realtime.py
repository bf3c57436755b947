"""Issue 32: what the host pays, seen from outside as `top` sees it. The real daemon
(`llm-agent run`) at its defaults (5 s interval, default rules, history on, probes on) in real
time, reading 8 fake GPUs through the fake NVML module it imports (tests/support/fake_nvml_module)
and 4 real llama-servers, scraped every 15 s as Prometheus would (OpenMetrics, gzip) beside a
node_exporter scraped alike (the peer); after a minute of warm-up, `--minutes` (default 10)
measured: process CPU over wall time (share of one core), CPU per cycle, RSS, the cycle's wall
time at each scrape (median, p95), and each part's share from its threads' CPU (their kernel
names: agent/threads.py) and the cycle thread's phases (llm_agent_cycle_cpu_seconds_total).
The package is byte-compiled first, as installed. Periodic work falls in the window as the
clock has it: a history seal every 30 minutes of data, the history rules every 5 minutes, a
scheduled benchmark 5 minutes after start and then every 6 hours; `--minutes 30` holds one seal
whatever the start time, 10 minutes may hold one or none. `--history-days 7` starts the daemon on
a history file that already holds a week of its own series (the history rules read a week every
5 minutes: on a fresh file, minutes), written first (~6 minutes).
The warm in-process figure (bench_agent.py's: cycles back to back, caches warm) follows as a
second line, named as such.

    python tests/bench/bench_realtime.py [--minutes 10] [--scrape 15] [--history-days 0]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.bench.common import pct  # noqa: E402
from tests.support.peers import LlamaServer, free_port, wait_until  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402

SHIM = os.path.join(ROOT, "tests", "support", "fake_nvml_module")


TICK = os.sysconf("SC_CLK_TCK")
# each thread by its name (agent/threads.py gives the kernel the Python name) -> the part it works for
PARTS = (("probes", ("probe-", "py-spy-")), ("history", ("history-",)), ("exporter", ("exporter",)),
         ("collectors", ("collector_", "nvml-", "exit-watcher")), ("notify", ("notify-", "remote-write", "reports")),
         ("perf", ("perf-", "bench-guard")))


def own_series(port):
    """The agent's cycle count and its cycle thread's CPU by phase, from its own /metrics."""
    out = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith("llm_agent_cycles_total "):
            out["cycles"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("llm_agent_cycle_cpu_seconds_total{"):
            out["cycle: " + line.split('phase="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("llm_agent_collector_cpu_seconds_total{"):
            out["collector: " + line.split('collector="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def thread_cpu(pid):
    """CPU seconds of each live thread of pid, by thread id: (name, seconds). The scheduler's own
    nanoseconds (schedstat) where the kernel keeps them: utime and stime are whole ticks, and a
    dozen threads' rounding would blur a part of a millisecond per cycle."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    seconds = int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                seconds = (int(rest[11]) + int(rest[12])) / TICK  # utime, stime: fields 14 and 15
        except OSError:  # ended while we read
            continue
        out[int(tid)] = (name, seconds)
    return out


def part_of(tid, name, pid):
    if tid == pid:
        return "cycle (main thread)"
    return next((part for part, prefixes in PARTS if name.startswith(prefixes)), "other: " + name)


def shares(before, after, pid, total):
    """Each part's CPU over the run; threads that ended in between are what the process spent beyond
    the live threads' sum."""
    parts = {}
    for tid, (name, sec) in after.items():
        part = part_of(tid, name, pid)
        parts[part] = parts.get(part, 0.0) + sec - before.get(tid, (name, 0.0))[1]
    parts["threads that ended during the run (and rounding)"] = max(0.0, total - sum(parts.values()))
    return parts


def warm_in_process(urls, n=60):
    """bench_agent's figure: CPU per cycle, cycles back to back in this process, caches warm."""
    from agent.config import parse_config
    from agent.daemon import Agent
    from tests.bench.agent_process import eight_gpus
    from tests.support.fake_pynvml import FakeNvml

    targets = "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{u}"\n' for i, u in enumerate(urls))
    agent = Agent(parse_config(f'[agent]\nhostname = "bench"\n[discovery]\nenabled = false\n{targets}'),
                  nvml=FakeNvml(eight_gpus()), state_dir=tempfile.mkdtemp())
    try:
        for _ in range(5):
            agent.cycle()
        cpu = []
        for _ in range(n):
            c0 = time.process_time()
            agent.cycle()
            cpu.append(time.process_time() - c0)
            time.sleep(0.05)
    finally:
        agent.close()
    return statistics.median(cpu)


def aged_history(path, targets, days, workdir):
    """The history file of a daemon that has run `days` days: its own series (an in-process agent
    on the same targets gives one cycle's), moving as a busy server's do (bench_history's Load),
    written every 5 s up to now through the real store, sealed and rolled up as in real time."""
    from agent.tsdb.store import HistoryStore
    from tests.bench.bench_history import INTERVAL, Load, daemon_families, write_history

    load = Load(daemon_families(targets, workdir))
    cycles = int(days * 86400 / INTERVAL)
    clock = [time.time() - cycles * INTERVAL]
    print(f"writing {days:g} days of history ({len(load.values)} series) ...", flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    store = HistoryStore(path, clock=lambda: clock[0])
    try:
        write_history(store, load, clock, cycles)
    finally:
        store.close()


OPENMETRICS = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
               "Accept-Encoding": "gzip"}  # what Prometheus asks for


class Scraper(threading.Thread):
    """Prometheus' part: both endpoints scraped every `every` seconds, each agent scrape's
    llm_agent_cycle_duration_seconds kept (the cycle's wall time, for its p95)."""

    def __init__(self, urls, every):
        super().__init__(daemon=True)
        self.urls, self.every, self.cycle_seconds, self.failed = urls, every, [], 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(self.every):
            for url in self.urls:
                try:
                    text = requests.get(url, headers=OPENMETRICS, timeout=10).text
                except requests.RequestException:
                    self.failed += 1
                    continue
                for line in text.splitlines():
                    if line.startswith("llm_agent_cycle_duration_seconds "):
                        self.cycle_seconds.append(float(line.split()[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before the measured run")
    ap.add_argument("--scrape", type=float, default=15.0, help="seconds between scrapes of each endpoint (0: none)")
    ap.add_argument("--history-days", type=float, default=0.0,
                    help="start on a history file already holding this many days of the daemon's own series")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="realtime-")
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    servers = [LlamaServer(model, log_dir=tmp).start() for _ in range(4)]
    port = free_port()
    config = os.path.join(tmp, "agent.toml")
    targets = ('[discovery]\nenabled = false\n'  # the four servers, not whatever else runs on this machine
               + "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{s.url}"\n' for i, s in enumerate(servers)))
    with open(config, "w") as f:
        f.write(f'[agent]\nstate_dir = "{tmp}/state"\n[exporter]\nlisten = "127.0.0.1:{port}"\n' + targets)
    if args.history_days:
        aged_history(os.path.join(tmp, "state", "history.db"), targets, args.history_days, tmp)
    node_port = free_port()
    node = subprocess.Popen([shutil.which("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # as installed (pip and the .deb compile the package): run from source with no bytecode, every
    # import is compiled again at start, which leaves ~2 MiB more resident
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "agent")], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                             env={**env, "PYTHONPATH": f"{SHIM}:{ROOT}"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok, 60, what="the agent")
        scraper = Scraper([f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{node_port}/metrics"], args.scrape)
        if args.scrape:
            scraper.start()
        time.sleep(args.warmup)
        scraper.cycle_seconds.clear()
        proc, peer = psutil.Process(agent.pid), psutil.Process(node.pid)
        t0, c0, s0, th0 = time.monotonic(), sum(proc.cpu_times()[:2]), own_series(port), thread_cpu(agent.pid)
        p0 = sum(peer.cpu_times()[:2])
        time.sleep(args.minutes * 60)
        wall, cpu, s1, th1 = time.monotonic() - t0, sum(proc.cpu_times()[:2]) - c0, own_series(port), thread_cpu(agent.pid)
        peer_cpu, peer_rss = sum(peer.cpu_times()[:2]) - p0, peer.memory_info().rss / 2 ** 20
        scraper.stop.set()
        n = s1["cycles"] - s0["cycles"]
        parts = shares(th0, th1, agent.pid, cpu)
        phases = {k: s1[k] - s0.get(k, 0.0) for k in s1 if k.startswith("cycle: ")}
        per_collector = {k: s1[k] - s0.get(k, 0.0) for k in s1 if k.startswith("collector: ")}
        threads_by_name = {}
        for tid, (name, sec) in th1.items():
            key = name.rstrip("0123456789") + ("*" if name[-1:].isdigit() else "")
            threads_by_name[key] = threads_by_name.get(key, 0.0) + sec - th0.get(tid, (name, 0.0))[1]
        rss = proc.memory_info().rss / 2 ** 20
        gpus = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.count("DCGM_FI_DEV_GPU_UTIL{")
    finally:
        agent.terminate()
        agent.wait(20)
        node.terminate()
    try:
        warm = warm_in_process([s.url for s in servers])
    finally:
        for s in servers:
            s.kill()
    print(f"real time, `llm-agent run` at its defaults, {gpus} fake GPUs, 4 real llama-servers, {args.minutes:g} min: "
          f"{cpu / wall * 100:.2f}% of one core, {cpu / n * 1000:.1f} ms CPU per cycle ({n:.0f} cycles), RSS {rss:.1f} MiB")
    if scraper.cycle_seconds:
        print(f"cycle wall time at each scrape ({len(scraper.cycle_seconds)}): median "
              f"{statistics.median(scraper.cycle_seconds) * 1000:.1f} ms, p95 {pct(scraper.cycle_seconds, 95) * 1000:.1f} ms")
    print(f"peer, the same run: node_exporter (the host only){' scraped alike' if args.scrape else ''}: "
          f"{peer_cpu / wall * 100:.2f}% of one core, RSS {peer_rss:.1f} MiB")
    print("share of the process's CPU, by part (thread CPU from /proc/<pid>/task; the cycle's thread split by "
          "llm_agent_cycle_cpu_seconds_total):")
    for part, sec in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {part:<36} {sec / cpu * 100:5.1f}%  {sec / n * 1000:6.2f} ms per cycle")
        if part.startswith("cycle"):
            for phase, psec in sorted(phases.items(), key=lambda kv: -kv[1]):
                print(f"    {phase:<34} {psec / cpu * 100:5.1f}%  {psec / n * 1000:6.2f} ms per cycle")
    top = sorted(per_collector.items(), key=lambda kv: -kv[1])[:8]
    print("the collectors' own CPU (llm_agent_collector_cpu_seconds_total, in whichever thread ran them), the most costly:")
    for name, sec in top:
        print(f"  {name:<36} {sec / cpu * 100:5.1f}%  {sec / n * 1000:6.2f} ms per cycle")
    print("each thread, by name:", ", ".join(f"{k} {v / n * 1000:.2f}" for k, v in
                                           sorted(threads_by_name.items(), key=lambda kv: -kv[1]) if v > 0), "ms per cycle")
    print(f"warm in process (cycles back to back, caches warm; bench_agent.py's figure): {warm * 1000:.1f} ms CPU per cycle")


if __name__ == "__main__":
    main()
