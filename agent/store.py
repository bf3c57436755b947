"""The agent's SQLite database in the state directory: alert state, the notification outbox,
alert groups and silences.

WAL with synchronous=FULL: a notification written here survives a crash or power loss the
moment `enqueue` returns.

The schema carries a version (`PRAGMA user_version`); `MIGRATIONS` brings any older database
forward, so an agent upgraded in place keeps its alerts and its outbox.

Writes go through `Store.write`, which never raises: a full or read-only disk is counted per
kind of write and logged once when it starts; the caller keeps what it could not save in
memory (see the outbox and the engine) and calls `recovered` once all of it is saved.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Callable, Dict, List

log = logging.getLogger(__name__)

# Version 1 is the layout the first release created without a version number.
_V1 = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (channel, next_attempt);
CREATE TABLE IF NOT EXISTS notification_log (
    channel TEXT NOT NULL, dedup_key TEXT NOT NULL, status TEXT NOT NULL,
    result TEXT NOT NULL, at REAL NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS alert_state (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    doc TEXT NOT NULL
);
"""
# Version 2: delivery order is the row id (the outbox assigns ids itself, so rows held in
# memory through a full disk keep their place when saved later); per-row backoff is gone
# (a channel backs off as a whole, in memory); notification_log was written and never read.
_V2 = """
DROP INDEX IF EXISTS outbox_due;
DROP TABLE IF EXISTS notification_log;
CREATE INDEX IF NOT EXISTS outbox_channel ON outbox (channel, id);
"""
# Version 3: silences (Alertmanager's, and maintenance windows), one JSON document each.
_V3 = """
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""
# Version 4: alert groups per channel (notify/grouping.py), so a group waiting to be sent
# survives a crash.
_V4 = """
CREATE TABLE IF NOT EXISTS alert_groups (channel TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
                                         PRIMARY KEY (channel, key));
"""
MIGRATIONS: List[str] = [_V1, _V2, _V3, _V4]  # MIGRATIONS[i] takes a database from version i to i + 1
SCHEMA_VERSION = len(MIGRATIONS)


def small_page_cache(db: sqlite3.Connection) -> None:
    """A 256 KiB page cache on this connection. SQLite's default is 2 MiB per connection, and
    the agent has several (the state store, the history's writer and seal, a history reader per
    reading thread, the report schedule's): resident memory it does not need, since the head is
    written once and read once, chunks are decoded by whoever reads them anyway, and the OS caches
    the files (a reader that read 4 MB of chunks held 2.4 MiB more RSS, 0.9 with this)."""
    db.execute("PRAGMA cache_size = -256")


class Store:
    """One connection shared by the agent's threads behind a lock."""

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        small_page_cache(self.db)
        self.lock = threading.RLock()
        self.write_errors: Dict[str, int] = {}  # by what was being written: outbox, alert_state
        self._failing: Dict[str, str] = {}  # kinds failing now, with the first error
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{self.path} was written by a newer llm-agent (schema {version}, "
                                        f"this one knows {SCHEMA_VERSION}); upgrade the agent or move the file away")
        for step in range(version, SCHEMA_VERSION):
            self.db.executescript("BEGIN;" + MIGRATIONS[step] + f"PRAGMA user_version = {step + 1}; COMMIT;")
            if version:
                log.info("state database %s upgraded to schema %d", self.path, step + 1)

    def write(self, kind: str, work: Callable[[sqlite3.Connection], None]) -> bool:
        """Run `work` in one transaction. False (counted, logged once per failing period) if
        the database refused it. The caller says when the period ends (`recovered`): only when
        everything it held back is saved, since a full disk still lets some writes through."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                work(self.db)
                self.db.execute("COMMIT")
            except BaseException as e:
                if self.db.in_transaction:  # never leave one open: every later BEGIN would fail
                    try:
                        self.db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if not isinstance(e, sqlite3.Error):
                    raise
                self.write_errors[kind] = self.write_errors.get(kind, 0) + 1
                if kind not in self._failing:
                    self._failing[kind] = str(e)
                    log.error("state database %s: cannot write %s (%s); keeping it in memory and retrying "
                              "each cycle (logged once until it recovers)", self.path, kind, e)
                return False
            return True

    def recovered(self, kind: str) -> None:
        """Everything of `kind` held in memory is saved: end the failing period, log it."""
        if self._failing.pop(kind, None) is not None:
            log.warning("state database %s: %s can be written again; nothing held in memory any more", self.path, kind)

    def close(self) -> None:
        with self.lock:
            self.db.close()
