"""The alert path under faults, driven through the real daemon (`llm-agent run`): a receiver
outage, a state directory on a disk that fills up, SIGHUP during slow deliveries, SIGTERM with
a backlog, two agents on one state directory. Receivers are local servers that answer as the
webhook and PagerDuty documentation says."""

import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from tests.support.agentproc import AgentProcess, audit, flap, new_agent, pagerduty, sighup_every, webhook
from tests.support.peers import free_port, wait_until
from tests.support.receivers import PAGERDUTY, WEBHOOK, Receiver

IDS = [f"a{i}" for i in range(5)]


def drained(agent, channel):
    return agent.value("llm_agent_outbox_depth", channel=channel) == 0


def test_a_receiver_outage_loses_nothing_and_keeps_order(receivers, daemon):
    receiver = receivers(WEBHOOK, "unavailable")
    agent, flapper = daemon(webhook(receiver.url))
    agent.start()
    flap(flapper, IDS, seconds=12, period=1.2)  # alerts fire and resolve all through the outage
    assert receiver.requests and not receiver.accepted
    during = len(receiver.requests)
    receiver.mode = "ok"
    wait_until(lambda: drained(agent, "hook") and receiver.accepted, 90, what="the backlog delivered")
    created = agent.value("llm_agent_outbox_enqueued_total", channel="hook")
    report = audit(receiver.alerts())
    assert report == {"received": created, "duplicates": 0, "out_of_order": 0, "missing": 0}, report
    assert created >= 5 * 8, "each alert went through several episodes"
    assert during < created, "the outage backed off the channel, not each notification"


def _tmpfs(path, size):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("LLM_AGENT_REQUIRE_PEERS") == "1":
            pytest.fail(f"cannot mount a tmpfs: {r.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {r.stderr}")


def _fill(path):
    """Write a file until the disk says no more."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_delivers_each_notification_once_and_recovers(tmp_path):
    state = tmp_path / "state"
    _tmpfs(state, "2m")
    receiver = Receiver(WEBHOOK, "ok")
    agent, flapper = new_agent(tmp_path, webhook(receiver.url), state_dir=str(state))
    try:
        agent.start()
        filler = _fill(str(state))
        flap(flapper, IDS, seconds=6, period=0.9)
        wait_until(lambda: drained(agent, "hook"), 30, what="delivered from memory")
        assert agent.value("llm_agent_outbox_write_errors_total") > 0
        report = audit(receiver.alerts())
        assert report["duplicates"] == 0 and report["out_of_order"] == 0 and report["missing"] == 0, report
        assert report["received"] == agent.value("llm_agent_outbox_enqueued_total", channel="hook")
        assert agent.log().count("cannot write outbox") == 1, "logged once, not per notification"
        os.unlink(filler)  # space returns
        flap(flapper, IDS, seconds=3, period=0.9)
        wait_until(lambda: "outbox can be written again" in agent.log(), 20, what="the recovery logged")
        wait_until(lambda: drained(agent, "hook"), 30, what="delivered")
        report = audit(receiver.alerts())
        assert report["duplicates"] == 0 and report["missing"] == 0, report
        assert agent.stop() == 0
        db = sqlite3.connect(str(state / "state.db"))
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0, "nothing delivered is left to resend"
        db.close()
    finally:
        agent.stop()
        flapper.close()
        receiver.close()
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def test_sighup_during_slow_deliveries_resends_nothing_and_counters_never_go_back(tmp_path):
    receiver = Receiver(PAGERDUTY, "ok")
    receiver.delay = 0.15  # one event at a time, each slow: the reloads land mid-delivery
    agent, flapper = new_agent(tmp_path, pagerduty(receiver.url))
    ids = [f"p{i}" for i in range(24)]
    stop = threading.Event()
    try:
        agent.start()
        flapper.set(ids, 1.0)
        wait_until(lambda: agent.value("llm_agent_outbox_enqueued_total", channel="pd") >= 24, 20, what="24 pages")
        reloads = sighup_every(agent, 0.3, stop)
        # every other reload changes the channel's settings, so its notifier is replaced too
        text = open(agent.config_path).read()
        seen = []
        deadline = time.monotonic() + 30
        while not drained(agent, "pd") and time.monotonic() < deadline:
            agent.write_config(text.replace('timeout = "10s"', 'timeout = "9s"') if len(seen) % 2 else text)
            seen.append(agent.value("llm_agent_notifications_total", channel="pd", result="delivered"))
            time.sleep(0.2)
        stop.set()
        reloads.join()
        events = [(r["body"]["dedup_key"], r["body"]["event_action"]) for r in receiver.requests]
        assert len(events) == len(set(events)) == 24, "each page exactly once"
        assert seen == sorted(seen) and seen[-1] <= 24, "the delivered counter never went backwards"
        assert agent.value("llm_agent_config_last_reload_successful") == 1
        assert "configuration reloaded" in agent.log()
    finally:
        stop.set()
        agent.stop()
        flapper.close()
        receiver.close()


def test_sigterm_tries_the_whole_backlog_within_the_drain_time(receivers, daemon):
    receiver = receivers(WEBHOOK, "unavailable")
    agent, flapper = daemon(webhook(receiver.url))
    agent.start()
    flap(flapper, IDS, seconds=5, period=1.0)
    wait_until(lambda: len(receiver.requests) >= 3, 30, what="the channel backing off")
    created = agent.value("llm_agent_outbox_enqueued_total", channel="hook")
    receiver.mode = "ok"  # the receiver is back, but the channel is held for seconds
    agent.signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0
    report = audit(receiver.alerts())
    assert report == {"received": created, "duplicates": 0, "out_of_order": 0, "missing": 0}, report


def test_a_second_agent_on_the_same_state_dir_is_refused_and_a_crash_never_blocks_a_restart(tmp_path):
    receiver = Receiver(WEBHOOK, "ok")
    first, flapper = new_agent(tmp_path / "one" if (tmp_path / "one").mkdir() is None else None, webhook(receiver.url),
                               state_dir=str(tmp_path / "state"))
    try:
        first.start()
        (tmp_path / "two").mkdir()
        second = AgentProcess(str(tmp_path / "two"), open(first.config_path).read()
                              .replace(f"127.0.0.1:{first.port}", f"127.0.0.1:{free_port()}"), free_port())
        second.start(wait=False)
        assert second.proc.wait(20) == 1
        message = second.log()
        assert f"the state directory {tmp_path / 'state'} is in use by another llm-agent (pid {first.proc.pid})" in message
        first.proc.kill()  # kill -9: the OS releases the lock with the process
        first.proc.wait(10)
        third = AgentProcess(str(tmp_path / "two"), open(second.config_path).read(), second.port)
        third.port = int(open(second.config_path).read().split("listen = \"127.0.0.1:")[1].split('"')[0])
        third.start()
        assert third.stop() == 0
    finally:
        first.kill()
        flapper.close()
        receiver.close()
