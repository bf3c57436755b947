"""The dispatcher: a channel backs off as a whole and sends its backlog in creation order;
Retry-After holds the channel; a reload swaps settings without re-sending; SIGTERM's drain tries
the whole backlog. Receivers are local servers answering as Slack and PagerDuty document."""

import json
import time

from agent.notify.base import AlertDoc, Channel
from agent.notify.dispatcher import Dispatcher
from agent.notify.outbox import Outbox
from agent.store import Store
from tests.support.clock import ManualClock
from tests.support.receivers import PAGERDUTY, SLACK, WEBHOOK, Receiver


def queue(outbox, channel, key, status="firing", starts_at=1.0, at=None):
    at = time.time() if at is None else at
    doc = AlertDoc(status, {"alertname": key, "severity": "warning"}, {"summary": key}, starts_at,
                   at if status == "resolved" else 0.0, 1.0, key)
    outbox.enqueue(channel, key, status, doc.to_json(), at)


def slack_texts(receiver):
    return [r["body"]["text"].split(":")[0] for r in receiver.requests]


def make(tmp_path, channel, **kw):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    clock = ManualClock(1000.0)
    return outbox, clock, Dispatcher(outbox, [channel], clock=clock, jitter=lambda: 0.5, sleep=lambda s: None, **kw)


def test_an_outage_holds_the_channel_and_the_backlog_follows_in_order(tmp_path, receivers):
    receiver = receivers(SLACK, "unavailable")
    outbox, clock, d = make(tmp_path, Channel("slack", "slack", urls=[receiver.url]))
    queue(outbox, "slack", "A")
    queue(outbox, "slack", "B")
    assert d.deliver_once("slack") and len(receiver.requests) == 1
    queue(outbox, "slack", "A", "resolved", at=clock.now)
    queue(outbox, "slack", "A", "firing", starts_at=1002.0, at=clock.now)  # a second episode
    assert not d.deliver_once("slack"), "held: the new rows do not jump the outage"
    attempts = 1
    while attempts < 6:  # the outage goes on: one request per backoff step, always the head row
        clock.now = d.next_attempt("slack")
        assert d.deliver_once("slack")
        attempts += 1
    assert len(receiver.requests) == attempts
    assert {r["body"]["text"] for r in receiver.requests} == {"[WARNING] A: A"}
    receiver.mode = "ok"
    clock.now = d.next_attempt("slack")
    while d.deliver_once("slack"):
        pass
    assert slack_texts(receiver)[attempts:] == ["[WARNING] A", "[WARNING] B", "[RESOLVED] A", "[WARNING] A"]
    assert d.results == {("slack", "retried"): attempts, ("slack", "delivered"): 4}


def test_backoff_is_per_channel_and_capped(tmp_path, receivers):
    receiver = receivers(SLACK, "server_error")
    outbox, clock, d = make(tmp_path, Channel("slack", "slack", urls=[receiver.url]), max_backoff=8.0)
    queue(outbox, "slack", "A")
    delays = []
    for _ in range(6):
        clock.now = max(clock.now, d.next_attempt("slack"))
        d.deliver_once("slack")
        delays.append(d.next_attempt("slack") - clock.now)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_retry_after_holds_the_whole_channel(tmp_path, receivers):
    receiver = receivers(PAGERDUTY, "rate_limited")  # 429 with Retry-After: 30
    outbox, clock, d = make(tmp_path, Channel("pd", "pagerduty", urls=[receiver.url], routing_key="r" * 32))
    queue(outbox, "pd", "K1")
    d.deliver_once("pd")
    queue(outbox, "pd", "K2")  # another alert: it waits too
    receiver.mode = "ok"
    clock.now += 29
    assert not d.deliver_once("pd") and len(receiver.requests) == 1
    clock.now += 2
    while d.deliver_once("pd"):
        pass
    assert [r["body"]["payload"]["summary"] for r in receiver.requests[1:]] == ["K1: K1", "K2: K2"]


def test_slack_gets_at_most_one_message_a_second(tmp_path, receivers):
    receiver = receivers(SLACK, "ok")
    naps = []
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    clock = ManualClock(1000.0)
    d = Dispatcher(outbox, [Channel("slack", "slack", urls=[receiver.url])], clock=clock, sleep=naps.append)
    for key in ("A", "B", "C"):
        queue(outbox, "slack", key)
    while d.deliver_once("slack"):
        clock.now += 0.25  # the send itself took 0.25 s
    assert len(receiver.requests) == 3 and naps == [0.75, 0.75]


def test_a_reload_during_slow_deliveries_sends_nothing_twice_and_keeps_counting(tmp_path):
    receiver = Receiver(WEBHOOK, "ok")
    receiver.delay = 0.2
    channel = Channel("hook", "webhook", urls=[receiver.url], timeout=5.0)
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    d = Dispatcher(outbox, [channel]).start()
    try:
        for i in range(12):
            queue(outbox, "hook", f"K{i}")
            queue(outbox, "hook", f"K{i}", "resolved")
        seen = []
        deadline = time.monotonic() + 20
        while outbox.depth() and time.monotonic() < deadline:
            d.configure([Channel("hook", "webhook", urls=[receiver.url], timeout=4.0 + len(seen) % 2)])  # a reload
            seen.append(d.results.get(("hook", "delivered"), 0))
            time.sleep(0.05)
        assert outbox.depth() == {}
        sent = [(a["fingerprint"], a["status"]) for a in receiver.alerts()]
        assert len(sent) == len(set(sent)) == 24, "every notification exactly once"
        assert seen == sorted(seen), "the delivered counter never went backwards"
        assert d.results[("hook", "delivered")] == 24
    finally:
        d.stop(drain=0)
        receiver.close()


def test_stop_drains_the_whole_backlog_whatever_the_backoff(tmp_path, receivers):
    receiver = receivers(WEBHOOK, "unavailable")
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    d = Dispatcher(outbox, [Channel("hook", "webhook", urls=[receiver.url])], base_backoff=300.0, max_backoff=600.0).start()
    for i in range(5):
        queue(outbox, "hook", f"K{i}")
    deadline = time.monotonic() + 10
    while not d.next_attempt("hook") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.next_attempt("hook") > time.time() + 100, "held for minutes"
    receiver.mode = "ok"
    d.stop(drain=5.0)
    assert outbox.depth() == {}
    assert sorted(a["fingerprint"] for a in receiver.alerts()) == [f"K{i}" for i in range(5)]


def test_a_removed_channel_drops_its_backlog_counted_and_logged(tmp_path, caplog):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    d = Dispatcher(outbox, [Channel("hook", "webhook", urls=["http://127.0.0.1:9/x"])])
    queue(outbox, "hook", "K")
    d.configure([])
    assert outbox.depth() == {} and d.results == {("hook", "dead"): 1}
    assert "no longer configured; dropped 1" in caplog.text


def test_rows_of_a_channel_unknown_at_start_are_dropped_not_kept_forever(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    queue(outbox, "old-name", "K")
    d = Dispatcher(outbox, [Channel("hook", "webhook", urls=["http://127.0.0.1:9/x"])])
    assert outbox.depth() == {} and d.results == {("old-name", "dead"): 1}


def test_an_unreadable_row_is_dropped_and_does_not_block_the_channel(tmp_path, caplog, receivers):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    outbox.enqueue("hook", "K", "firing", json.dumps({"not": "an alert"}), time.time())
    queue(outbox, "hook", "L")
    receiver = receivers(WEBHOOK, "ok")
    _, _, d = make(tmp_path / "x", Channel("hook", "webhook", urls=[receiver.url]))
    d.outbox = outbox
    while d.deliver_once("hook"):
        pass
    assert "dropped an unreadable notification" in caplog.text
    assert [a["fingerprint"] for a in receiver.alerts()] == ["L"]


class Broken:
    """A notifier with a bug: raises something that is not a NotifyError."""

    max_batch, min_interval = 64, 0.0

    def __init__(self):
        self.calls = 0

    def send(self, batch, group=None):
        self.calls += 1
        if batch[0].fingerprint == "K":
            raise KeyError("bug")


def test_a_notifier_bug_backs_off_and_gives_up_on_the_row_not_the_channel(tmp_path, caplog):
    outbox, clock, d = make(tmp_path, Channel("hook", "webhook", urls=["http://127.0.0.1:9/x"]))
    d.states["hook"].notifier = broken = Broken()
    queue(outbox, "hook", "K", at=clock.now)
    queue(outbox, "hook", "L", at=clock.now)
    for _ in range(4):
        clock.now = max(clock.now, d.next_attempt("hook"))
        d.deliver_once("hook")
    assert outbox.depth() == {} and broken.calls == 4
    assert d.results == {("hook", "retried"): 4, ("hook", "failed"): 1, ("hook", "delivered"): 1}
    assert "unexpected error (KeyError)" in caplog.text


def test_a_channel_removed_and_added_again_mid_send_gets_a_worker(tmp_path):
    receiver = Receiver(WEBHOOK, "ok")
    receiver.delay = 0.5
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    channel = Channel("hook", "webhook", urls=[receiver.url])
    d = Dispatcher(outbox, [channel]).start()
    try:
        queue(outbox, "hook", "A")
        wait = time.monotonic() + 5
        while not outbox.inflight and time.monotonic() < wait:
            time.sleep(0.01)
        d.configure([])  # removed while its worker is mid-send
        d.configure([channel])  # and back before that send ends
        queue(outbox, "hook", "B")
        wait = time.monotonic() + 10
        while "B" not in [a["fingerprint"] for a in receiver.alerts()] and time.monotonic() < wait:
            time.sleep(0.05)
        assert "B" in [a["fingerprint"] for a in receiver.alerts()]
    finally:
        d.stop(drain=0)
        receiver.close()


def test_a_week_of_failures_backs_off_within_its_cap_and_never_overflows(tmp_path):
    """Issue 27: at attempt 1,025 (~17 hours) `2**n` overflowed a float and the worker retried
    with no backoff at all. A channel whose receiver refuses every connection for a simulated
    week: every hold stays between half and one and a half max_backoff, the count goes on."""
    from tests.support.peers import free_port

    outbox, clock, d = make(tmp_path, Channel("hook", "webhook", urls=[f"http://127.0.0.1:{free_port()}/"],
                                              max_age=8 * 86400.0), max_backoff=60.0)
    queue(outbox, "hook", "A", at=clock.now)
    start, holds = clock.now, []
    while clock.now - start < 7 * 86400:
        assert d.deliver_once("hook")
        hold = d.next_attempt("hook") - clock.now
        holds.append(hold)
        clock.now += hold
    assert len(holds) > 9_000 and d.states["hook"].failures == len(holds)
    assert min(holds[20:]) >= 30.0 and max(holds) <= 60.0, (min(holds[20:]), max(holds))
