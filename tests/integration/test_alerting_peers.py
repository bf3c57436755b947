"""Alerting end to end with real peers: Alertmanager receives the pushes (read back through its
API and amtool); a real llama-server killed and restarted pages and resolves through a
webhook; the agent SIGKILLed with notifications pending delivers each exactly once after a
restart; the exported rules pass promtool; test-alert goes through the real path."""

import os
import signal
import subprocess
import sys
import threading
import time

import requests

from agent.config import parse_config
from agent.daemon import Agent
from agent.serve.exporter import Exporter
from agent.notify.base import AlertDoc, Channel
from agent.notify.dispatcher import make_notifier
from tests.support.agentproc import ONLY_OWN_RULES
from tests.support.configs import TARGETS_ONLY
from tests.support.peers import Alertmanager, free_port, promtool_path, wait_until
from tests.support.receivers import SLACK, WEBHOOK, Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_alertmanager_receives_firing_and_resolved(tmp_path):
    am = Alertmanager(str(tmp_path)).start()
    try:
        channel = Channel("am", "alertmanager", urls=[am.url, f"http://127.0.0.1:{free_port()}"])  # one replica down
        notifier = make_notifier(channel)
        now = time.time()
        firing = AlertDoc("firing", {"alertname": "LlmTargetDown", "server": "llama", "severity": "critical"},
                          {"summary": "llama is down"}, now, 0.0, 0.0, "f1")
        notifier.send([firing])  # one replica accepting is a delivery
        alerts = am.amtool_alerts()
        assert [(a["labels"]["alertname"], a["labels"]["server"], a["status"]["state"]) for a in alerts] == \
               [("LlmTargetDown", "llama", "active")]
        api = requests.get(am.url + "/api/v2/alerts").json()
        assert api[0]["annotations"]["summary"] == "llama is down"
        resolved = AlertDoc("resolved", firing.labels, firing.annotations, now, time.time(), 0.0, "f1")
        # sent again while it shows, as the router re-sends a resolve: Alertmanager keeps the alert
        # while the resolve's endsAt is not yet in its past (a clock that stepped back between them)
        wait_until(lambda: notifier.send([resolved]) or am.amtool_alerts() == [], 10,
                   what="Alertmanager to see the resolve")
    finally:
        am.stop()


def test_alertmanager_keeps_an_alert_whose_resolve_ends_in_its_future_until_a_copy_comes(tmp_path):
    """Why the router re-sends a resolve for 15 minutes: with the agent's clock 2 s ahead of
    Alertmanager's, the first resolve leaves the alert active (it would stay so until the firing
    copy's endsAt, minutes later); the same resolve sent again once that time passed ends it."""
    am = Alertmanager(str(tmp_path)).start()
    try:
        notifier = make_notifier(Channel("am", "alertmanager", urls=[am.url]))
        labels = {"alertname": "LlmTargetDown", "server": "llama", "severity": "critical"}
        started = time.time()
        notifier.send([AlertDoc("firing", labels, {}, started, 0.0, 0.0, "f1")])
        resolved = AlertDoc("resolved", labels, {}, started, time.time() + 2.0, 0.0, "f1")
        notifier.send([resolved])
        time.sleep(2.5)
        assert [a["labels"]["alertname"] for a in am.amtool_alerts()] == ["LlmTargetDown"]
        notifier.send([resolved])
        wait_until(lambda: am.amtool_alerts() == [], 10, what="Alertmanager to take the re-sent resolve")
    finally:
        am.stop()


def test_killed_llama_server_pages_and_restart_resolves(llama_server, tmp_path):
    receiver = Receiver(WEBHOOK, "ok")
    config = parse_config(f'''
[agent]
interval = "500ms"
[collectors.nvml]
enabled = false
[collectors.host]
enabled = false
[[targets]]
name = "tiny"
url = "{llama_server.url}"
[[notify]]
name = "hook"
type = "webhook"
url = "{receiver.url}"
group_interval = "0s"  # resolves at once (grouping has its own tests)
''')
    agent = Agent(config, state_dir=str(tmp_path))
    exporter = Exporter("127.0.0.1", 0)
    loop = threading.Thread(target=agent.serve, args=(exporter,), daemon=True)
    loop.start()
    try:
        wait_until(lambda: agent.snapshot is not None, 10, what="first cycle")
        llama_server.kill()
        wait_until(lambda: receiver.alerts("firing"), 10, what="the firing alert at the webhook")
        alert = receiver.alerts("firing")[0]
        assert alert["labels"]["alertname"] == "LlmTargetDown" and alert["labels"]["server"] == "tiny"
        assert alert["annotations"]["summary"] == "Inference server tiny is down"
        api = agent.alerting.api_alerts()["data"]["alerts"]
        assert [(a["labels"]["alertname"], a["state"]) for a in api] == [("LlmTargetDown", "firing")]
        llama_server.start()
        wait_until(lambda: receiver.alerts("resolved"), 15, what="the resolve at the webhook")
        assert receiver.alerts("resolved")[0]["fingerprint"] == alert["fingerprint"]
        assert len(receiver.alerts("firing")) == 1, "paged once"
    finally:
        agent.stop()
        loop.join(5)
        exporter.server_close()
        agent.close()
        receiver.close()


def _agent_process(config_path):
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config_path], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_with_pending_notifications_loses_none_and_repeats_none(tmp_path):
    receiver = Receiver(WEBHOOK, "unavailable")
    config = tmp_path / "agent.toml"
    config.write_text(f'''
[agent]
interval = "200ms"
state_dir = "{tmp_path}"
[exporter]
listen = "127.0.0.1:{free_port()}"
{ONLY_OWN_RULES}[[rules]]
name = "AlwaysFiring"
expr = "llm_agent_config_last_reload_successful == 1"
[[rules]]
name = "NoTargets"
expr = 'llm_agent_targets{{source="configured"}} == 0'
[[notify]]
name = "hook"
type = "webhook"
url = "{receiver.url}"
group_interval = "0s"  # resolves at once (grouping has its own tests)
''')
    proc = _agent_process(str(config))
    try:
        # both fire in the first cycle, so both are in the outbox before the first attempt (one message
        # per alert group: the channel is held after the first 503, the second waits behind it)
        wait_until(lambda: receiver.alerts(accepted_only=False), 20, what="an attempt while the receiver answers 503")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert receiver.accepted == []
        receiver.mode = "ok"
        proc = _agent_process(str(config))
        wait_until(lambda: len(receiver.unique) == 2, 20, what="both pending notifications delivered after restart")
        time.sleep(1.5)  # several more cycles: nothing is paged again
        delivered = [(a["labels"]["alertname"], a["status"]) for a in receiver.alerts()]
        assert sorted(delivered) == [("AlwaysFiring", "firing"), ("NoTargets", "firing")], "each exactly once"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        receiver.close()


def test_exported_rules_pass_promtool(tmp_path):
    out = tmp_path / "rules.yml"
    r = subprocess.run([sys.executable, "-m", "agent.cli", "rules", "export", "-o", str(out)], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    check = subprocess.run([promtool_path(), "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    from agent.config import load_config
    from agent.perf.anomaly import load_history_rules
    from agent.rules.loader import load_rules

    every = len(load_rules(load_config(None)).alerts) + len(load_history_rules())  # the alerts and the history's records
    assert f"SUCCESS: {every} rules found" in check.stdout


def test_test_alert_goes_through_the_real_notifier(tmp_path):
    receiver = Receiver(SLACK, "ok")
    config = tmp_path / "agent.toml"
    config.write_text('[[notify]]\nname = "ops"\ntype = "slack"\nurl = "${HOOK}"\n')
    env = {**os.environ, "PYTHONPATH": ROOT, "HOOK": receiver.url + "/T000/B000/sekritsekrit"}
    try:
        r = subprocess.run([sys.executable, "-m", "agent.cli", "test-alert", "--channel", "ops", "--resolve",
                            "--config", str(config)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["test firing delivered to ops (slack)", "test resolved delivered to ops (slack)"]
        first = receiver.requests[0]["body"]
        assert first["text"].startswith("[TEST] [INFO] LlmAgentTestAlert")
        receiver.mode = "invalid_payload"
        r = subprocess.run([sys.executable, "-m", "agent.cli", "test-alert", "--channel", "ops", "--config", str(config)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert "HTTP 400: invalid_payload (not retryable: fix the channel)" in r.stderr
        assert "sekritsekrit" not in r.stderr + r.stdout
        r = subprocess.run([sys.executable, "-m", "agent.cli", "test-alert", "--channel", "nope", "--config", str(config)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "known: ops" in r.stderr
    finally:
        receiver.close()


def test_no_secret_reaches_logs_metrics_api_or_outbox(tmp_path, caplog):
    import json
    import logging

    from agent.serve.exporter import Exposition

    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{free_port()}"
    secret = "SEKRITsekrit0123456789"
    env = {"SLACK": f"{dead}/services/T0/B0/{secret}", "PD": secret * 2, "HOOK": f"{dead}/hook?token={secret}",
           "AM": f"http://user:{secret}@127.0.0.1:{free_port()}"}
    config = parse_config('[agent]\ninterval = "200ms"\n' + TARGETS_ONLY + f'''
[alerting]
default_rules = false
[[rules]]
name = "Always"
expr = "llm_agent_config_last_reload_successful == 1"
[[notify]]
name = "slack"
type = "slack"
url = "${{SLACK}}"
[[notify]]
name = "pd"
type = "pagerduty"
routing_key = "${{PD}}"
url = "{dead}/v2/enqueue"
[[notify]]
name = "hook"
type = "webhook"
url = "${{HOOK}}"
[[notify]]
name = "am"
type = "alertmanager"
urls = ["${{AM}}"]
''', "agent.toml", env)
    agent = Agent(config, state_dir=str(tmp_path))
    try:
        for _ in range(3):
            snap = agent.cycle()
            time.sleep(0.3)
        results = agent.alerting.dispatcher.results
        assert sum(n for (ch, r), n in results.items() if r == "retried") >= 4, results
        rows = agent.alerting.store.db.execute("SELECT last_error FROM outbox").fetchall()
        surfaces = {
            "logs": caplog.text,
            "api": json.dumps(agent.alerting.api_alerts()),
            "metrics": Exposition(snap).bodies["text"].decode(),
            "outbox": json.dumps(rows),
            "config repr": repr(config.targets) + repr(agent.alerting.dispatcher.channels),
        }
        for name, text in surfaces.items():
            assert secret not in text, f"the secret leaked into {name}"
    finally:
        agent.close(drain=0)


def test_shipped_contrib_rules_match_the_defaults():
    """contrib/prometheus/llm-agent-rules.yml is `llm-agent rules export` of the defaults;
    regenerate it with that command when the defaults change."""
    from agent.config import default_config
    from agent.rules.export import export_rules
    from agent.rules.loader import rule_docs

    shipped = open(os.path.join(ROOT, "contrib", "prometheus", "llm-agent-rules.yml")).read()
    from agent.perf.anomaly import load_history_rules

    history = [(h.record, h.expr) for h in load_history_rules()]
    assert shipped == export_rules(rule_docs(default_config())[0], history=history)
