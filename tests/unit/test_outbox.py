"""The outbox: durable across a reopen, coalescing repeats, surviving a full disk."""

import time

from agent.notify.base import Channel
from agent.notify.dispatcher import Dispatcher
from agent.notify.outbox import Outbox
from agent.store import Store
from tests.support.receivers import SLACK, Receiver


def test_rows_survive_a_reopen(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    Outbox(store).enqueue("ch", "k1", "firing", "{}", 1.0)
    store.db.close()  # as good as a crash: nothing else is flushed
    again = Outbox(Store(str(tmp_path / "state.db")))
    assert [(r.dedup_key, r.status) for r in again.due("ch", 2.0, 10)] == [("k1", "firing")]


def test_repeat_of_a_pending_notification_is_coalesced_but_order_is_kept(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    outbox.enqueue("ch", "k", "firing", '{"v": 1}', 1.0)
    outbox.enqueue("ch", "k", "firing", '{"v": 2}', 2.0)
    assert [(r.status, r.payload) for r in outbox.due("ch", 3.0, 10)] == [("firing", '{"v": 2}')]
    outbox.enqueue("ch", "k", "resolved", "{}", 3.0)
    outbox.enqueue("ch", "k", "firing", '{"v": 3}', 4.0)  # flapped: firing again after the resolve
    assert [r.status for r in outbox.due("ch", 5.0, 10)] == ["firing", "resolved", "firing"]


def test_full_disk_keeps_notifications_in_memory_and_still_delivers(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    outbox = Outbox(store)
    outbox.enqueue("slack", "warm", "firing", "{}", time.time())
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full, as SQLite sees it
    big = '{"status": "firing", "labels": {"alertname": "X"}, "annotations": {"description": "' + "x" * 20000 + \
          '"}, "starts_at": 1.0, "ends_at": 0.0, "value": 1.0, "fingerprint": "f"}'
    outbox.enqueue("slack", "f", "firing", big, time.time())
    assert outbox.write_errors == 1
    assert outbox.depth() == {"slack": 2}
    receiver = Receiver(SLACK, "ok")
    try:
        store.db.execute("DELETE FROM outbox WHERE dedup_key='warm'")
        dispatcher = Dispatcher(outbox, [Channel("slack", "slack", urls=[receiver.url])], jitter=lambda: 0.5)
        assert dispatcher.deliver_once("slack")
        assert receiver.requests and receiver.requests[0]["body"]["text"].startswith("[WARNING] X")
        assert outbox.depth() == {}
    finally:
        receiver.close()


def test_slack_gets_at_most_one_message_a_second(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    receiver = Receiver(SLACK, "ok")
    try:
        doc = '{"status": "firing", "labels": {"alertname": "A"}, "annotations": {}, "starts_at": 1.0, ' \
              '"ends_at": 0.0, "value": 1.0, "fingerprint": "%s"}'
        for i in range(3):
            outbox.enqueue("slack", f"k{i}", "firing", doc % i, time.time())
        dispatcher = Dispatcher(outbox, [Channel("slack", "slack", urls=[receiver.url])])
        start = time.monotonic()
        while dispatcher.deliver_once("slack"):
            pass
        assert len(receiver.requests) == 3
        assert time.monotonic() - start >= 1.9  # three messages: two one-second gaps
    finally:
        receiver.close()


