"""What the benchmark scripts share: percentiles and a real agent process with a webhook."""

import os
import subprocess
import sys

from tests.support.peers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pct(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_agent(tmp, target_url, hook_url):
    """`llm-agent run` with the default config plus one target and one webhook channel."""
    config = os.path.join(tmp, "agent.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nstate_dir = "{tmp}/state"\n[exporter]\nlisten = "127.0.0.1:{free_port()}"\n'
                f'[[targets]]\nname = "llama"\nurl = "{target_url}"\n'
                f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{hook_url}"\n')
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
