"""Was a target's exit planned? Asked of systemd the moment the process behind a target exits.

When systemd stops or restarts a service (`systemctl stop|restart`, a package upgrade), it
moves the unit to `deactivating` before it signals the process, so by the time the process is
gone the unit is deactivating, inactive, or already activating again, with `Result=success`.
A crash leaves the unit `active` (systemd has not reaped it yet), `failed`, or in
`auto-restart` with a `Result` such as `signal`, `exit-code`, `core-dump`, `oom-kill` or
`watchdog`. `classify()` is pure and table-tested on those property sets; `UnitStates` runs
`systemctl show` (at most a second) and is only asked on an exit, never every cycle.

Where systemd is absent (no systemctl, or the server is not in a service's cgroup) every exit
is a crash: it pages at once, as it always did.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Callable, Dict, Optional, Sequence

log = logging.getLogger(__name__)

PROPERTIES = ("ActiveState", "SubState", "Result")
PLANNED_STATES = ("deactivating", "inactive", "activating", "reloading")


def parse_show(text: str) -> Dict[str, str]:
    """`systemctl show -p A -p B UNIT`'s KEY=value lines."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def classify(props: Dict[str, str]) -> Optional[bool]:
    """True: systemd was stopping or restarting the unit (planned); False: a crash; None:
    systemd cannot tell (no such unit, no answer)."""
    active, sub, result = props.get("ActiveState", ""), props.get("SubState", ""), props.get("Result", "")
    if not active or props.get("LoadState") == "not-found":
        return None
    if sub == "auto-restart" or active == "failed" or active == "active":
        return False  # restarted by systemd after a failure, failed for good, or killed behind its back
    return active in PLANNED_STATES and result in ("success", "")


Runner = Callable[[Sequence[str], float], str]


def run_systemctl(argv: Sequence[str], timeout: float) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout


class UnitStates:
    """Asks systemd about a unit through `systemctl` ("" turns it off)."""

    def __init__(self, systemctl: str = "systemctl", run: Runner = run_systemctl, timeout: float = 1.0):
        self.systemctl = systemctl
        self.run = run
        self.timeout = timeout
        self._warned = False

    def exit_was_planned(self, unit: str) -> Optional[bool]:
        if not self.systemctl or not unit:
            return None
        argv = [self.systemctl, "show", "--no-pager"] + [f"--property={p}" for p in PROPERTIES + ("LoadState",)] + \
            ["--", unit]
        try:
            text = self.run(argv, self.timeout)
        except (OSError, subprocess.SubprocessError) as e:
            if not self._warned:  # once: a host without systemd says so every exit otherwise
                self._warned = True
                log.info("cannot ask systemd whether %s was stopped on purpose (%s): exits count as crashes",
                         unit, type(e).__name__)
            return None
        return classify(parse_show(text))
