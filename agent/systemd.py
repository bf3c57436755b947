"""Talk to systemd: READY=1 once the first cycle is served, STATUS= each cycle, WATCHDOG=1
while the collection loop is really progressing, RELOADING=1/READY=1 around a reload,
STOPPING=1 on shutdown.

systemd-python's `daemon.notify` is used when installed; otherwise a datagram is sent to
$NOTIFY_SOCKET directly (the protocol is one datagram of newline-separated assignments;
a leading '@' names an abstract socket). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Dict, List, Optional

from . import threads

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify with a fallback; `sent` keeps what was sent, for tests and debugging."""

    def __init__(self, environ: Optional[Dict[str, str]] = None, use_library: bool = True):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        self.watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            self.watchdog_usec = 0  # the watchdog is meant for another process
        self._library = None
        if use_library and self.address:
            try:
                from systemd import daemon  # optional (systemd-python): only under systemd

                self._library = daemon
            except ImportError:
                pass
        self.sent: List[str] = []

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str) -> bool:
        """Send `KEY=value` assignments; False when not under systemd or the send failed."""
        if not self.address:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items())
        self.sent.append(message)
        try:
            if self._library is not None:
                return bool(self._library.notify(message))
            return self._send(message)
        except OSError as e:  # systemd gone or the socket refused: never fatal
            log.debug("sd_notify failed: %s", e)
            return False

    def _send(self, message: str) -> bool:
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True

    def ready(self, status: str = "") -> None:
        self.notify(READY="1", STATUS=status) if status else self.notify(READY="1")

    def status(self, text: str) -> None:
        self.notify(STATUS=text)

    def reloading(self) -> None:
        self.notify(RELOADING="1", MONOTONIC_USEC=str(int(time.monotonic() * 1_000_000)))

    def stopping(self) -> None:
        self.notify(STOPPING="1")


class Watchdog:
    """Pings WATCHDOG=1 at half the watchdog interval, but only while `progress()` says the
    loop finished a cycle recently: a wedged loop stops the pings and systemd restarts us."""

    def __init__(self, notifier: Notifier, last_progress: Callable[[], float], stale_after: float,
                 clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.last_progress = last_progress
        self.stale_after = stale_after
        self.clock = clock
        self.period = notifier.watchdog_usec / 2_000_000
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if self.period > 0:
            self._thread = threads.daemon(self._loop, "watchdog")
            self._thread.start()

    def tick(self) -> bool:
        """One decision: ping if the loop progressed within `stale_after`."""
        if self.clock() - self.last_progress() <= self.stale_after:
            return self.notifier.notify(WATCHDOG="1")
        log.error("collection loop made no progress for %.0fs: not feeding the watchdog", self.clock() - self.last_progress())
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.tick()

    def close(self) -> None:
        self._stop.set()
