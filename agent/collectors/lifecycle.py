"""A target's life, so that only a real loss pages.

- never_up: it has not answered since the agent began watching it (a guessed address with no
  server behind it, or a configured server still starting). `LlmTargetNeverUp` warns after a
  grace period; nothing critical, and the probe does not run (there is nothing to measure).
- up: it answered this cycle.
- restarting: it answered before, and its process exited while systemd was stopping or
  restarting its unit (unitstate.py); for `restart_grace` this is a planned restart, not an
  outage.
- down: it answered before and does not now, and no planned restart explains it: a crash pages
  at once, as it always did; a planned restart that outlasts its grace pages then. While
  restarting or down, as while never up, the probe waits: a probe could only fail, and page a
  second time for the same incident.

Which targets have ever answered is kept in `state_dir/targets.json` (`Seen`), so an agent
restarted while a server is down still pages for it, and a fresh install does not page for an
address it only guessed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional

from ..model import MetricFamily, gauge
from ..statefile import write_json

log = logging.getLogger(__name__)

STATES = ("never_up", "up", "restarting", "down")
SEEN_FILE = "targets.json"
SEEN_KEPT = 256  # targets remembered (the most recently up first); a host has a handful


class Seen:
    """The targets that have answered at least once, with when they last did (wall clock),
    persisted atomically whenever one is added or forgotten. One per agent, shared by every
    target's TargetLife (each touches only its own name)."""

    def __init__(self, state_dir: str = "", clock: Callable[[], float] = time.time, read_only: bool = False):
        self.path = os.path.join(state_dir, SEEN_FILE) if state_dir else ""
        self.read_only = read_only  # `check`'s pass reads what the running agent knows, never writes it
        self.clock = clock
        self._lock = threading.Lock()
        self._last_up: Dict[str, float] = self._load()
        self._write_failed = False

    def _load(self) -> Dict[str, float]:
        if not self.path:
            return {}
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            return {str(k): float(v) for k, v in doc.get("last_up", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.warning("%s unreadable (%s): every target counts as never up until it answers", self.path, e)
            return {}

    def has(self, server: str) -> bool:
        with self._lock:
            return server in self._last_up

    def mark(self, server: str) -> None:
        """`server` answered now; written to disk when it is new (not every cycle)."""
        with self._lock:
            new = server not in self._last_up
            self._last_up[server] = self.clock()
            if not new:
                return
            if len(self._last_up) > SEEN_KEPT:
                for old in sorted(self._last_up, key=self._last_up.__getitem__)[:len(self._last_up) - SEEN_KEPT]:
                    del self._last_up[old]
            self._save()

    def forget(self, server: str) -> None:
        """A target that is gone: a later one of the same name starts as never up."""
        with self._lock:
            if self._last_up.pop(server, None) is not None:
                self._save()

    def _save(self) -> None:
        if not self.path or self.read_only:
            return
        error = write_json(self.path, {"last_up": self._last_up})
        if error and not self._write_failed:  # a full disk: kept in memory, written with the next change
            log.warning("cannot write %s: %s", self.path, error)
        self._write_failed = error is not None


class TargetLife:
    """One target's state, moved each cycle by `observe(up)`."""

    def __init__(self, server: str, kind: str, seen: Seen, clock: Callable[[], float] = time.monotonic,
                 last_exit: Callable[[], Optional["Exit"]] = lambda: None, restart_grace: float = 120.0):
        self.server = server
        self.kind = kind
        self.seen = seen
        self.clock = clock
        self.last_exit = last_exit
        self.restart_grace = restart_grace
        self.state = "up" if seen.has(server) else "never_up"
        self.since = clock()  # when the state began (monotonic)

    @property
    def ever_up(self) -> bool:
        return self.seen.has(self.server)

    def observe(self, up: bool, answered: Optional[bool] = None) -> str:
        """This cycle: whether it is up, and whether it answered at all (an HTTP error is an
        answer: the server is there; by default, when it is up)."""
        now = self.clock()
        if up or answered:
            self.seen.mark(self.server)
        if up:
            state = "up"
        elif not self.seen.has(self.server):
            state = "never_up"
        else:
            exit_ = self.last_exit()
            planned = exit_ is not None and exit_.planned and now - exit_.at < self.restart_grace
            state = "restarting" if planned else "down"
        if state != self.state:
            log.info("target %s: %s -> %s", self.server, self.state, state, extra={"TARGET": self.server})
            self.state, self.since = state, now
        return state

    def families(self) -> List[MetricFamily]:
        fam = gauge("llm_agent_target_state", "The target's state (1 for the current one): never_up (has not answered "
                                              "since the agent began watching it), up, restarting (a planned restart "
                                              "by systemd, within [health] restart_grace), down.")
        for state in STATES:
            fam.add({"server": self.server, "kind": self.kind, "state": state}, 1 if state == self.state else 0)
        return [fam]


class Exit:
    """How the process behind a target ended: when (monotonic), and whether systemd was
    stopping or restarting its unit (None: nobody could tell)."""

    __slots__ = ("at", "planned", "unit")

    def __init__(self, at: float, planned: Optional[bool], unit: str = ""):
        self.at, self.planned, self.unit = at, planned, unit

    def __repr__(self) -> str:
        return f"Exit(at={self.at}, planned={self.planned}, unit={self.unit!r})"
