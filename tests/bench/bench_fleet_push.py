"""Issue 31: a fleet that pushes. N agents (default 50) on loopback, each its own state directory,
port and `host` external label, at the default 5 s interval with the default rules, pushing by
remote write into one Debian VictoriaMetrics; vmalert evaluates the agents' default rules
(`llm-agent rules export`) against it.

Printed: samples/s VictoriaMetrics ingested over a steady period; the agents present (each
`host`); gaps (per agent, the cycles VictoriaMetrics holds in the period against the cycles the
agent's own history holds); the agents' CPU and RSS; vmalert's rules evaluated and failing.

    python tests/bench/bench_fleet_push.py [--agents 50] [--steady 120]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.bench.bench_fleet import cpu_seconds  # noqa: E402
from tests.bench.bench_remote_write_live import rows_inserted  # noqa: E402
from tests.support.agentproc import AgentProcess  # noqa: E402
from tests.support.httpservers import RouteServer  # noqa: E402
from tests.support.peers import VictoriaMetrics, free_port, wait_until  # noqa: E402


def config(i, workdir, port, vm_url):
    return (f'[agent]\nhostname = "agent-{i:03d}"\nstate_dir = "{workdir}/state"\n'
            f'[exporter]\nlisten = "127.0.0.1:{port}"\n[collectors.nvml]\nenabled = false\n[discovery]\nenabled = false\n'
            f'[health]\npy_spy = false\n[[remote_write]]\nurl = "{vm_url}/api/v1/write"\n'
            f'external_labels = {{ host = "agent-{i:03d}" }}\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--steady", type=float, default=120.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fleet-push-")
    vm = VictoriaMetrics(tmp).start()
    agents = []
    try:
        for i in range(args.agents):
            d = os.path.join(tmp, f"agent{i:03d}")
            os.makedirs(os.path.join(d, "state"))
            port = free_port()
            agents.append(AgentProcess(d, config(i, d, port, vm.url), port).start(wait=False))
        for i, a in enumerate(agents):
            time.sleep(0.5)
            if a.proc.poll() is not None:  # its port taken meanwhile (50 picked at once): another port
                port = free_port()
                a = agents[i] = AgentProcess(a.workdir, config(i, a.workdir, port, vm.url), port).start(wait=False)
            wait_until(lambda a=a: a.proc.poll() is None and bool(a.metrics()), 120, what="an agent serving")
        time.sleep(30)  # every agent through its first pushes
        procs = [psutil.Process(a.proc.pid) for a in agents]
        cpu0, rows0, t0 = cpu_seconds(procs), rows_inserted(vm), time.time()
        time.sleep(args.steady)
        cpu, rows, t1 = cpu_seconds(procs) - cpu0, rows_inserted(vm) - rows0, time.time()
        rss = sorted(p.memory_info().rss / 2 ** 20 for p in procs)
        time.sleep(15)  # what the last cycles pushed, searchable
        window = f"{int(t1 - t0)}s"
        present = vm.query("count(count by (host) (llm_agent_cycles_total))", t1)
        held = {r["metric"]["host"]: float(r["value"][1])
                for r in vm.query(f"count_over_time(llm_agent_cycles_total[{window}])", t1)}
        gaps = []
        for i, a in enumerate(agents):
            own = requests.get(f"http://127.0.0.1:{a.port}/api/v1/query",
                               params={"query": f"count_over_time(llm_agent_cycles_total[{window}])", "time": repr(t1)},
                               timeout=10).json()["data"]["result"]
            ours = float(own[0]["value"][1]) if own else 0.0
            if held.get(f"agent-{i:03d}") != ours:
                gaps.append((i, held.get(f"agent-{i:03d}"), ours))
        rules = os.path.join(tmp, "rules.yml")
        subprocess.run([sys.executable, "-m", "agent.cli", "rules", "export", "--config", agents[0].config_path,
                        "-o", rules], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, check=True, timeout=60)
        with RouteServer({"/api/v2/alerts": lambda h: (200, b"", "application/json")}) as notifier:
            port = free_port()
            vmalert = subprocess.Popen([shutil.which("vmalert"), f"-rule={rules}", f"-datasource.url={vm.url}",
                                        f"-remoteWrite.url={vm.url}", f"-notifier.url={notifier.url}",
                                        f"-httpListenAddr=127.0.0.1:{port}", "-evaluationInterval=5s"],
                                       stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(40)
            groups = requests.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()["data"]["groups"]
            vmalert.terminate()
        due = [r for g in groups if g["interval"] <= 30 for r in g["rules"]]
        evaluated = [r for r in due if r["lastEvaluation"].startswith("20")]
        failing = [r["name"] for r in evaluated if r.get("lastError")]
        firing = sum(1 for r in evaluated if r.get("state") == "firing")
    finally:
        for a in agents:
            a.stop()
        vm.stop()
    wall = t1 - t0
    print(f"{args.agents} agents pushing into one VictoriaMetrics, {wall:.0f} s steady:")
    print(f"  ingested {rows / wall:,.0f} samples/s; agents present {present[0]['value'][1] if present else 0}; "
          f"agents with a gap (VictoriaMetrics' cycles != the agent's own): {len(gaps)} {gaps[:5]}")
    print(f"  agents' CPU {cpu / wall * 100 / args.agents:.2f}% of a core each, {cpu / wall * 100:.1f}% all together; "
          f"RSS median {rss[len(rss) // 2]:.1f} MiB, max {rss[-1]:.1f} MiB")
    print(f"  vmalert on the exported rules: {len(groups)} groups, {len(evaluated)} of {len(due)} rules evaluated, "
          f"{len(failing)} failing {failing[:5]}, {firing} firing")


if __name__ == "__main__":
    main()
