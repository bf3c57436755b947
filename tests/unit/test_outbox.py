"""The outbox: one ordered queue per channel, durable across a reopen, coalescing repeats of
the same episode only, and degrading to memory (each row delivered once) on a full disk."""

import json
import logging
import sqlite3

from agent.notify.outbox import Outbox
from agent.store import MIGRATIONS, SCHEMA_VERSION, Store


def payload(fp="f", starts_at=1.0, status="firing", note=""):
    return json.dumps({"status": status, "labels": {"alertname": "X"}, "annotations": {"note": note},
                       "starts_at": starts_at, "ends_at": 0.0, "value": 1.0, "fingerprint": fp})


def statuses(outbox, channel="ch"):
    return [(r.dedup_key, r.status, r.episode) for r in outbox.rows(channel)]


def fill_disk(store):
    """SQLite's view of a full disk: the file may not grow by another page."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")


def free_disk(store):
    store.db.execute("PRAGMA max_page_count = 1073741823")


def test_rows_survive_a_reopen_in_creation_order(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    outbox = Outbox(store)
    for i, status in enumerate(("firing", "resolved", "firing")):
        outbox.enqueue("ch", "k1", status, payload("k1", starts_at=1.0 if i < 2 else 9.0, status=status), float(i))
    outbox.enqueue("ch", "k2", "firing", payload("k2"), 4.0)
    store.db.close()  # as good as a crash: nothing else is flushed
    again = Outbox(Store(str(tmp_path / "state.db")))
    assert statuses(again) == [("k1", "firing", 1.0), ("k1", "resolved", 1.0), ("k1", "firing", 9.0),
                               ("k2", "firing", 1.0)]
    again.enqueue("ch", "k3", "firing", payload("k3"), 5.0)
    assert [r.id for r in again.rows("ch")] == sorted(r.id for r in again.rows("ch")), "new ids follow the old"


def test_a_repeat_of_the_same_episode_is_coalesced_but_a_new_episode_is_not(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    outbox.enqueue("ch", "k", "firing", payload("k", 1.0, note="a"), 1.0)
    outbox.enqueue("ch", "k", "firing", payload("k", 1.0, note="b"), 2.0)  # a repeat while waiting
    assert [json.loads(r.payload)["annotations"]["note"] for r in outbox.rows("ch")] == ["b"]
    assert outbox.coalesced == {"ch": 1} and outbox.enqueued == {"ch": 1}
    outbox.enqueue("ch", "k", "resolved", payload("k", 1.0, "resolved"), 3.0)
    outbox.enqueue("ch", "k", "firing", payload("k", 5.0), 5.0)  # flapped: a new episode
    outbox.enqueue("ch", "k", "resolved", payload("k", 5.0, "resolved"), 6.0)
    outbox.enqueue("ch", "k", "firing", payload("k", 7.0), 7.0)  # the last row is a resolve: appended
    assert statuses(outbox) == [("k", "firing", 1.0), ("k", "resolved", 1.0), ("k", "firing", 5.0),
                                ("k", "resolved", 5.0), ("k", "firing", 7.0)]


def test_a_firing_of_another_episode_never_replaces_an_undelivered_one(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    outbox.enqueue("ch", "k", "firing", payload("k", 1.0), 1.0)
    outbox.enqueue("ch", "k", "firing", payload("k", 2.0), 2.0)  # its resolve went elsewhere or was not wanted
    assert statuses(outbox) == [("k", "firing", 1.0), ("k", "firing", 2.0)]


def test_a_row_being_sent_is_not_replaced_under_the_sender(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    outbox.enqueue("ch", "k", "firing", payload("k", note="old"), 1.0)
    taken = outbox.take("ch", 10)
    outbox.enqueue("ch", "k", "firing", payload("k", note="new"), 2.0)  # e.g. a py-spy summary landed
    outbox.finish(taken)
    assert [json.loads(r.payload)["annotations"]["note"] for r in outbox.rows("ch")] == ["new"]


def test_take_stops_before_a_second_row_of_the_same_alert(tmp_path):
    outbox = Outbox(Store(str(tmp_path / "state.db")))
    outbox.enqueue("ch", "a", "firing", payload("a"), 1.0)
    outbox.enqueue("ch", "b", "firing", payload("b"), 1.0)
    outbox.enqueue("ch", "a", "resolved", payload("a", status="resolved"), 2.0)
    outbox.enqueue("ch", "c", "firing", payload("c"), 2.0)
    first = outbox.take("ch", 64)
    assert [(r.dedup_key, r.status) for r in first] == [("a", "firing"), ("b", "firing")]
    outbox.finish(first)
    assert [(r.dedup_key, r.status) for r in outbox.take("ch", 64)] == [("a", "resolved"), ("c", "firing")]


def test_full_disk_delivers_each_row_once_and_catches_up_when_space_returns(tmp_path, caplog):
    store = Store(str(tmp_path / "state.db"))
    outbox = Outbox(store)
    outbox.enqueue("ch", "warm", "firing", payload("warm"), 1.0)
    fill_disk(store)
    big = payload("big", note="x" * 20000)
    with caplog.at_level(logging.ERROR):
        outbox.enqueue("ch", "big", "firing", big, 2.0)  # cannot be saved: held in memory, in order
        outbox.enqueue("ch", "big2", "firing", big.replace('"big"', '"big2"'), 3.0)
        assert [r.dedup_key for r in outbox.rows("ch")] == ["warm", "big", "big2"]
        for _ in range(3):  # deliver everything, one row at a time, as the dispatcher does
            outbox.finish(outbox.take("ch", 1))
            outbox.sync()
        assert outbox.rows("ch") == [] and outbox.take("ch", 10) == [], "nothing is offered twice"
    assert outbox.write_errors >= 2
    assert sum("cannot write outbox" in r.message for r in caplog.records) == 1, "logged once, not per row"
    free_disk(store)
    with caplog.at_level(logging.WARNING):
        outbox.sync()
        outbox.enqueue("ch", "after", "firing", payload("after"), 4.0)
    assert "outbox can be written again" in caplog.text
    assert store.db.execute("SELECT dedup_key FROM outbox").fetchall() == [("after",)], "the failed removal is done"


def test_rows_held_in_memory_are_saved_in_their_place_when_space_returns(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    outbox = Outbox(store)
    outbox.enqueue("ch", "a", "firing", payload("a"), 1.0)
    fill_disk(store)
    outbox.enqueue("ch", "b", "firing", payload("b", note="y" * 20000), 2.0)
    free_disk(store)
    outbox.enqueue("ch", "c", "firing", payload("c"), 3.0)
    outbox.sync()
    store.db.close()
    again = Outbox(Store(str(tmp_path / "state.db")))
    assert [r.dedup_key for r in again.rows("ch")] == ["a", "b", "c"]


def test_a_channel_queue_is_bounded_and_the_overflow_counted(tmp_path, caplog):
    outbox = Outbox(Store(str(tmp_path / "state.db")), max_per_channel=3)
    for i in range(5):
        outbox.enqueue("ch", f"k{i}", "firing", payload(f"k{i}"), float(i))
    assert [r.dedup_key for r in outbox.rows("ch")] == ["k2", "k3", "k4"]
    assert outbox.overflowed == {"ch": 2} and "dropped the oldest" in caplog.text


def test_an_old_database_is_migrated_with_its_alerts_and_outbox(tmp_path):
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])  # the first release's layout, no version number
    db.execute("INSERT INTO outbox (channel, dedup_key, status, payload, created_at, next_attempt) "
               "VALUES ('ch', 'k', 'firing', ?, 1.0, 1.0)", (payload("k"),))
    db.execute("INSERT INTO notification_log VALUES ('ch', 'k', 'firing', 'delivered', 1.0, '')")
    db.execute("INSERT INTO alert_state VALUES ('fp', 'Rule', '{}')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r.dedup_key for r in Outbox(store).rows("ch")] == ["k"]
    assert store.db.execute("SELECT rule FROM alert_state").fetchall() == [("Rule",)]
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "notification_log" not in tables


def test_a_write_that_raises_something_else_leaves_no_transaction_open(tmp_path):
    store = Store(str(tmp_path / "state.db"))

    def bug(db):
        db.execute("DELETE FROM outbox")
        raise KeyError("bug")

    try:
        store.write("outbox", bug)
    except KeyError:
        pass
    assert not store.db.in_transaction
    assert store.write("outbox", lambda db: db.execute("DELETE FROM outbox"))
