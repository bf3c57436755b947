"""Soak (issue 26): the real daemon (`llm-agent run`) at its default settings (5 s interval,
probes every 60 s, every default rule) watching a real llama-server under steady synthetic
load for `--minutes` (default 120), with one planned restart through systemd (a fake
`systemctl` answering as systemd does while a restart job runs: the unit deactivating) and
one kill -9 behind systemd's back. Every notification goes to a local webhook receiver.

The claim: pages sent = exactly one (the kill); the restart, the load, a young agent's first
hour, and the server's slow moments page nothing. Prints the pages by rule and severity, and
what the agent cost (CPU over wall time, RSS) over the run.

    python tests/bench/bench_soak.py [--minutes 120]
"""

import argparse
import os
import signal
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.support.agentproc import AgentProcess  # noqa: E402
from tests.support.peers import LlamaServer, free_port, wait_until  # noqa: E402
from tests.support.receivers import WEBHOOK, Receiver  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402

ACTIVE = "ActiveState=active\nSubState=running\nResult=success\nLoadState=loaded\n"
STOPPING = "ActiveState=deactivating\nSubState=stop-sigterm\nResult=success\nLoadState=loaded\n"


class Load:
    """A user sending completions one after another, a short pause between them."""

    def __init__(self, url):
        self.url = url
        self.stop = threading.Event()
        self.sent = self.failed = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop.wait(0.5):
            try:
                requests.post(self.url + "/completion", json={"prompt": "Once upon a time", "n_predict": 64,
                                                              "temperature": 0.7}, timeout=30).raise_for_status()
                self.sent += 1
            except (requests.RequestException, OSError):
                self.failed += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=120.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="soak-")
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    unit_state = os.path.join(tmp, "unit-state")
    with open(unit_state, "w") as f:
        f.write(ACTIVE)
    systemctl = os.path.join(tmp, "systemctl")
    with open(systemctl, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nif sys.argv[1] == 'show':\n"
                f"    sys.stdout.write(open({unit_state!r}).read())\n")
    os.chmod(systemctl, 0o755)
    server = LlamaServer(model, log_dir=tmp).start()
    receiver = Receiver(WEBHOOK)
    port = free_port()
    state = os.path.join(tmp, "state")
    os.makedirs(state)
    agent = AgentProcess(tmp, f'[agent]\nstate_dir = "{state}"\n[exporter]\nlisten = "127.0.0.1:{port}"\n'
                              f'[health]\nsystemctl = "{systemctl}"\n'
                              f'[[targets]]\nname = "llama"\nurl = "{server.url}"\nunit = "llama-soak.service"\n'
                              f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n', port).start()
    proc = psutil.Process(agent.proc.pid)
    load = Load(server.url)
    start = time.monotonic()
    total = args.minutes * 60
    events = []
    try:
        time.sleep(total / 3)
        with open(unit_state, "w") as f:  # systemctl restart llama-soak: a stop job, then a start
            f.write(STOPPING)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        time.sleep(4)
        with open(unit_state, "w") as f:
            f.write(ACTIVE)
        server = LlamaServer(model, port=server.port, log_dir=tmp).start()
        load.url = server.url
        events.append(("planned restart", time.monotonic() - start))
        time.sleep(total / 3)
        server.kill()  # behind systemd's back: the unit still says active
        events.append(("kill -9", time.monotonic() - start))
        wait_until(lambda: any(a["labels"]["alertname"] == "LlmTargetDown" for a in receiver.alerts("firing")), 30,
                   what="the crash page")
        time.sleep(10)  # systemd's Restart=on-failure, RestartSec=10
        server = LlamaServer(model, port=server.port, log_dir=tmp).start()
        time.sleep(max(0.0, total - (time.monotonic() - start)))
        cpu = sum(proc.cpu_times()[:2])
        rss = proc.memory_info().rss
    finally:
        load.stop.set()
        agent.stop()
        server.kill()
        receiver.close()
    wall = time.monotonic() - start
    firing = receiver.alerts("firing")
    print(f"soak: {wall / 60:.0f} min at the defaults, one real llama-server, {load.sent} completions "
          f"({load.failed} failed: the restart and the kill)")
    for what, at in events:
        print(f"  {what} at {at / 60:.1f} min")
    print(f"pages sent (firing notifications): {len(firing)}")
    for a in firing:
        print(f"  {a['labels']['alertname']} ({a['labels'].get('severity')}) server={a['labels'].get('server', '')} "
              f"at {a['startsAt']}")
    print(f"resolved notifications: {len(receiver.alerts('resolved'))}")
    print(f"agent CPU {cpu:.1f} s over {wall:.0f} s wall = {100 * cpu / wall:.2f}% of a core; RSS {rss / 2**20:.1f} MiB")
    print("verdict:", "PASS: exactly one page, the kill" if [a["labels"]["alertname"] for a in firing] == ["LlmTargetDown"]
          else "FAIL")


if __name__ == "__main__":
    main()
