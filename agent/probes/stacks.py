"""py-spy stack dumps of hung or stalled Python servers (vLLM, SGLang, any Python process
behind a target): run `py-spy dump --nonblocking` with a time limit, keep the full dump in the
state directory, and summarise the busiest threads' top frames for the alert.

A missing privilege is reported once with its fix (CAP_SYS_PTRACE), not every cycle.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional
from .. import threads

log = logging.getLogger(__name__)

_THREAD = re.compile(r'^Thread (\S+) \((\w+)\)(?:: "([^"]*)")?')
_FRAME = re.compile(r"^\s+(\S.*?) \((.*?)\)\s*$")
PTRACE_FIX = ("grant the agent CAP_SYS_PTRACE (the systemd drop-in contrib/systemd/ptrace.conf) "
              "or run py-spy as the server's user")


@dataclass
class StackDump:
    pid: int
    text: str
    summary: str
    path: str = ""
    error: str = ""
    taken_at: float = 0.0


def summarize(text: str, threads: int = 3, frames: int = 3) -> str:
    """'MainThread (active): f (file.py:12) <- g (file.py:30); ...': active threads first."""
    parsed: List[list] = []
    current: Optional[list] = None
    for line in text.splitlines():
        m = _THREAD.match(line)
        if m:
            current = [m.group(3) or m.group(1), m.group(2), []]
            parsed.append(current)
            continue
        f = _FRAME.match(line)
        if f and current is not None:
            current[2].append(f"{f.group(1)} ({os.path.basename(f.group(2))})")
    parsed.sort(key=lambda t: _rank(t[1], t[2]))
    parts = [f"{name} ({state}): " + " <- ".join(stack[:frames]) for name, state, stack in parsed[:threads] if stack]
    return "; ".join(parts) or "no Python frames found"


# a thread in one of these waits on something else: a lock, a timer, or the network either way
# (writing a reply to a client is I/O, not the computation a hang lives in)
_WAITS = ("wait", "select", "poll", "accept", "serve_forever", "_wait_for_tstate_lock", "get", "join",
          "acquire", "recv", "read", "readinto", "sleep", "write", "send", "sendall", "flush")


# loops where a healthy server's threads wait for work: a thread parked in one of these is idle
_IDLE_LOOPS = ("serve_forever", "_worker", "_handle_request_noblock", "run_forever", "_run_once", "get_request")


def _function(frame: str) -> str:
    # py-spy writes qualified names for methods: "Condition.wait", "_PollLikeSelector.select"
    return frame.split(" ", 1)[0].rsplit(".", 1)[-1]


def _parked(frame: str) -> bool:
    return _function(frame) in _WAITS


def _rank(state: str, stack: List[str]) -> int:
    """Where a hang most likely lives, first: busy threads (active and not in a wait), then
    threads waiting inside application code (a request stuck on something), and last threads
    idle in a server's or pool's own loop (what every healthy server has)."""
    if not stack:
        return 4
    parked = _parked(stack[0])
    if not parked:
        return 0 if state == "active" else 1
    if any(_function(f) in _IDLE_LOOPS for f in stack):
        return 3
    return 2


def py_spy_path() -> Optional[str]:
    """py-spy on PATH, else beside the running interpreter: a venv's bin/ (the checkout's
    .venv, the .deb's /opt/llm-agent) is often not on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return shutil.which("py-spy") or (beside if os.access(beside, os.X_OK) else None)


def dump(pid: int, timeout: float = 10.0, binary: Optional[str] = None) -> StackDump:
    """One non-blocking dump of `pid`."""
    binary = binary or py_spy_path()
    if binary is None:
        where = os.path.dirname(sys.executable)
        return StackDump(pid, "", "", error=f"py-spy is not installed: it ships with llm-agent; reinstall the agent, "
                                            f"or run {os.path.join(where, 'pip')} install py-spy")
    try:
        out = subprocess.run([binary, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return StackDump(pid, "", "", error=f"py-spy took longer than {timeout:g}s")
    text = out.stdout
    if out.returncode != 0:
        err = (out.stderr or out.stdout).strip().splitlines()
        first = err[0] if err else f"exit status {out.returncode}"
        if "ermission" in first or "not permitted" in first:
            return StackDump(pid, "", "", error=f"no permission to read process {pid}: {PTRACE_FIX}")
        if "python version" in first:
            return StackDump(pid, "", "", error=f"process {pid} is not a Python process: py-spy reads Python stacks only")
        if "executable name" in first or "No such process" in first:
            return StackDump(pid, "", "", error=f"no process {pid}")
        return StackDump(pid, "", "", error=f"py-spy failed: {first[:200]}")
    return StackDump(pid, text, summarize(text), taken_at=time.time())


class StackStore:
    """The latest dump per target, written to state_dir/stacks; dumps taken in the background."""

    def __init__(self, state_dir: str, timeout: float = 10.0, binary: Optional[str] = None):
        self.dir = os.path.join(state_dir, "stacks")
        self.timeout = timeout
        self.binary = binary  # py-spy; found on PATH when None
        self.latest: Dict[str, StackDump] = {}
        self._busy: Dict[str, bool] = {}
        self._reported: set = set()
        self._lock = threading.Lock()

    def capture(self, server: str, pid: int, reason: str) -> None:
        """Start a dump of `pid` for `server` unless one is already running."""
        with self._lock:
            if self._busy.get(server):
                return
            self._busy[server] = True
        threads.daemon(self._take, f"py-spy-{server}", server, pid, reason).start()

    def take_now(self, server: str, pid: int, reason: str) -> StackDump:
        """Dump synchronously (for `llm-agent stacks`) and store it."""
        return self._take(server, pid, reason)

    def _take(self, server: str, pid: int, reason: str) -> StackDump:
        try:
            result = dump(pid, self.timeout, self.binary)
            if result.error:
                if result.error not in self._reported:  # once, not every cycle
                    self._reported.add(result.error)
                    log.warning("stacks of %s (pid %d): %s", server, pid, result.error, extra={"TARGET": server})
            else:
                os.makedirs(self.dir, exist_ok=True)
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", server)
                result.path = os.path.join(self.dir, f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{pid}.txt")
                with open(result.path, "w", encoding="utf-8") as f:
                    f.write(f"# {reason}; pid {pid}; {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n{result.text}")
                log.warning("stacks of %s (%s) in %s: %s", server, reason, result.path, result.summary,
                            extra={"TARGET": server})
            with self._lock:
                self.latest[server] = result
            return result
        finally:
            with self._lock:
                self._busy[server] = False
