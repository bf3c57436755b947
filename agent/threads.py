"""Threads an operator can tell apart: each of the agent's threads carries its Python name into
the kernel too, so `top -H`, `ps -L`, py-spy and /proc/<pid>/task/*/comm say which part of the
agent spends the CPU (a benchmark reads that split from outside: tests/bench/bench_realtime.py).

Linux keeps 15 bytes of a thread's name; elsewhere, or where /proc is not writable, the name
stays Python's own and nothing else changes."""

import threading
from typing import Any, Callable, Optional

COMM_BYTES = 15  # TASK_COMM_LEN less its NUL


def name_os_thread(name: Optional[str] = None) -> None:
    """Give the calling thread's kernel name its Python name (or `name`); a pool's initializer."""
    text = (name or threading.current_thread().name).encode("ascii", "replace")[:COMM_BYTES]
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "wb") as f:
            f.write(text)
    except OSError:  # not Linux, or /proc read-only: the name is cosmetic
        pass


def daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """A daemon thread (not started) that runs target(*args) under `name`, in Python and in the kernel."""
    def run() -> None:
        name_os_thread(name)
        target(*args)
    return threading.Thread(target=run, name=name, daemon=True)
