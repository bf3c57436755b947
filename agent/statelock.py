"""One agent per state directory. Two agents on the same directory would both deliver every
alert (two pages for each) and fight over the database; the second is refused at start.

The lock is the OS's (flock on the pid file), so it dies with its holder: a kill -9 or a crash
never leaves a stale lock that blocks the restart.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os

log = logging.getLogger(__name__)
PIDFILE = "llm-agent.pid"


class StateDirInUse(Exception):
    """Another live agent holds the state directory."""


class StateLock:
    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, PIDFILE)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise StateDirInUse(f"the state directory {state_dir} is in use by another llm-agent (pid {holder}); "
                                "stop that one, or give this one its own [agent] state_dir") from None
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:  # a full disk: the lock holds all the same; only `llm-agent reload` needs the pid
            log.warning("cannot write the pid to %s (%s); `llm-agent reload` will not find this agent", self.path,
                        e.strerror)

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
