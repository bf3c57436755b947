"""Deliver what the outbox holds: one worker thread per channel (a hung Slack never delays
PagerDuty), batches as each channel allows, exponential backoff with jitter, Retry-After
honoured, a per-channel minimum interval (Slack: 1 message/s), and dead-lettering of
notifications older than the channel's max_age."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Dict, List, Tuple

from .alertmanager import AlertmanagerNotifier
from .base import AlertDoc, Channel, NotifyError, redact
from .outbox import Outbox, Row
from .pagerduty import PagerDutyNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

log = logging.getLogger(__name__)

NOTIFIERS = {"slack": SlackNotifier, "pagerduty": PagerDutyNotifier, "webhook": WebhookNotifier,
             "alertmanager": AlertmanagerNotifier}


def make_notifier(channel: Channel, resend: float = 60.0):
    import requests  # only when a channel exists

    session = requests.Session()
    session.trust_env = False  # proxies from the environment are not the operator's choice for pages
    cls = NOTIFIERS[channel.type]
    return cls(channel, session, resend) if cls is AlertmanagerNotifier else cls(channel, session)


class Dispatcher:
    def __init__(self, outbox: Outbox, channels: List[Channel], resend: float = 60.0,
                 clock: Callable[[], float] = time.time, base_backoff: float = 1.0, max_backoff: float = 300.0,
                 jitter: Callable[[], float] = random.random):
        self.outbox = outbox
        self.channels = {c.name: c for c in channels}
        self.notifiers = {c.name: make_notifier(c, resend) for c in channels}
        self.clock = clock
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.results: Dict[Tuple[str, str], int] = {}
        self._events = {name: threading.Event() for name in self.channels}
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._threads: List[threading.Thread] = []
        self._last_send: Dict[str, float] = {}
        self._lock = threading.Lock()
        outbox.on_enqueue = self.wake

    def wake(self, channel: str) -> None:
        event = self._events.get(channel)
        if event is not None:
            event.set()

    def start(self) -> "Dispatcher":
        for name in self.channels:
            t = threading.Thread(target=self._worker, args=(name,), name=f"notify-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, drain: float = 5.0) -> None:
        """Stop, first delivering what is due for at most `drain` seconds."""
        self._drain_until = self.clock() + drain
        self._stop.set()
        for event in self._events.values():
            event.set()
        for t in self._threads:
            t.join(drain + 1)

    def _count(self, channel: str, result: str, n: int = 1) -> None:
        with self._lock:
            self.results[(channel, result)] = self.results.get((channel, result), 0) + n

    def _worker(self, name: str) -> None:
        event = self._events[name]
        while True:
            stopping = self._stop.is_set()
            if stopping and self.clock() >= self._drain_until:
                return
            try:
                sent = self.deliver_once(name)
            except Exception as e:  # the outbox or a notifier bug must not kill the worker
                log.exception("notify %s: unexpected error: %s", name, redact(str(e), self.channels[name].secrets()))
                sent = False
            if sent:
                continue
            if stopping:
                return
            due = self.outbox.next_due(name)
            wait = 1.0 if due is None else min(1.0, max(0.0, due - self.clock()))
            event.wait(wait)
            event.clear()

    def deliver_once(self, name: str) -> bool:
        """Send one batch of what is due for `name`; False when nothing was due."""
        channel, notifier = self.channels[name], self.notifiers[name]
        now = self.clock()
        rows = self.outbox.due(name, now, notifier.max_batch)
        if not rows:
            return False
        fresh: List[Row] = []
        for row in rows:
            if now - row.created_at > channel.max_age:
                self.outbox.dead(row, now, f"not delivered within {channel.max_age:g}s; last error: {row.last_error}")
                self._count(name, "dead")
                log.error("notify %s: dropped a %s notification after %d attempts: %s", name, row.status,
                          row.attempts, row.last_error, extra={"CHANNEL": name})
            else:
                fresh.append(row)
        if not fresh:
            return True
        gap = notifier.min_interval - (now - self._last_send.get(name, 0.0))
        if gap > 0:
            time.sleep(gap)
        self._last_send[name] = self.clock()
        try:
            notifier.send([AlertDoc.from_json(r.payload) for r in fresh])
        except NotifyError as e:
            message = redact(str(e), channel.secrets())
            for row in fresh:
                if e.retryable:
                    delay = min(self.max_backoff, self.base_backoff * 2 ** row.attempts) * (0.5 + self.jitter())
                    if e.retry_after:
                        delay = max(delay, e.retry_after)
                    self.outbox.retry(row, self.clock() + delay, message)
                else:
                    self.outbox.dead(row, self.clock(), message)
            self._count(name, "retried" if e.retryable else "failed", len(fresh))
            (log.warning if e.retryable else log.error)(
                "notify %s: %s (%s)", name, message, "will retry" if e.retryable else "not retried: fix the channel",
                extra={"CHANNEL": name})
            return True
        for row in fresh:
            self.outbox.delivered(row, self.clock())
        self._count(name, "delivered", len(fresh))
        return True
