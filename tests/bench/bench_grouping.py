"""Benchmark: a fault that raises 8 alerts at once (8 GPUs, say) with the default grouping is
1 Slack message and 1 email; how long from the fault to each; and, in the same run, the same
faults with per-alert channels (group_by = ["..."]: one message per alert, as before grouping).

The real daemon at its default 5 s interval watches a target whose 8 `flap` series the
benchmark switches on together (rule `flap > 0`, no `for`), delivering to a local Slack
receiver and a real SMTP server (aiosmtpd). Each trial: fault at a random phase of the cycle,
wait for both messages, clear, wait for the all-clear.

    python tests/bench/bench_grouping.py [--trials 6]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.bench.common import pct  # noqa: E402
from tests.support.agentproc import AgentProcess, Flapper, config_text  # noqa: E402
from tests.support.peers import free_port, wait_until  # noqa: E402
from tests.support.receivers import SLACK, Receiver  # noqa: E402
from tests.support.smtp import Smtp  # noqa: E402

IDS = [str(i) for i in range(8)]


def run(trials, per_alert):
    tmp = Path(tempfile.mkdtemp())
    slack, mail, flapper = Receiver(SLACK, "ok"), Smtp(tmp, tls=None, auth=False), Flapper()
    # group_interval 5 s (default 1 m) only so that each trial's all-clear comes quickly: the
    # first message of a new group does not wait for it
    extra = 'group_interval = "5s"\n' + ('group_by = ["..."]\n' if per_alert else "")
    channels = (f'[[notify]]\nname = "slack"\ntype = "slack"\nurl = "{slack.url}"\n{extra}'
                f'[[notify]]\nname = "mail"\ntype = "email"\nsmarthost = "127.0.0.1:{mail.port}"\n'
                f'from = "a@example.com"\nto = ["b@example.com"]\nrequire_tls = false\n{extra}')
    port = free_port()
    (tmp / "state").mkdir()
    agent = AgentProcess(str(tmp), config_text(str(tmp / "state"), port, flapper.url, channels, interval="5s"),
                         port).start()
    to_slack, to_mail, slack_msgs, mail_msgs = [], [], [], []
    try:
        time.sleep(6)
        for _ in range(trials):
            s0, m0 = len(slack.requests), len(mail.messages())
            time.sleep(random.uniform(0, 5))  # a random phase of the 5 s cycle
            flapper.set(IDS, 1.0)
            t0 = time.time()
            wait_until(lambda s0=s0: len(slack.requests) > s0, 30, 0.01, "the Slack message")
            to_slack.append(time.time() - t0)
            wait_until(lambda m0=m0: len(mail.messages()) > m0, 30, 0.01, "the email")
            to_mail.append(time.time() - t0)
            time.sleep(11)  # two more cycles: anything else the fault sends arrives
            slack_msgs.append(len(slack.requests) - s0)
            mail_msgs.append(len(mail.messages()) - m0)
            flapper.set(IDS, 0.0)
            wait_until(lambda: agent.value("llm_agent_alert_groups") == 0, 120, 0.5, "the groups to clear")
            time.sleep(6)
    finally:
        agent.stop()
        flapper.close()
        slack.close()
        mail.stop()
    return to_slack, to_mail, slack_msgs, mail_msgs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=6)
    args = p.parse_args()
    print(f"8 alerts raised at once, llm-agent at its 5 s default interval, {args.trials} faults per configuration")
    for name, per_alert in (("grouped (defaults: by alertname, group_wait 0s)", False),
                            ("per alert (group_by = [\"...\"])", True)):
        to_slack, to_mail, slack_msgs, mail_msgs = run(args.trials, per_alert)
        print(f"  {name}:")
        print(f"    messages per fault: Slack median {statistics.median(slack_msgs):g} (max {max(slack_msgs)}), "
              f"email median {statistics.median(mail_msgs):g} (max {max(mail_msgs)})")
        print(f"    fault -> first Slack message: median {statistics.median(to_slack):.2f} s, p95 {pct(to_slack, 95):.2f} s")
        print(f"    fault -> first email:         median {statistics.median(to_mail):.2f} s, p95 {pct(to_mail, 95):.2f} s")


if __name__ == "__main__":
    main()
