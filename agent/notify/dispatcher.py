"""Deliver what the outbox holds: one worker thread per channel (a hung Slack never delays
PagerDuty), always from the head of that channel's queue, so notifications leave in the order
they were created.

A failure backs off the channel, not the notification: while a receiver is down (or asked
for a pause with Retry-After) nothing else is sent to it, and once it answers the whole backlog
follows in order. Backoff doubles from `base_backoff` to `max_backoff` with x0.5-1.5 jitter.
A per-channel minimum interval (Slack: 1 message/s) and dead-lettering of notifications older
than the channel's max_age complete it.

The dispatcher lives as long as the agent: a reload swaps a channel's settings under its
worker (in-flight deliveries finish, nothing is sent twice) and its counters keep counting.
"""

from __future__ import annotations

import importlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import threads
from ..config.channels import kind_of
from .base import AlertDoc, Channel, NotifyError, redact
from .grouping import Message
from .outbox import Outbox, Row

log = logging.getLogger(__name__)

def make_notifier(channel: Channel, resend: float = 60.0) -> Any:
    """The notifier of the channel's kind (config/channels.py says which), with an HTTP session
    for the kinds that post."""
    kind = kind_of(channel.type)
    module, name = kind.notifier.split(":")
    # start-up cost: a notifier's module (smtplib for email, requests for the others) loads only
    # where a channel of its kind is configured
    cls = getattr(importlib.import_module(f"agent.notify.{module}"), name)
    if not kind.http:
        return cls(channel, None, resend)
    import requests  # start-up cost: only when an HTTP channel exists

    session = requests.Session()
    session.trust_env = False  # proxies from the environment are not the operator's choice for pages
    return cls(channel, session, resend)


@dataclass
class ChannelState:
    """One channel's settings and delivery state; replaced settings keep the state."""

    channel: Channel
    notifier: Any
    failures: int = 0  # consecutive failed attempts
    hold_until: float = 0.0  # no attempt before this (backoff, Retry-After)
    last_send: float = 0.0
    event: threading.Event = field(default_factory=threading.Event)


MAX_DOUBLINGS = 40  # base_backoff * 2**40 is past any max_backoff
MAX_RETRY_AFTER = 3600.0  # seconds: the longest Retry-After honoured


class Dispatcher:
    def __init__(self, outbox: Outbox, channels: List[Channel], resend: float = 60.0,
                 clock: Callable[[], float] = time.time, base_backoff: float = 1.0, max_backoff: float = 60.0,
                 jitter: Callable[[], float] = random.random, sleep: Callable[[float], None] = time.sleep):
        self.outbox = outbox
        self.clock = clock
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.sleep = sleep
        self.results: Dict[Tuple[str, str], int] = {}
        self.states: Dict[str, ChannelState] = {}
        # told of each delivered batch (channel, its alerts): a fire drill times its delivery
        self.on_delivered: Callable[[str, List[AlertDoc]], None] = lambda channel, docs: None
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._threads: Dict[str, Tuple[ChannelState, threading.Thread]] = {}
        self._started = False
        self._lock = threading.Lock()
        outbox.on_enqueue = self.wake
        self.configure(channels, resend)

    @property
    def channels(self) -> Dict[str, Channel]:
        return {name: st.channel for name, st in self.states.items()}

    def configure(self, channels: List[Channel], resend: float = 60.0) -> None:
        """Take a new channel list (a reload). Unchanged channels keep their worker and state;
        changed ones get new settings for their next delivery; removed ones stop, and what
        they still held is dropped, counted and logged."""
        wanted = {c.name: c for c in channels}
        with self._lock:
            for name, channel in wanted.items():
                state = self.states.get(name)
                if state is None:
                    self.states[name] = ChannelState(channel, make_notifier(channel, resend))
                elif state.channel != channel or getattr(state.notifier, "resend", resend) != resend:
                    state.channel, state.notifier = channel, make_notifier(channel, resend)
            removed = [name for name in self.states if name not in wanted]
            for name in removed:
                self.states.pop(name).event.set()
        for name in removed + [c for c in self.outbox.channels() if c not in wanted]:
            n = self.outbox.drop_channel(name)
            if n:
                self._count(name, "dead", n)
                log.error("notify %s: the channel is no longer configured; dropped %d waiting notification(s)",
                          name, n, extra={"CHANNEL": name})
        if self._started:
            self._start_workers()

    def wake(self, channel: str) -> None:
        state = self.states.get(channel)
        if state is not None:
            state.event.set()

    def start(self) -> "Dispatcher":
        self._started = True
        self._start_workers()
        return self

    def _start_workers(self) -> None:
        """One worker per channel state. A channel removed and added again gets a new state and
        a new worker; the old one finishes its send and exits."""
        for name, state in list(self.states.items()):
            current = self._threads.get(name)
            if current is None or current[0] is not state:
                t = threads.daemon(self._worker, f"notify-{name}", name, state)
                self._threads[name] = (state, t)
                t.start()

    def stop(self, drain: float = 5.0) -> None:
        """Stop, first trying to deliver the whole backlog (backoff ignored) for at most `drain` seconds."""
        self._drain_until = self.clock() + drain
        self._stop.set()
        for state in list(self.states.values()):
            state.event.set()
        deadline = time.monotonic() + drain + 1  # one deadline for all: workers drain side by side
        for _, t in list(self._threads.values()):
            t.join(max(0.0, deadline - time.monotonic()))

    def _count(self, channel: str, result: str, n: int = 1) -> None:
        with self._lock:
            self.results[(channel, result)] = self.results.get((channel, result), 0) + n

    def _worker(self, name: str, state: ChannelState) -> None:
        while self.states.get(name) is state:
            stopping = self._stop.is_set()
            if stopping and (self.clock() >= self._drain_until or not self.outbox.has(name)):
                return
            try:
                progressed = self.deliver_once(name, draining=stopping)
            except Exception as e:  # the outbox or a notifier bug must not kill the worker
                log.error("notify %s: unexpected error (%s): %s", name, type(e).__name__,
                          redact(str(e), state.channel.secrets()), extra={"CHANNEL": name})
                progressed = False
            if progressed and not stopping:
                continue
            if stopping:
                if not progressed:
                    self.sleep(0.2)  # draining: retry soon, whatever the backoff
                continue
            wait = max(0.0, state.hold_until - self.clock()) if state.hold_until else 1.0
            state.event.wait(min(1.0, wait))
            state.event.clear()

    def next_attempt(self, name: str) -> float:
        """When the channel may be tried next (0: now)."""
        return self.states[name].hold_until

    def deliver_once(self, name: str, draining: bool = False) -> bool:
        """Send one batch from the head of `name`'s queue. False when nothing was sent: the
        queue is empty, or the channel is backing off (unless draining at shutdown)."""
        state = self.states.get(name)
        if state is None:
            return False
        channel, notifier = state.channel, state.notifier
        now = self.clock()
        if now < state.hold_until and not draining:
            return False
        rows = self.outbox.take(name, notifier.max_batch)
        if not rows:
            return False
        fresh = self._drop_expired(name, channel, rows, now)
        docs, group, fresh = self._decode(name, fresh)
        if not fresh:
            return True
        gap = notifier.min_interval - (now - state.last_send)
        if gap > 0:
            self.sleep(gap)
        state.last_send = self.clock()
        try:
            notifier.send(docs, group)
        except NotifyError as e:
            self._failed(name, state, fresh, e)
            return True
        except Exception as e:  # a notifier bug: back off like an outage, and never let one row block the channel
            self._internal_error(name, state, fresh, e)
            return True
        self.outbox.finish(fresh)
        state.failures, state.hold_until = 0, 0.0
        self._count(name, "delivered", len(fresh))
        try:
            self.on_delivered(name, docs)
        except Exception:  # a listener's fault never stops delivery
            log.error("notify %s: delivery listener failed", name, exc_info=log.isEnabledFor(logging.DEBUG))
        if len(docs) <= 3:
            for doc in docs:
                log.info("notify %s: delivered %s %s", name, doc.status, doc.labels.get("alertname", "?"),
                         extra={"CHANNEL": name, "ALERTNAME": doc.labels.get("alertname", "?")})
        else:  # a backlog or a storm: one line a batch
            firing = sum(1 for d in docs if d.status == "firing")
            log.info("notify %s: delivered %d notifications (%d firing, %d resolved)", name, len(docs), firing,
                     len(docs) - firing, extra={"CHANNEL": name})
        return True

    def _decode(self, name: str, rows: List[Row]) -> Tuple[List[AlertDoc], Optional[Message], List[Row]]:
        """The rows' alerts, and the group when the batch is one group message; a row that
        cannot be read (a damaged database) is dropped, logged."""
        messages, good = [], []
        for row in rows:
            try:
                messages.append(Message.from_json(row.payload))
                good.append(row)
            except (ValueError, TypeError, KeyError) as e:
                self.outbox.finish([row])
                self._count(name, "failed")
                log.error("notify %s: dropped an unreadable notification (row %d): %s", name, row.id, e,
                          extra={"CHANNEL": name})
        group = messages[0] if len(messages) == 1 and messages[0].key else None
        return [a for m in messages for a in m.alerts], group, good

    def _internal_error(self, name: str, state: ChannelState, rows: List[Row], e: Exception) -> None:
        log.error("notify %s: unexpected error (%s): %s", name, type(e).__name__,
                  redact(str(e), state.channel.secrets()), extra={"CHANNEL": name})
        if rows[0].attempts >= 2:  # the third failure of the same head: give up on it, not on the channel
            self._failed(name, state, rows[:1], NotifyError(f"internal error: {type(e).__name__}", retryable=False))
            self.outbox.failed_attempt(rows[1:], "")
        else:
            self._failed(name, state, rows, NotifyError(f"internal error: {type(e).__name__}", retryable=True))

    def _drop_expired(self, name: str, channel: Channel, rows: List[Row], now: float) -> List[Row]:
        expired = [r for r in rows if now - r.created_at > channel.max_age]
        if expired:
            self.outbox.finish(expired)
            self._count(name, "dead", len(expired))
            for row in expired:
                log.error("notify %s: dropped a %s notification of %s after %d attempts in %gs: %s", name, row.status,
                          _alertname(row), row.attempts, channel.max_age, row.last_error, extra={"CHANNEL": name})
        return [r for r in rows if r not in expired]

    def _failed(self, name: str, state: ChannelState, rows: List[Row], e: NotifyError) -> None:
        message = redact(str(e), state.channel.secrets())
        if e.retryable:
            state.failures += 1
            # the exponent is capped: after ~17 hours of failures 2**n no longer fits a float (OverflowError)
            doubling = 2.0 ** min(state.failures - 1, MAX_DOUBLINGS)
            delay = min(self.max_backoff, self.base_backoff * doubling) * (0.5 + self.jitter())
            if e.retry_after:  # the receiver's word, within reason: a hostile one cannot hold a channel for days
                delay = max(delay, min(e.retry_after, MAX_RETRY_AFTER))
            state.hold_until = self.clock() + delay
            self.outbox.failed_attempt(rows, message)
            self._count(name, "retried", len(rows))
            # one line when the outage starts, then one each time the backoff doubles past a minute
            if state.failures == 1 or delay >= self.max_backoff * 0.5 and state.failures % 10 == 0:
                log.warning("notify %s: %s; holding the channel for %.1fs (attempt %d, %d waiting)", name, message,
                            delay, state.failures, len(self.outbox.rows(name)), extra={"CHANNEL": name})
        else:
            self.outbox.finish(rows)
            self._count(name, "failed", len(rows))
            log.error("notify %s: %s (not retried: fix the channel); dropped %d notification(s)", name, message,
                      len(rows), extra={"CHANNEL": name})


def _alertname(row: Row) -> str:
    try:
        return ", ".join(sorted({a.labels.get("alertname", "?") for a in Message.from_json(row.payload).alerts}))
    except (ValueError, TypeError, KeyError):
        return "?"
