"""Issue 30: an engine wedged while it answers, seen by the real daemon (`llm-agent run` at its
defaults: 5 s interval, [health] wedge_after 30 s, every default rule) in real time.

- False fires: a real llama-server under bursty load (bursts of 4 concurrent completions for
  20 s, then 40 s idle) for `--minutes`; every page its webhook receives is counted by rule.
- Detection: a fake vLLM (its captured /metrics, 3 requests running) whose progress counters
  move, then freeze while /metrics keeps answering: the time from the freeze to
  llm_agent_target_wedged on /metrics, and to the LlmEngineWedged page at the webhook.

    python tests/bench/bench_wedge.py [--minutes 10]
"""

import argparse
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import requests  # noqa: E402

from tests.support.agentproc import AgentProcess  # noqa: E402
from tests.support.httpservers import RouteServer  # noqa: E402
from tests.support.peers import LlamaServer, free_port, wait_until  # noqa: E402
from tests.support.receivers import WEBHOOK, Receiver  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402
from tests.unit.test_wedge import body  # noqa: E402


class Bursts:
    """Bursts of 4 users sending completions back to back for 20 s, then 40 s of quiet."""

    def __init__(self, url):
        self.url, self.stop, self.sent = url, threading.Event(), 0
        for _ in range(4):
            threading.Thread(target=self._user, daemon=True).start()

    def _user(self):
        while not self.stop.is_set():
            if time.time() % 60 >= 20:
                self.stop.wait(0.5)
                continue
            try:
                requests.post(self.url + "/completion", json={"prompt": "Once upon a time", "n_predict": 48},
                              timeout=30)
                self.sent += 1
            except requests.RequestException:
                pass


def pages(receiver):
    return [(a["labels"].get("alertname"), a["labels"].get("server", "")) for r in receiver.requests
            for a in r["body"].get("alerts", []) if a["status"] == "firing"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wedge-")
    model = write_tiny_llama(os.path.join(tmp, "tiny.gguf"))
    llama = LlamaServer(model, log_dir=tmp).start()  # --metrics --slots, two slots
    state = {"n": 0, "moving": True}

    def metrics(_handler):
        if state["moving"]:
            state["n"] += 1
        return 200, body("vllm", state["n"] * 100, True), "text/plain"  # 700 tokens a scrape: ~140 tokens/s

    receiver = Receiver(WEBHOOK)
    port = free_port()
    with RouteServer({"/metrics": metrics}) as vllm:
        agent = AgentProcess(tmp, f'[agent]\nstate_dir = "{tmp}/state"\n[exporter]\nlisten = "127.0.0.1:{port}"\n'
                                  '[discovery]\nenabled = false\n'
                                  f'[[targets]]\nname = "llama"\nurl = "{llama.url}"\n'
                                  f'[[targets]]\nname = "vllm"\nurl = "{vllm.url}"\nkind = "openmetrics"\nprobe = false\n'
                                  f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n', port)
        os.makedirs(f"{tmp}/state", exist_ok=True)
        agent.start()
        load = Bursts(llama.url)
        try:
            time.sleep(args.minutes * 60)
            load.stop.set()
            before = pages(receiver)
            frozen_at = time.monotonic()
            state["moving"] = False  # the engine stops making progress; /metrics still answers
            wait_until(lambda: agent.value("llm_agent_target_wedged", server="vllm") == 1, 120, what="wedged")
            seen = time.monotonic() - frozen_at
            wait_until(lambda: ("LlmEngineWedged", "vllm") in pages(receiver), 120, what="the page")
            paged = time.monotonic() - frozen_at
        finally:
            agent.stop()
            llama.kill()
    by_rule = {}
    for name, server in before:
        by_rule[f"{name}({server})"] = by_rule.get(f"{name}({server})", 0) + 1
    print(f"bursty load on a real llama-server for {args.minutes:g} min: {load.sent} completions; "
          f"pages {len(before)} {by_rule or ''} (LlmEngineWedged: "
          f"{sum(1 for n, _ in before if n == 'LlmEngineWedged')})")
    print(f"frozen vLLM counters: llm_agent_target_wedged after {seen:.1f} s, LlmEngineWedged page after "
          f"{paged:.1f} s (wedge_after 30 s, 5 s cycles; goal: within 40 s)")


if __name__ == "__main__":
    main()
