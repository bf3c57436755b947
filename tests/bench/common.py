"""What the benchmark scripts share: percentiles, a real agent process with a webhook, and an
in-process agent on 8 fake GPUs whose cycles can be fast-forwarded."""

import os
import subprocess
import sys
import tempfile

from tests.support.peers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pct(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def agent_process(tmp, config_body, agent_section="", state=None):
    """`llm-agent run` with `config_body` (TOML after [agent] and [exporter]) in its own state
    directory under `tmp` (or `state`, prepared beforehand), ready: (process, its /metrics URL)."""
    import requests

    from tests.support.peers import wait_until

    state = state or tempfile.mkdtemp(dir=tmp)
    port = free_port()
    config = os.path.join(state, "agent.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nstate_dir = "{state}"\n{agent_section}[exporter]\nlisten = "127.0.0.1:{port}"\n{config_body}')
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: requests.get(url, timeout=2).ok, 60, what="the agent")
    return proc, url


def start_agent(tmp, target_url, hook_url):
    """`llm-agent run` with the default config plus one target and one webhook channel (group_interval 0s)."""
    return agent_process(tmp, f'[[targets]]\nname = "llama"\nurl = "{target_url}"\n'
                              f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{hook_url}"\n'
                              # each fault's page and resolve at once: detection is measured here, grouping in
                              # bench_grouping.py
                              f'group_interval = "0s"\n')[0]


def fake_gpu_agent():
    """An in-process agent with the default config, 8 fake GPUs and the host collector, warmed up."""
    from agent.config import parse_config
    from agent.daemon import Agent
    from tests.bench.agent_process import eight_gpus
    from tests.support.fake_pynvml import FakeNvml

    agent = Agent(parse_config('[agent]\nhostname = "bench"\n[collectors.host]\nenabled = true\n'),
                  nvml=FakeNvml(eight_gpus()), state_dir=tempfile.mkdtemp(), discover=lambda: [])
    for _ in range(3):
        agent.cycle()
    return agent


def fast_forward(agent, cycles=400):
    """`cycles` real collections stamped 5 s apart (400: ~33 minutes, so 30-minute ranges fill)."""
    t = agent.runner.clock()
    for i in range(cycles):
        snap = agent.runner.run()
        yield type(snap)(t + 5 * i, snap.families, snap.collectors, snap.problems)
