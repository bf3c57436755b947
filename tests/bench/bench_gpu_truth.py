"""Issue 30: what the GPU-and-serving derivations add to a cycle, at 8 GPUs and 4 targets.

8 fake GPUs (the fake pynvml, read by the real NVML collector) with 12 processes: each of 4
targets is a real process with two children (its workers, one per GPU), whose ancestry is
read from /proc as on a host; the energy counters move every cycle, the per-process samples
too. Timed per cycle, warm, in process: the gpu_energy deriver (which model uses which GPU,
energy per model, per token) and the xid_events deriver (Xids joined with GPUs, reboot
boots), beside the NVML collector's own collect on the same fake as the peer figure. Also the
engine-wedge bookkeeping (Liveness.observe_progress) for 4 targets.

    python tests/bench/bench_gpu_truth.py [--cycles 2000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.collectors.gpu_energy import GpuEnergy  # noqa: E402
from agent.collectors.kernel import XidEvents  # noqa: E402
from agent.collectors.liveness import Liveness  # noqa: E402
from agent.collectors.nvml import NvmlCollector  # noqa: E402
from agent.config import CostSettings  # noqa: E402
from agent.model import Snapshot, counter, gauge  # noqa: E402
from tests.support.fake_pynvml import FakeGpu, FakeNvml  # noqa: E402

SLEEPER = ("import subprocess, sys, time\n"
           "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)']) for _ in range(2)]\n"
           "print(' '.join(str(k.pid) for k in kids), flush=True)\ntime.sleep(3600)\n")


def servers():
    procs = []
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
        procs.append((p, [int(x) for x in p.stdout.readline().split()]))
    return procs


def median_us(samples):
    return statistics.median(samples) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=2000)
    args = ap.parse_args()
    procs = servers()
    gpus = []
    for i in range(8):
        parent, kids = procs[i // 2]
        worker = kids[i % 2]
        gpus.append(FakeGpu(uuid=f"GPU-{i:08d}", minor=i, energy_mj=1_000_000,
                            processes=[(worker, 20 << 30), (4_000_000 + i, 1 << 30)], process_utilization=[]))
    nvml = NvmlCollector(FakeNvml(gpus), process_name=lambda pid: "python3", process_owner=lambda pid: {},
                         xid_events=False)
    now = [1000.0]
    energy = GpuEnergy(CostSettings(electricity_per_kwh=0.2), clock=lambda: now[0])
    xids = XidEvents()
    lives = [Liveness(f"s{n}", lambda: now[0], None, wedge_after=30.0) for n in range(4)]
    tokens = 0.0
    t_nvml, t_energy, t_xid, t_wedge = [], [], [], []
    try:
        for cycle in range(args.cycles):
            now[0] += 5.0
            tokens += 500
            for i, g in enumerate(gpus):
                g.energy_mj += 1_500_000
                g.process_utilization = [(g.processes[0][0], cycle + 1, 70, 30, 0, 0), (4_000_000 + i, cycle + 1, 5, 1, 0, 0)]
            start = time.perf_counter()
            fams = tuple(nvml.collect())
            t_nvml.append(time.perf_counter() - start)
            info, served = gauge("llm_agent_target_process_info", ""), gauge("llm_agent_target_info", "")
            made = counter("llm_agent_generation_tokens_total", "")
            for n, (p, _) in enumerate(procs):
                info.add({"server": f"s{n}", "pid": str(p.pid)}, 1)
                served.add({"server": f"s{n}", "model": f"m{n}", "build": "b"}, 1)
                made.add({"server": f"s{n}", "engine": "vllm", "model": f"m{n}"}, tokens)
            xid_fam = counter("llm_agent_kernel_xid_events_total", "").add({"pci_bus_id": "00000000:17:00.0", "xid": "13"}, 1)
            view = Snapshot(now[0], fams + (info, served, made, xid_fam))
            start = time.perf_counter()
            energy.derive(view)
            t_energy.append(time.perf_counter() - start)
            start = time.perf_counter()
            xids.derive(view)
            t_xid.append(time.perf_counter() - start)
            start = time.perf_counter()
            for n, live in enumerate(lives):
                live.observe_progress(True, True, {"tokens": tokens + n, "requests": tokens / 100})
            t_wedge.append(time.perf_counter() - start)
    finally:
        nvml.close()
        for p, kids in procs:
            for k in kids:
                subprocess.run(["kill", str(k)])
            p.kill()
    added = [a + b + c for a, b, c in zip(t_energy, t_xid, t_wedge)]
    print(f"{args.cycles} cycles, 8 GPUs (12 processes, 8 of them 4 targets' children), 4 targets")
    print(f"NVML collector collect (peer): median {median_us(t_nvml):.0f} us")
    print(f"gpu_energy derive:             median {median_us(t_energy):.0f} us")
    print(f"xid_events derive:             median {median_us(t_xid):.0f} us")
    print(f"wedge bookkeeping (4 targets): median {median_us(t_wedge):.0f} us")
    print(f"added per cycle:               median {median_us(added):.0f} us "
          f"({statistics.median(added) / statistics.median(t_nvml):.2f}x the NVML collect; goal under 300 us)")


if __name__ == "__main__":
    main()
