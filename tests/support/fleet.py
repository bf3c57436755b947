"""A fleet on loopback, the topology the README recommends once one box is not enough: N
agents (each its own state directory, port and hostname) watching shared real llama-servers and
pushing their alerts to a real two-replica Alertmanager cluster (gossip on, peer-timeout short),
a real Prometheus scraping every agent through file_sd, and a webhook receiver behind
Alertmanager. Used by tests/integration/test_fleet.py (a few agents) and
tests/bench/bench_fleet.py (50)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import List, Optional

import requests

from .agentproc import AgentProcess
from .peers import Prometheus, _Server, free_port, require, wait_until


class AlertmanagerReplica(_Server):
    def __init__(self, workdir: str, config: str, cluster_port: int, peers: List[int], peer_timeout: str):
        path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        require("alertmanager", path is not None, "apt-get install prometheus-alertmanager")
        self.port = free_port()
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.args = [path, f"--config.file={config}", f"--storage.path={workdir}/data",
                     f"--web.listen-address=127.0.0.1:{self.port}", f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                     f"--cluster.peer-timeout={peer_timeout}", "--cluster.settle-timeout=5s",
                     "--cluster.gossip-interval=100ms", "--cluster.pushpull-interval=5s"]
        self.args += [f"--cluster.peer=127.0.0.1:{p}" for p in peers]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AlertmanagerReplica":
        self.log = open(os.path.join(self.workdir, "alertmanager.log"), "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        return self


class AlertmanagerCluster:
    """Two replicas gossiping, one webhook receiver, grouped by alertname (a fleet-wide fault is
    one notification per group, whichever replica sends it)."""

    def __init__(self, workdir: str, webhook_url: str, group_wait: str = "10s", replicas: int = 2,
                 peer_timeout: str = "3s"):
        os.makedirs(workdir, exist_ok=True)
        config = os.path.join(workdir, "alertmanager.yml")
        with open(config, "w") as f:
            f.write("route:\n  receiver: hook\n  group_by: [alertname]\n"
                    f"  group_wait: {group_wait}\n  group_interval: 5m\n  repeat_interval: 4h\n"
                    f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {json.dumps(webhook_url)}\n")
        ports = [free_port() for _ in range(replicas)]
        self.replicas = [AlertmanagerReplica(os.path.join(workdir, f"am{i}"), config, port,
                                             [p for p in ports if p != port], peer_timeout)
                         for i, port in enumerate(ports)]

    @property
    def urls(self) -> List[str]:
        return [r.url for r in self.replicas]

    def start(self) -> "AlertmanagerCluster":
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            wait_until(lambda r=r: requests.get(r.url + "/-/ready", timeout=1).status_code == 200, 60,
                       what="an Alertmanager replica")
        wait_until(lambda: all(len(requests.get(r.url + "/api/v2/status", timeout=2).json()["cluster"].get("peers") or [])
                               == len(self.replicas) for r in self.replicas), 60, what="the cluster to form")
        return self

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()


def agent_config(i: int, workdir: str, port: int, targets: List[str], am_urls: List[str], interval: str) -> str:
    target_text = "".join(f'[[targets]]\nname = "llama{j}"\nurl = "{u}"\n' for j, u in enumerate(targets))
    return (f'[agent]\ninterval = "{interval}"\nhostname = "agent-{i:03d}"\nstate_dir = "{workdir}/state"\n'
            f'[exporter]\nlisten = "127.0.0.1:{port}"\n'
            '[collectors.nvml]\nenabled = false\n[discovery]\nenabled = false\n[health]\npy_spy = false\n'
            f'{target_text}'
            f'[[notify]]\nname = "alertmanager"\ntype = "alertmanager"\nurls = {json.dumps(am_urls)}\n')


def start_agents(n: int, workdir: str, targets: List[str], am_urls: List[str], interval: str = "5s") -> List[AgentProcess]:
    agents = []
    for i in range(n):
        d = os.path.join(workdir, f"agent{i:03d}")
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        port = free_port()
        agents.append(AgentProcess(d, agent_config(i, d, port, targets, am_urls, interval), port).start(wait=False))
    for a in agents:
        wait_until(lambda a=a: bool(a.metrics()), 60, what="an agent serving")
    return agents


def file_sd_prometheus(workdir: str, agents: List[AgentProcess], interval: str = "5s") -> Prometheus:
    """Prometheus scraping every agent, found through a file_sd file (as contrib/ sets it up)."""
    os.makedirs(workdir, exist_ok=True)
    sd = os.path.join(workdir, "agents.json")
    with open(sd, "w") as f:
        json.dump([{"targets": [f"127.0.0.1:{a.port}" for a in agents], "labels": {"cluster": "loopback"}}], f)
    prom = Prometheus([], workdir, interval=interval)
    with open(prom.config, "w") as f:
        f.write(f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
                "scrape_configs:\n  - job_name: llm-agent\n    file_sd_configs:\n"
                f"      - files: [{json.dumps(sd)}]\n")
    return prom.start()


def group_notifications(bodies: List[dict], status: Optional[str] = "firing") -> dict:
    """groupKey -> the webhook notifications Alertmanager sent for it (with that status)."""
    out: dict = {}
    for b in bodies:
        if isinstance(b, dict) and b.get("version") == "4" and (status is None or b["status"] == status):
            out.setdefault(b["groupKey"], []).append(b)
    return out
