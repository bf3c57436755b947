"""Issue 32: what the host pays, seen from outside as `top` sees it. The real daemon
(`llm-agent run`) at its defaults (5 s interval, default rules, history on, probes on) in real
time, reading 8 fake GPUs through the fake NVML module it imports (tests/support/fake_nvml_module)
and 4 real llama-servers; after a minute of warm-up, `--minutes` (default 10) measured: process CPU
over wall time (share of one core), CPU per cycle, RSS. The warm in-process figure
(bench_agent.py's: cycles back to back, caches warm) follows as a second line, named as such.

    python tests/bench/bench_realtime.py [--minutes 10]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.support.peers import LlamaServer, free_port, wait_until  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402

SHIM = os.path.join(ROOT, "tests", "support", "fake_nvml_module")


def cycles(port):
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith("llm_agent_cycles_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="realtime-")
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    servers = [LlamaServer(model, log_dir=tmp).start() for _ in range(4)]
    port = free_port()
    config = os.path.join(tmp, "agent.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nstate_dir = "{tmp}/state"\n[exporter]\nlisten = "127.0.0.1:{port}"\n'
                '[discovery]\nenabled = false\n'  # the four servers, not whatever else runs on this machine
                + "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{s.url}"\n' for i, s in enumerate(servers)))
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": f"{SHIM}:{ROOT}"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok, 60, what="the agent")
        time.sleep(60)
        proc = psutil.Process(agent.pid)
        t0, c0, n0 = time.monotonic(), sum(proc.cpu_times()[:2]), cycles(port)
        time.sleep(args.minutes * 60)
        wall, cpu, n = time.monotonic() - t0, sum(proc.cpu_times()[:2]) - c0, cycles(port) - n0
        rss = proc.memory_info().rss / 2 ** 20
        gpus = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.count("DCGM_FI_DEV_GPU_UTIL{")
    finally:
        agent.terminate()
        agent.wait(20)
    try:
        warm = warm_in_process([s.url for s in servers])
    finally:
        for s in servers:
            s.kill()
    print(f"real time, `llm-agent run` at its defaults, {gpus} fake GPUs, 4 real llama-servers, {args.minutes:g} min: "
          f"{cpu / wall * 100:.2f}% of one core, {cpu / n * 1000:.1f} ms CPU per cycle ({n:.0f} cycles), RSS {rss:.1f} MiB")
    print(f"warm in process (cycles back to back, caches warm; bench_agent.py's figure): {warm * 1000:.1f} ms CPU per cycle")


if __name__ == "__main__":
    main()
