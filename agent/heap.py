"""The C heap under Python: glibc's malloc keeps what the agent frees, and a long-running
agent should not hold its busiest moment's memory forever. Both calls are no-ops where there
is no glibc (musl, macOS)."""

from __future__ import annotations

import ctypes
import functools
from typing import Optional

RETURN_EVERY = 60.0  # seconds between handing freed memory back (a cycle's own work, not a timer)


@functools.lru_cache(maxsize=1)  # loaded once: a seal, a history-rules round and every minute ask
def _libc() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates under contention its own malloc arena (up to 8
    per core); the exporter renders a scrape in its request threads, and memory freed in one
    arena is not reused by another: resident memory grew by tens of MiB under scrape load
    (bench_agent.py). Two arenas, as MALLOC_ARENA_MAX=2 would give."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-8, arenas)  # M_ARENA_MAX


def release_freed_memory() -> None:
    """Give freed pages in the middle of the heap back to the kernel (malloc_trim(0)): glibc
    returns only the top of the heap by itself, so a seal's 30-minute window (+20 MiB in the
    first hour) or a 32-target cycle's bodies and parse (+30 MiB) stayed resident. About 2 ms
    on a 150 MiB heap."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


class HeapReturner:
    """Hands freed memory back at most every RETURN_EVERY seconds, called after each cycle."""

    def __init__(self, every: float = RETURN_EVERY):
        self.every = every
        self._last: Optional[float] = None

    def tick(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.every:
            return False
        self._last = now
        release_freed_memory()
        return True
