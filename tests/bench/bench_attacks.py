"""Issue 27's attacks against the real daemon (`llm-agent run`, its own process), each with what
the host pays: peak RSS (polled), the worst /metrics and /healthz latency seen by a scraper
polling them throughout, and the cycle time the agent reports.

1. query bomb: `count_over_time(vector(1)[1d:1ms])` on the query API;
2. twenty slow queries at once (each runs to its deadline) while scraping;
3. 12,000 series of one target flipping every cycle under a rule that fires on them;
4. Ollama's /api/ps listing 80,000 models (and one 5 MB name);
5. Ollama churning 20,000 new model names every cycle, for two minutes;
6. a kernel log of 50,000 made-up (PCI address, Xid) pairs, then SIGTERM;
7. a llama.cpp router listing 100,000 new model names every cycle, for two minutes.

    python tests/bench/bench_attacks.py [--only N]
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.support.agentproc import AgentProcess  # noqa: E402
from tests.support.httpservers import RouteServer  # noqa: E402
from tests.support.ollama import FakeOllama  # noqa: E402
from tests.support.peers import free_port  # noqa: E402

BASE = '[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n[probes]\nenabled = false\n'


class Watch:
    """Polls the agent's RSS and the latency of /metrics and /healthz until stopped."""

    def __init__(self, agent: AgentProcess):
        self.agent, self.proc = agent, psutil.Process(agent.proc.pid)
        self.rss, self.metrics, self.health = [], [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        base = f"http://127.0.0.1:{self.agent.port}"
        while not self.stop.wait(0.1):
            try:
                self.rss.append(self.proc.memory_info().rss)
                for path, into in (("/metrics", self.metrics), ("/healthz", self.health)):
                    t0 = time.monotonic()
                    requests.get(base + path, timeout=60)
                    into.append(time.monotonic() - t0)
            except (psutil.Error, requests.RequestException):
                pass

    def report(self, name: str, extra: str = "", cycle: float = -1.0) -> None:
        self.stop.set()
        self.thread.join(70)
        cycle = self.agent.value("llm_agent_cycle_duration_seconds") if cycle < 0 else cycle
        print(f"{name}: peak RSS {max(self.rss) / 2**20:.0f} MiB; /metrics median "
              f"{statistics.median(self.metrics) * 1000:.1f} ms, worst {max(self.metrics) * 1000:.0f} ms; /healthz worst "
              f"{max(self.health) * 1000:.0f} ms; last cycle {cycle * 1000:.1f} ms{'; ' + extra if extra else ''}")


def daemon(tmp, body: str) -> AgentProcess:
    port = free_port()
    state = tempfile.mkdtemp(dir=tmp)
    return AgentProcess(state, f'[agent]\nstate_dir = "{state}"\n[exporter]\nlisten = "127.0.0.1:{port}"\n' + body,
                        port).start()


def query_bomb(tmp):
    agent = daemon(tmp, BASE)
    watch = Watch(agent)
    time.sleep(2)
    t0 = time.monotonic()
    r = requests.get(f"http://127.0.0.1:{agent.port}/api/v1/query",
                     params={"query": "count_over_time(vector(1)[1d:1ms])"}, timeout=120)
    took = time.monotonic() - t0
    time.sleep(1)
    watch.report("1. query bomb", f"answered {r.status_code} {r.json().get('errorType')} in {took * 1000:.0f} ms")
    agent.stop()


def slow_queries(tmp):
    agent = daemon(tmp, BASE + '[history]\nquery_max_samples = 100000000\nquery_timeout = "2s"\n')
    time.sleep(2)
    watch = Watch(agent)
    codes = []

    def one():
        now = time.time()
        r = requests.post(f"http://127.0.0.1:{agent.port}/api/v1/query_range",
                          data={"query": "count_over_time(vector(1)[20s:1ms])", "start": now - 60, "end": now, "step": 1},
                          timeout=120)
        codes.append(r.json().get("errorType"))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    watch.report("2. 20 slow queries while scraping",
                 f"{codes.count('timeout')} ran to their deadline, {codes.count('unavailable')} refused at once")
    agent.stop()


def flipping(tmp):
    state = {"on": True}

    def body(_h):
        state["on"] = not state["on"]
        v = 1 if state["on"] else 0
        return 200, "".join(f'flap{{id="{i}"}} {v}\n' for i in range(12_000)).encode(), "text/plain"

    target = RouteServer({"/metrics": body})
    target.__enter__()
    agent = daemon(tmp, BASE + '[alerting]\ndefault_rules = false\n[[rules]]\nname = "Flap"\nexpr = "flap > 0"\n'
                              f'[[targets]]\nname = "flapper"\nurl = "{target.url}"\nkind = "openmetrics"\n')
    watch = Watch(agent)
    time.sleep(60)
    watch.report("3. 12,000 series flipping every cycle",
                 f"alerts firing now {agent.value('llm_agent_alerts', state='firing'):.0f}")
    agent.stop()
    target.__exit__()


def ollama_huge(tmp):
    ollama = FakeOllama()
    models = [{"name": f"m{i}", "size": 10, "size_vram": 10, "details": {}} for i in range(80_000)]
    models.insert(0, {"name": "x" * (5 << 20), "size": 10, "size_vram": 10, "details": {}})
    ollama.ps_body = json.dumps({"models": models}).encode()
    agent = daemon(tmp, BASE + f'[[targets]]\nname = "ollama"\nurl = "{ollama.url}"\nkind = "ollama"\n')
    watch = Watch(agent)
    time.sleep(30)
    size = len(requests.get(f"http://127.0.0.1:{agent.port}/metrics", timeout=60).content)
    watch.report("4. Ollama listing 80,000 models and a 5 MB name",
                 f"/metrics {size / 2**20:.1f} MiB; dropped {agent.value('llm_agent_target_series_dropped_total'):.0f} series")
    agent.stop()
    ollama.close()


def ollama_churn(tmp):
    ollama = FakeOllama()
    n = [0]
    original = ollama.ps_body

    def churn():
        while not stop.wait(1.0):
            n[0] += 1
            ollama.ps_body = json.dumps({"models": [{"name": f"c{n[0]}-{i}", "size": 10, "size_vram": 10, "details": {}}
                                                    for i in range(20_000)]}).encode()

    stop = threading.Event()
    threading.Thread(target=churn, daemon=True).start()
    agent = daemon(tmp, BASE + f'[[targets]]\nname = "ollama"\nurl = "{ollama.url}"\nkind = "ollama"\n')
    watch = Watch(agent)
    time.sleep(120)
    stop.set()
    ollama.ps_body = original
    state = os.path.dirname(agent.config_path)
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(state) for f in fs)
    watch.report("5. Ollama churning 20,000 names a second for 2 minutes", f"state directory {disk / 2**20:.0f} MiB")
    agent.stop()
    ollama.close()


def kmsg_flood(tmp):
    path = os.path.join(tmp, "kmsg")
    with open(path, "w") as f:
        for i in range(50_000):
            f.write(f"3,{i + 1},{1_000_000 + i},-;NVRM: Xid (PCI:0000:{i % 5000 // 256:02x}:{i % 256:02x}): "
                    f"{[79, 48, 999_999][i % 3]}, pid=1, flood\n")
    agent = daemon(tmp, BASE + f'[collectors.kernel]\nkmsg_path = "{path}"\n')
    watch = Watch(agent)
    time.sleep(30)
    series = sum(1 for k in agent.metrics() if k.startswith("llm_agent_kernel_xid_events_total{"))
    alerts = agent.value("llm_agent_alerts", state="firing")
    cycle = agent.value("llm_agent_cycle_duration_seconds")
    watch.stop.set()
    t0 = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(60)
    watch.report("6. kernel log flood of 50,000 made-up Xids",
                 f"{series} Xid series, {alerts:.0f} alerts firing; SIGTERM to exit {time.monotonic() - t0:.1f} s", cycle)


def router_churn(tmp):
    """A llama.cpp router listing 100,000 new model names every cycle, half of them "loaded"."""
    n = [0]
    props = json.dumps({"role": "router", "build_info": "b1", "default_generation_settings": {"n_ctx": 512}}).encode()

    def models(_handler):
        n[0] += 1
        listed = [{"id": f"r{n[0]}-{i}", "status": {"value": "loaded" if i % 2 else "unloaded"}} for i in range(100_000)]
        return 200, json.dumps({"data": listed}).encode(), "application/json"

    routes = {"/health": lambda h: (200, b'{"status":"ok"}', "application/json"),
              "/props": lambda h: (200, props, "application/json"), "/models": models,
              "/metrics": lambda h: (200, b"llamacpp:requests_processing 0\n", "text/plain")}
    server = RouteServer(routes).__enter__()
    agent = daemon(tmp, BASE + f'[[targets]]\nname = "router"\nurl = "{server.url}"\n')
    watch = Watch(agent)
    time.sleep(120)
    state = os.path.dirname(agent.config_path)
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(state) for f in fs)
    dropped = agent.value("llm_agent_target_series_dropped_total", server="router", reason="sample_limit")
    watch.report("7. a router listing 100,000 new model names a cycle for 2 minutes",
                 f"{n[0]} lists read, {server.hits.get('/metrics', 0)} model scrapes; {dropped:.0f} series "
                 f"dropped at sample_limit; state directory {disk / 2**20:.0f} MiB")
    agent.stop()
    server.__exit__(None, None, None)


ATTACKS = [query_bomb, slow_queries, flipping, ollama_huge, ollama_churn, kmsg_flood, router_churn]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", type=int, default=0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="attacks-")
    for i, attack in enumerate(ATTACKS, 1):
        if not args.only or args.only == i:
            attack(tmp)
