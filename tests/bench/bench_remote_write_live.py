"""The live arm of bench_remote_write.py: the real daemon against vmagent on the same work.

Four real llama-servers (tiny models) and the host, read every 5 s and pushed into Debian's
VictoriaMetrics (one instance per pusher, so each one's `vm_rows_inserted_total` counts only
what it received):
  A. `llm-agent run` at its defaults, no remote write: its CPU and RSS;
  B. the same with [[remote_write]]: its CPU, RSS and the samples VictoriaMetrics received;
  C. vmagent scraping the same 4 llama-servers and a node_exporter (the host) every 5 s: its CPU
     (node_exporter's apart), RSS and the samples received.
The figure the issue asks: the agent's extra CPU for pushing (B - A) per sample against
vmagent's whole CPU per sample.
"""

import os
import shutil
import subprocess
import tempfile
import time

import psutil
import requests

from tests.bench.common import agent_process
from tests.support.peers import LlamaServer, VictoriaMetrics, free_port, wait_until
from tests.support.tinymodel import write_tiny_llama


def cpu_seconds(procs):
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def rows_inserted(vm):
    for line in requests.get(vm.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith('vm_rows_inserted_total{type="promremotewrite"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def measure(procs, vm, minutes):
    """CPU seconds of `procs` and rows `vm` received over `minutes`, after a minute of warm-up."""
    time.sleep(60)
    ps = [psutil.Process(p.pid) for p in procs]
    cpu0, rows0, t0 = cpu_seconds(ps), rows_inserted(vm) if vm else 0.0, time.monotonic()
    time.sleep(minutes * 60)
    cpu, rows, wall = cpu_seconds(ps) - cpu0, (rows_inserted(vm) if vm else 0.0) - rows0, time.monotonic() - t0
    rss = [p.memory_info().rss / 2 ** 20 for p in ps]
    return cpu, rows, wall, rss


def live(minutes):
    tmp = tempfile.mkdtemp(prefix="rw-live-")
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    servers = [LlamaServer(model, log_dir=tmp).start() for _ in range(4)]
    targets = "".join(f'[[targets]]\nname = "llama{i}"\nurl = "{s.url}"\n' for i, s in enumerate(servers))
    base = f'[discovery]\nenabled = false\n{targets}'
    try:
        agent, _ = agent_process(tmp, base)
        cpu_a, _, wall_a, rss_a = measure([agent], None, minutes)
        agent.terminate()
        agent.wait(20)

        os.makedirs(os.path.join(tmp, "b"))
        vm_b = VictoriaMetrics(os.path.join(tmp, "b")).start()
        agent, _ = agent_process(tmp, base + f'[[remote_write]]\nurl = "{vm_b.url}/api/v1/write"\n')
        cpu_b, rows_b, wall_b, rss_b = measure([agent], vm_b, minutes)
        agent.terminate()
        agent.wait(20)
        vm_b.stop()

        os.makedirs(os.path.join(tmp, "c"))
        vm_c = VictoriaMetrics(os.path.join(tmp, "c")).start()
        node_port, vmagent_port = free_port(), free_port()
        node = subprocess.Popen([shutil.which("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scrape = os.path.join(tmp, "scrape.yml")
        with open(scrape, "w") as f:
            f.write("global:\n  scrape_interval: 5s\nscrape_configs:\n"
                    "  - job_name: llama\n    static_configs:\n      - targets: ["
                    + ", ".join(repr(s.url.split("//")[1]) for s in servers) + "]\n"
                    f"  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n")
        vmagent = subprocess.Popen([shutil.which("vmagent"), f"-promscrape.config={scrape}",
                                    f"-remoteWrite.url={vm_c.url}/api/v1/write", f"-httpListenAddr=127.0.0.1:{vmagent_port}",
                                    f"-remoteWrite.tmpDataPath={tmp}/vmagent-data"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: requests.get(f"http://127.0.0.1:{vmagent_port}/health", timeout=1).ok, 30, what="vmagent")
        cpu_c, rows_c, wall_c, rss_c = measure([vmagent, node], vm_c, minutes)
        vmagent.terminate()
        node.terminate()
        vm_c.stop()
    finally:
        for s in servers:
            s.kill()
    extra = cpu_b / wall_b - cpu_a / wall_a  # CPU seconds per second the pushing adds
    print(f"live, {minutes:g} min per arm, 4 llama-servers + the host every 5 s:")
    print(f"  agent without remote write: {cpu_a / wall_a * 100:.2f}% of a core, RSS {rss_a[0]:.1f} MiB")
    print(f"  agent with remote write:    {cpu_b / wall_b * 100:.2f}% of a core, RSS {rss_b[0]:.1f} MiB; "
          f"{rows_b / wall_b:.0f} samples/s received; extra CPU for pushing "
          f"{max(extra, 0) / (rows_b / wall_b) * 1e6:.1f} us a sample")
    print(f"  vmagent (+ node_exporter):  {cpu_c / wall_c * 100:.2f}% of a core (vmagent and node_exporter together), "
          f"RSS vmagent {rss_c[0]:.1f} MiB, node_exporter {rss_c[1]:.1f} MiB; {rows_c / wall_c:.0f} samples/s received; "
          f"{cpu_c / rows_c * 1e6:.1f} us a sample")
