"""Only a real loss pages (issue 26), against the real daemon (`llm-agent run`) and real
llama-servers, its default rules, and a webhook receiver counting what it was sent:

- a fresh install on a box with no server: no critical alert, /healthz 200, `check` says what
  it waits for;
- a planned restart through systemd (a fake `systemctl` answering as systemd does while a
  stop job runs) pages nothing; a kill -9 behind systemd's back pages at once, exactly once;
- a discovered server that exits and does not come back is let go after [discovery]
  gone_after: its crash page resolves saying so, LlmTargetGone says it once.

systemd cannot run here: `systemctl` is a script answering `systemctl show` from a file the
test writes, with the properties systemd reports (unitstate.py's table has the real sets)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support.agentproc import ROOT, AgentProcess
from tests.support.peers import LlamaServer, free_port, wait_until
from tests.support.receivers import WEBHOOK, Receiver

QUIET = '[collectors.nvml]\nenabled = false\n[health]\npy_spy = false\n'
HOOK = 'group_by = ["..."]\ngroup_interval = "0s"\n'


def fake_systemctl(tmp_path):
    """A `systemctl` whose `show` prints what `state` (a file) holds: what systemd says of the unit."""
    state = tmp_path / "unit-state"
    state.write_text("ActiveState=active\nSubState=running\nResult=success\nLoadState=loaded\n")
    script = tmp_path / "systemctl"
    script.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1] == 'show':\n"
                      f"    sys.stdout.write(open({str(state)!r}).read())\n")
    script.chmod(0o755)
    return script, state


def pages(receiver, status="firing", severity=None):
    return [(a["labels"]["alertname"], a["labels"].get("server", "")) for a in receiver.alerts(status)
            if severity is None or a["labels"].get("severity") == severity]


def agent_with(tmp_path, body: str) -> AgentProcess:
    port = free_port()
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    head = f'[agent]\ninterval = "500ms"\nstate_dir = "{state}"\n[exporter]\nlisten = "127.0.0.1:{port}"\n'
    return AgentProcess(str(tmp_path), head + QUIET + body, port)


def firing(agent):
    doc = requests.get(f"http://127.0.0.1:{agent.port}/api/v1/alerts", timeout=5).json()
    return [(a["labels"]["alertname"], a["labels"].get("severity")) for a in doc["data"]["alerts"] if a["state"] == "firing"]


def test_a_fresh_install_with_no_server_pages_nothing_critical(tmp_path):
    """The embedded defaults (discovery, the fallback address, every default rule), nothing
    listening there: the guess is 'never up', not down. (Discovery is the real one: on a machine
    where a llama-server happens to run, it is watched instead of the guess, and still nothing
    critical may fire.)"""
    from agent.discovery import discover_processes

    if discover_processes():
        pytest.skip("an inference server runs on this machine: there is no fresh install to try")
    receiver = Receiver(WEBHOOK)
    agent = agent_with(tmp_path, f'[discovery]\nfallback_url = "http://127.0.0.1:{free_port()}"\ninterval = "1s"\n'
                                 f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n' + HOOK)
    try:
        agent.start()
        wait_until(lambda: agent.value("llm_agent_target_state", state="never_up") == 1, 20, what="the guess watched")
        time.sleep(8)  # many cycles, several discoveries, the first probe interval
        assert [a for a in firing(agent) if a[1] == "critical"] == []
        assert pages(receiver) == []
        health = requests.get(f"http://127.0.0.1:{agent.port}/healthz", timeout=5)
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "warning"
        assert any("waiting: it has not answered" in r for r in health.json()["reasons"])
        check = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--sample", "0", "--config",
                                agent.config_path], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 1, check.stdout + check.stderr
        assert "WARNING: waiting: it has not answered since the agent began watching it" in check.stdout
        assert "Status: WARNING (exit 1; the verdict of the running agent)" in check.stdout
        assert agent.value("llm_agent_probes_total") == 0, "nothing to measure: the probe waits"
    finally:
        agent.stop()
        receiver.close()


def test_a_planned_restart_pages_nothing_and_a_kill_9_pages_once(tmp_path, tiny_model):
    systemctl, unit_state = fake_systemctl(tmp_path)
    server = LlamaServer(tiny_model, log_dir=str(tmp_path)).start()
    receiver = Receiver(WEBHOOK)
    agent = agent_with(tmp_path, f'systemctl = "{systemctl}"\nrestart_grace = "30s"\n'
                                 '[probes]\ninterval = "1s"\n'
                                 f'[[targets]]\nname = "llama"\nurl = "{server.url}"\nunit = "llama-test.service"\n'
                                 f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n' + HOOK)
    try:
        agent.start()
        wait_until(lambda: agent.value("llm_agent_target_state", state="up") == 1, 20, what="the server up")
        # systemctl restart: systemd moves the unit to deactivating, then signals the server
        unit_state.write_text("ActiveState=deactivating\nSubState=stop-sigterm\nResult=success\nLoadState=loaded\n")
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        wait_until(lambda: agent.value("llm_agent_target_state", state="restarting") == 1, 10, what="restarting")
        time.sleep(3)  # a model that takes a few seconds to load again
        unit_state.write_text("ActiveState=active\nSubState=running\nResult=success\nLoadState=loaded\n")
        server = LlamaServer(tiny_model, port=server.port, log_dir=str(tmp_path)).start()
        wait_until(lambda: agent.value("llm_agent_target_state", state="up") == 1, 20, what="back up")
        time.sleep(2)
        assert pages(receiver) == [], "a planned restart pages nothing"
        # a crash: killed behind systemd's back (it still says active)
        killed = time.monotonic()
        server.kill()
        wait_until(lambda: ("LlmTargetDown", "llama") in pages(receiver), 10, what="the crash page")
        took = time.monotonic() - killed
        time.sleep(3)
        assert pages(receiver, severity="critical") == [("LlmTargetDown", "llama")], "exactly one page"
        assert took < 5, took
        assert "LlmTargetDown" in agent.log() and "exited as systemd stopped or restarted" in agent.log()
    finally:
        agent.stop()
        server.kill()
        receiver.close()


def test_a_discovered_server_that_leaves_is_let_go(tmp_path, tiny_model):
    receiver = Receiver(WEBHOOK)
    server = LlamaServer(tiny_model, log_dir=str(tmp_path)).start()
    name = f"llama-server-{server.port}"
    agent = agent_with(tmp_path, f'[discovery]\ninterval = "500ms"\ngone_after = "3s"\n'
                                 f'fallback_url = "http://127.0.0.1:{free_port()}"\n[probes]\nenabled = false\n'
                                 f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n' + HOOK)
    try:
        agent.start()
        wait_until(lambda: agent.value("llm_agent_target_state", server=name, state="up") == 1, 20,
                   what="the server discovered and up")
        server.kill()
        wait_until(lambda: ("LlmTargetDown", name) in pages(receiver), 10, what="the crash page")
        wait_until(lambda: ("LlmTargetDown", name) in pages(receiver, "resolved"), 15, what="its resolve once gone")
        resolved = [a for a in receiver.alerts("resolved") if a["labels"]["alertname"] == "LlmTargetDown"][0]
        assert "is gone" in resolved["annotations"]["resolved_reason"]
        wait_until(lambda: ("LlmTargetGone", name) in pages(receiver), 10, what="LlmTargetGone")
        time.sleep(3)
        assert pages(receiver) == [("LlmTargetDown", name), ("LlmTargetGone", name)]
        assert [a for a in firing(agent) if a[1] == "critical"] == []
        assert json.loads((tmp_path / "state" / "targets.json").read_text())["last_up"].get(name) is None
    finally:
        agent.stop()
        server.kill()
        receiver.close()
