"""The durable outbox: every notification is written (WAL, fsync) before any delivery
attempt, and removed only after the receiver accepted it, so a crash, a restart or a receiver
that is down for an hour loses nothing. Delivery is at-least-once; receivers de-duplicate by
the stable key each payload carries.

If the database cannot be written (a full disk), notifications are kept in memory and still
delivered; the failure is counted and logged.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from ..store import Store

log = logging.getLogger(__name__)


@dataclass
class Row:
    id: int  # negative: held in memory only
    channel: str
    dedup_key: str
    status: str
    payload: str
    created_at: float
    next_attempt: float
    attempts: int = 0
    last_error: str = ""


class Outbox:
    def __init__(self, store: Store):
        self.store = store
        self.memory: Dict[int, Row] = {}
        self._memory_ids = itertools.count(-1, -1)
        self.write_errors = 0
        self.on_enqueue: Callable[[str], None] = lambda channel: None  # the dispatcher wakes that channel

    def enqueue(self, channel: str, dedup_key: str, status: str, payload: str, now: float) -> None:
        """Persist one notification. A pending row for the same alert and status is updated
        in place (a repeat while the receiver is down), never duplicated."""
        try:
            with self.store.lock:
                db = self.store.db
                last = db.execute("SELECT id, status FROM outbox WHERE channel=? AND dedup_key=? ORDER BY id DESC LIMIT 1",
                                  (channel, dedup_key)).fetchone()
                if last is not None and last[1] == status:
                    db.execute("UPDATE outbox SET payload=? WHERE id=?", (payload, last[0]))
                else:
                    db.execute("INSERT INTO outbox (channel, dedup_key, status, payload, created_at, next_attempt) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (channel, dedup_key, status, payload, now, now))
        except sqlite3.Error as e:
            self.write_errors += 1
            log.error("outbox: cannot persist a notification for %s (%s); holding it in memory", channel, e)
            rid = next(self._memory_ids)
            self.memory[rid] = Row(rid, channel, dedup_key, status, payload, now, now)
        self.on_enqueue(channel)

    def due(self, channel: str, now: float, limit: int) -> List[Row]:
        with self.store.lock:
            rows = [Row(*r) for r in self.store.db.execute(
                "SELECT id, channel, dedup_key, status, payload, created_at, next_attempt, attempts, last_error "
                "FROM outbox WHERE channel=? AND next_attempt<=? ORDER BY id LIMIT ?", (channel, now, limit))]
        held = [r for r in self.memory.values() if r.channel == channel and r.next_attempt <= now]
        return (held + rows)[:limit]

    def next_due(self, channel: str) -> Optional[float]:
        with self.store.lock:
            row = self.store.db.execute("SELECT MIN(next_attempt) FROM outbox WHERE channel=?", (channel,)).fetchone()
        times = [r.next_attempt for r in self.memory.values() if r.channel == channel]
        if row and row[0] is not None:
            times.append(row[0])
        return min(times) if times else None

    def _finish(self, row: Row, result: str, now: float, detail: str = "") -> None:
        if row.id < 0:
            self.memory.pop(row.id, None)
            return
        try:
            with self.store.lock:
                self.store.db.execute("BEGIN")
                self.store.db.execute("DELETE FROM outbox WHERE id=?", (row.id,))
                self.store.db.execute("INSERT INTO notification_log VALUES (?, ?, ?, ?, ?, ?)",
                                      (row.channel, row.dedup_key, row.status, result, now, detail[:500]))
                self.store.db.execute("COMMIT")
        except sqlite3.Error as e:
            self.write_errors += 1
            log.error("outbox: cannot record the outcome of a %s notification: %s", row.channel, e)
            try:
                self.store.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def delivered(self, row: Row, now: float) -> None:
        self._finish(row, "delivered", now)

    def dead(self, row: Row, now: float, reason: str) -> None:
        self._finish(row, "dead", now, reason)

    def retry(self, row: Row, next_attempt: float, error: str) -> None:
        if row.id < 0:
            row.attempts, row.next_attempt, row.last_error = row.attempts + 1, next_attempt, error
            return
        try:
            with self.store.lock:
                self.store.db.execute("UPDATE outbox SET attempts=attempts+1, next_attempt=?, last_error=? WHERE id=?",
                                      (next_attempt, error[:500], row.id))
        except sqlite3.Error as e:
            self.write_errors += 1
            log.error("outbox: cannot reschedule a %s notification: %s", row.channel, e)

    def waiting(self) -> Dict[str, Tuple[int, float]]:
        """Per channel: (notifications waiting, creation time of the oldest), in one query."""
        with self.store.lock:
            rows = self.store.db.execute("SELECT channel, COUNT(*), MIN(created_at) FROM outbox GROUP BY channel").fetchall()
        out = {channel: (n, oldest) for channel, n, oldest in rows}
        for r in self.memory.values():
            n, oldest = out.get(r.channel, (0, r.created_at))
            out[r.channel] = (n + 1, min(oldest, r.created_at))
        return out

    def depth(self) -> Dict[str, int]:
        """Notifications waiting, per channel."""
        return {channel: n for channel, (n, _) in self.waiting().items()}
