"""Grouping end to end, with the real daemon: a fault that raises eight alerts at once is one
Slack message and one email (a real SMTP server), and their resolve one more of each; a group
waiting in group_wait survives kill -9 and is delivered once, whole, as Alertmanager's webhook
v4 group. (Timing rules are unit-tested in tests/unit/test_router.py.)"""

import email
import signal
import time

from tests.support.agentproc import AgentProcess, Flapper, config_text
from tests.support.peers import free_port, wait_until
from tests.support.receivers import SLACK, WEBHOOK, Receiver
from tests.support.smtp import Smtp

GPUS = [str(i) for i in range(8)]


def start(tmp_path, channels):
    flapper = Flapper()
    port = free_port()
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    agent = AgentProcess(str(tmp_path), config_text(str(state), port, flapper.url, channels), port).start()
    return agent, flapper


def test_eight_alerts_at_once_are_one_slack_message_and_one_email(tmp_path):
    slack = Receiver(SLACK, "ok")
    mail = Smtp(tmp_path, tls=None, auth=False)
    channels = (f'[[notify]]\nname = "slack"\ntype = "slack"\nurl = "{slack.url}"\ngroup_interval = "2s"\n'
                f'[[notify]]\nname = "mail"\ntype = "email"\nsmarthost = "127.0.0.1:{mail.port}"\n'
                'from = "agent@gpu-1.example"\nto = ["oncall@example.com"]\nrequire_tls = false\ngroup_interval = "2s"\n')
    agent, flapper = start(tmp_path, channels)
    try:
        flapper.set(GPUS, 1.0)
        wait_until(lambda: slack.requests and mail.messages(), 15, what="the page")
        time.sleep(1.5)  # more cycles: nothing else is sent
        [page] = [r["body"] for r in slack.requests]
        assert page["text"].startswith("[FIRING:8] alertname=Flap: 8 firing, 0 resolved")
        [got] = mail.messages()
        msg = email.message_from_string(got["data"])
        assert msg["Subject"].startswith("[FIRING:8] Flap on ")
        assert sum(f"flap {g} is up" in got["data"] for g in GPUS) == 8
        assert agent.value("llm_agent_alert_groups", channel="slack") == 1

        flapper.set(GPUS, 0.0)
        wait_until(lambda: len(slack.requests) == 2 and len(mail.messages()) == 2, 15, what="the all-clear")
        assert slack.requests[1]["body"]["text"].startswith("[RESOLVED] alertname=Flap: 0 firing, 8 resolved")
        assert email.message_from_string(mail.messages()[1]["data"])["Subject"].startswith("[RESOLVED:8] Flap")
    finally:
        agent.stop()
        flapper.close()
        slack.close()
        mail.stop()


def test_a_group_in_group_wait_survives_kill_9_and_is_sent_once_whole(tmp_path):
    hook = Receiver(WEBHOOK, "ok")
    channels = f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\ngroup_wait = "5s"\n'
    agent, flapper = start(tmp_path, channels)
    try:
        flapper.set(GPUS[:3], 1.0)
        fault = time.time()
        wait_until(lambda: agent.value("llm_agent_alert_groups", channel="hook") == 1, 10, what="the group")
        flapper.set(GPUS[3:], 1.0)  # five more join it while it waits
        wait_until(lambda: agent.value("llm_agent_alerts", state="firing") == 8, 10, what="all eight firing")
        agent.signal(signal.SIGKILL)
        agent.proc.wait(10)
        assert hook.requests == [], "still in group_wait"
        agent.start()
        wait_until(lambda: hook.requests, 15, what="the group after the restart")
        arrived = time.time()
        time.sleep(2)
        [body] = [r["body"] for r in hook.requests]
        assert arrived - fault >= 5, "group_wait was kept across the crash"
        assert body["groupKey"] == '{}:{alertname="Flap"}' and body["groupLabels"] == {"alertname": "Flap"}
        assert body["commonLabels"]["alertname"] == "Flap" and "id" not in body["commonLabels"]
        assert sorted(a["labels"]["id"] for a in body["alerts"]) == GPUS and body["status"] == "firing"
    finally:
        agent.stop()
        flapper.close()
        hook.close()
