"""Issue 30: `llm-agent drill` against the real daemon (`llm-agent run`), two webhook channels
(local receivers answering as Alertmanager's webhook receivers do).

A drill goes through the rules, `for`, grouping, the outbox and the channel, is timed at each
stage, says DRILL in every text and `drill="true"` in its labels, resolves once delivered, and
leaves nothing behind: no verdict change, nothing on /metrics, no series or incident in the
history.
"""

import json
import os
import subprocess
import sys

import requests

from agent.apiclient import call
from tests.support.agentproc import ROOT, AgentProcess
from tests.support.peers import free_port, wait_until
from tests.support.receivers import WEBHOOK, Receiver


def agent_with_two_channels(tmp_path):
    hook, other = Receiver(WEBHOOK), Receiver(WEBHOOK)
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    agent = AgentProcess(str(tmp_path), f'[agent]\nstate_dir = "{state}"\ninterval = "1s"\n'
                                        f'[exporter]\nlisten = "127.0.0.1:{port}"\n[discovery]\nenabled = false\n'
                                        '[probes]\nenabled = false\n[collectors.nvml]\nenabled = false\n'
                                        f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
                                        'group_wait = "2s"\ngroup_interval = "2s"\n'
                                        f'[[notify]]\nname = "other"\ntype = "webhook"\nurl = "{other.url}"\n'
                                        'group_interval = "2s"\n', port)
    return agent.start(), hook, other


def alerts_of(receiver, status):
    return [a for r in receiver.requests for a in r["body"].get("alerts", []) if a["status"] == status]


def test_a_drill_pages_through_every_stage_says_drill_and_leaves_nothing_behind(tmp_path):
    agent, hook, other = agent_with_two_channels(tmp_path)
    base = f"http://127.0.0.1:{agent.port}"
    try:
        out = subprocess.run([sys.executable, "-m", "agent.cli", "drill", "--kind", "target-down", "--url", base,
                              "--wait", "60s"], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                             capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert "target-down injected" in lines[0] and lines[-1].endswith(": delivered"), out.stdout
        stages = [line.split("s  ", 1)[1] for line in lines[1:-1]]
        assert stages[:2] == ["rule pending", "rule firing"] and sorted(stages[2:]) == ["delivered to hook",
                                                                                         "delivered to other"]
        seconds = {line.split("s  ", 1)[1]: float(line.split("s  ")[0]) for line in lines[1:-1]}
        assert seconds["delivered to hook"] >= seconds["rule firing"] + 2, "hook's group_wait (2s) is a stage"
        for receiver in (hook, other):
            [fired] = alerts_of(receiver, "firing")
            assert fired["labels"]["alertname"] == "LlmTargetDown" and fired["labels"]["drill"] == "true"
            assert all(v.startswith("DRILL: ") for v in fired["annotations"].values()), fired["annotations"]
            # ended once delivered: its series stop, the alert resolves, and receivers close it
            wait_until(lambda r=receiver: alerts_of(r, "resolved"), 30, what="the drill's resolve")
        health = requests.get(base + "/healthz", timeout=5)
        assert health.status_code == 200 and "drill" not in json.dumps(health.json()["status"])
        assert "drill" not in requests.get(base + "/metrics", timeout=5).text
        up = call(base, "GET", "/api/v1/query?query=llm_agent_target_up")
        assert up["data"]["result"] == [], "a drill's series never reach the history"
        history = call(base, "GET", "/api/v1/alerts/history?since=1h")
        assert "drill" not in json.dumps(history), "nor its alert the incident history"
    finally:
        agent.stop()


def test_a_drill_for_one_channel_is_held_from_the_verdict_and_refused_cross_site(tmp_path):
    agent, hook, other = agent_with_two_channels(tmp_path)
    base = f"http://127.0.0.1:{agent.port}"
    try:
        forged = requests.post(base + "/api/v1/drill?kind=xid", timeout=5,
                               headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil"})
        assert forged.status_code in (403, 415), "a page from a cross-site form: never"
        assert call(base, "POST", "/api/v1/drill?kind=xid&channel=nope", accept=(404,))["error"].startswith("no channel")
        assert "kind must be" in call(base, "POST", "/api/v1/drill?kind=fire", accept=(400,))["error"]
        drill = call(base, "POST", "/api/v1/drill?kind=xid&channel=other")
        wait_until(lambda: "rule firing" in call(base, "GET", f"/api/v1/drill/{drill['id']}")["stages"], 30,
                   what="the drill's rule firing")
        verdict = requests.get(base + "/healthz", timeout=5)
        assert verdict.status_code == 200, "a drill's critical alert is no outage"
        assert any("a fire drill" in h for h in verdict.json().get("held", [])), verdict.json()
        wait_until(lambda: call(base, "GET", f"/api/v1/drill/{drill['id']}")["ended"], 30, what="the drill's end")
        doc = call(base, "GET", f"/api/v1/drill/{drill['id']}")
        assert doc["outcome"] == "delivered" and doc["expected"] == ["other"] and list(doc["delivered"]) == ["other"]
        [fired] = alerts_of(other, "firing")
        assert fired["labels"]["alertname"] == "GpuXidActionRequired" and fired["labels"]["drill_channel"] == "other"
        assert hook.requests == [], "the other channel hears nothing of it"
    finally:
        agent.stop()
