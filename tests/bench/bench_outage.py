"""A receiver outage measured end to end through the real daemon: while a webhook receiver
answers 503 for OUTAGE seconds, five alerts fire and resolve every few seconds; then the
receiver recovers. Prints what the issue asks for: transitions created, delivered,
duplicated, out of order, missing, the requests the outage cost, and how long the backlog
took after recovery.

    python tests/bench/bench_outage.py [OUTAGE_SECONDS]   (default 60)
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.support.agentproc import audit, flap, new_agent, webhook  # noqa: E402
from tests.support.peers import wait_until  # noqa: E402
from tests.support.receivers import WEBHOOK, Receiver  # noqa: E402


def main(outage: float) -> None:
    receiver = Receiver(WEBHOOK, "unavailable")
    with tempfile.TemporaryDirectory() as tmp:
        agent, flapper = new_agent(Path(tmp), webhook(receiver.url), interval="1s")
        try:
            agent.start()
            ids = [f"a{i}" for i in range(5)]
            switches = flap(flapper, ids, seconds=outage, period=6.0)
            requests_during = len(receiver.requests)
            receiver.mode = "ok"
            recovered = time.monotonic()
            wait_until(lambda: agent.value("llm_agent_outbox_depth", channel="hook") == 0 and receiver.accepted,
                       600, interval=0.05, what="the backlog")
            backlog_seconds = time.monotonic() - recovered
            created = agent.value("llm_agent_outbox_enqueued_total", channel="hook")
            report = audit(receiver.alerts())
            print(f"outage {outage:g}s, 5 alerts switched {switches} times each (period 6 s), agent interval 1 s")
            print(f"transitions created  {created:.0f}")
            print(f"delivered            {report['received']}")
            print(f"duplicated           {report['duplicates']}")
            print(f"out of order         {report['out_of_order']}")
            print(f"missing              {report['missing']}")
            print(f"requests during the outage {requests_during} (channel backoff, not one per notification)")
            print(f"backlog delivered {backlog_seconds:.1f}s after the receiver recovered")
        finally:
            agent.stop()
            flapper.close()
            receiver.close()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
