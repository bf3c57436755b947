"""The durable outbox: every notification is written (WAL, fsync) before any delivery
attempt, and removed only after the receiver accepted it, so a crash, a restart or a receiver
that is down for an hour loses nothing. Delivery is at-least-once; receivers de-duplicate by
the stable key each payload carries.

Each channel's notifications form one queue in creation order, held in memory with the
database as its durable copy: the dispatcher always sends from the head, so a receiver sees
an alert's firing before its resolve and episodes in the order they happened. The row id is
the place in that order; the outbox assigns it, so a row that could not be saved (a full disk)
keeps its place when it is saved later.

If the database cannot be written, nothing is lost or repeated: rows wait in memory and are
delivered once each; what the disk refused (a new row, a delivered row's removal) is retried
by `sync()` each cycle until space returns. The store counts and logs the failure once.
"""

from __future__ import annotations

import json
import sqlite3
import logging
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Set, Tuple

from ..store import Store

log = logging.getLogger(__name__)
MAX_PER_CHANNEL = 10_000  # beyond this the oldest waiting notification is dropped (counted, logged)


@dataclass
class Row:
    id: int
    channel: str
    dedup_key: str
    status: str
    payload: str
    created_at: float
    attempts: int = 0
    last_error: str = ""
    episode: float = 0.0  # the alert's start: a repeat of the same episode may replace a waiting row
    saved: bool = True  # the database holds this row as it is here


def _episode(payload: str) -> float:
    try:
        return float(json.loads(payload).get("starts_at", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0


class Outbox:
    def __init__(self, store: Store, max_per_channel: int = MAX_PER_CHANNEL):
        self.store = store
        self.max_per_channel = max_per_channel
        self.queues: Dict[str, Deque[Row]] = {}
        self.inflight: Set[int] = set()  # rows a worker is sending now: never replaced under it
        self.overflowed: Dict[str, int] = {}  # rows dropped because a channel's queue was full
        self.enqueued: Dict[str, int] = {}  # rows created, by channel
        self.coalesced: Dict[str, int] = {}  # repeats folded into a waiting row, by channel
        self._unremoved: Set[int] = set()  # finished rows the database still holds
        self._latest: Dict[Tuple[str, str], Row] = {}  # (channel, alert) -> its newest waiting row
        self.on_enqueue = lambda channel: None  # the dispatcher wakes that channel
        with store.lock:
            rows = store.db.execute("SELECT id, channel, dedup_key, status, payload, created_at, attempts, last_error "
                                    "FROM outbox ORDER BY id").fetchall()
            seq = store.db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        self._next_id = max([seq[0] if seq else 0] + [r[0] for r in rows]) + 1
        for r in rows:
            row = Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], episode=_episode(r[4]))
            self.queues.setdefault(row.channel, deque()).append(row)
            self._latest[(row.channel, row.dedup_key)] = row

    @property
    def write_errors(self) -> int:
        return self.store.write_errors.get("outbox", 0)

    # -- writing ---------------------------------------------------------------------------------

    def enqueue(self, channel: str, dedup_key: str, status: str, payload: str, now: float,
                episode: Optional[float] = None) -> None:
        """Queue one notification. A repeat of a waiting one (same alert, status and episode, not
        being sent right now) replaces it in place; anything else goes to the back."""
        episode = _episode(payload) if episode is None else episode
        with self.store.lock:
            queue = self.queues.setdefault(channel, deque())
            last = self._latest.get((channel, dedup_key))  # not a scan: a backlog can hold thousands
            if last is not None and last.status == status and last.episode == episode and last.id not in self.inflight:
                last.payload = payload
                last.saved = False
                self.coalesced[channel] = self.coalesced.get(channel, 0) + 1
                self._save([last])
            else:
                row = Row(self._next_id, channel, dedup_key, status, payload, now, episode=episode, saved=False)
                self._next_id += 1
                queue.append(row)
                self._latest[(channel, dedup_key)] = row
                self.enqueued[channel] = self.enqueued.get(channel, 0) + 1
                self._save([row])
                self._bound(channel)
        self.on_enqueue(channel)

    def _save(self, rows: List[Row]) -> None:
        def work(db):
            db.executemany("INSERT OR REPLACE INTO outbox (id, channel, dedup_key, status, payload, created_at, "
                           "next_attempt, attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(r.id, r.channel, r.dedup_key, r.status, r.payload, r.created_at, r.created_at,
                             r.attempts, r.last_error[:500]) for r in rows])

        if self.store.write("outbox", work):
            for r in rows:
                r.saved = True
            # a write that adds data went through: once nothing is held back, the disk is fine again
            if not self._unremoved and all(r.saved for q in self.queues.values() for r in q):
                self.store.recovered("outbox")

    def _remove(self, ids: List[int]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])

        if ids and not self.store.write("outbox", work):
            self._unremoved.update(ids)

    def _bound(self, channel: str) -> None:
        queue = self.queues[channel]
        while len(queue) > self.max_per_channel:
            victim = next((r for r in queue if r.id not in self.inflight), None)
            if victim is None:
                return
            queue.remove(victim)
            self._forget([victim])
            self._remove([victim.id])
            n = self.overflowed[channel] = self.overflowed.get(channel, 0) + 1
            if n == 1 or n % 1000 == 0:
                log.error("outbox: channel %s holds more than %d notifications; dropped the oldest (%d so far)",
                          channel, self.max_per_channel, n, extra={"CHANNEL": channel})

    def _forget(self, rows: List[Row]) -> None:
        """Rows leaving the queue stop being their alert's newest waiting row."""
        for r in rows:
            if self._latest.get((r.channel, r.dedup_key)) is r:
                del self._latest[(r.channel, r.dedup_key)]

    def sync(self) -> None:
        """Retry what the database refused: rows not yet saved, removals not yet done."""
        with self.store.lock:
            unsaved = [r for q in self.queues.values() for r in q if not r.saved]
            if unsaved:
                self._save(unsaved)
            if self._unremoved:
                ids = sorted(self._unremoved)
                self._unremoved.clear()
                self._remove(ids)

    # -- delivering ------------------------------------------------------------------------------

    def take(self, channel: str, limit: int) -> List[Row]:
        """The head of the channel's queue: up to `limit` rows in order, stopping before a
        second row of the same alert (its firing and resolve never share one message)."""
        out: List[Row] = []
        keys = set()
        with self.store.lock:
            for row in self.queues.get(channel, ()):
                if len(out) >= limit or row.dedup_key in keys:
                    break
                keys.add(row.dedup_key)
                out.append(row)
            self.inflight.update(r.id for r in out)
        return out

    def finish(self, rows: List[Row]) -> None:
        """Delivered, or given up on: out of the queue and off the disk."""
        with self.store.lock:
            done = {r.id for r in rows}
            for channel in {r.channel for r in rows}:
                queue = self.queues.get(channel)
                while queue and queue[0].id in done:  # taken rows are the head: the usual case
                    queue.popleft()
                if queue and any(r.id in done for r in queue):
                    self.queues[channel] = deque(r for r in queue if r.id not in done)
            self.inflight.difference_update(done)
            self._forget(rows)
            self._remove(sorted(done))

    def failed_attempt(self, rows: List[Row], error: str) -> None:
        """A retryable failure: the rows stay at the head; the error is kept for `check`."""
        with self.store.lock:
            for r in rows:
                r.attempts += 1
                r.last_error = error
            self.inflight.difference_update(r.id for r in rows)
            def work(db: sqlite3.Connection) -> None:
                db.executemany("UPDATE outbox SET attempts=?, last_error=? WHERE id=?",
                               [(r.attempts, error[:500], r.id) for r in rows])

            self.store.write("outbox", work)

    def drop_channel(self, channel: str) -> int:
        """A channel removed from the configuration: its waiting rows can go nowhere."""
        with self.store.lock:
            rows = list(self.queues.pop(channel, ()))
            self._forget(rows)
            self._remove([r.id for r in rows])
        return len(rows)

    # -- reading ---------------------------------------------------------------------------------

    def channels(self) -> List[str]:
        with self.store.lock:
            return [c for c, q in self.queues.items() if q]

    def has(self, channel: str) -> bool:
        return bool(self.queues.get(channel))

    def waiting(self) -> Dict[str, Tuple[int, float]]:
        """Per channel: (notifications waiting, creation time of the oldest)."""
        with self.store.lock:
            return {c: (len(q), min(r.created_at for r in q)) for c, q in self.queues.items() if q}

    def depth(self) -> Dict[str, int]:
        """Notifications waiting, per channel."""
        return {channel: n for channel, (n, _) in self.waiting().items()}

    def rows(self, channel: str) -> List[Row]:
        with self.store.lock:
            return list(self.queues.get(channel, ()))
