"""Whose process is this: a GPU process's ancestry up to the target that started it.

vLLM's tensor-parallel workers, SGLang's scheduler and a llama.cpp router's per-model servers
hold the GPU in child processes, never in the process listening on the target's port. NVML
names only their pids; this walks each one's parents (/proc/<pid>/stat) up to a target's pid.

A pid's parent and command line are read once, while the pid stays on a GPU (a handful of
processes, read once each): `forget_unused` forgets the rest every cycle, so a reused pid is read
anew. A router's child names its model on its command line (`--alias`), which is how its GPU
use is told apart from its siblings'.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Set, Tuple

from .kernelfiles import read_small_bytes
from .procfiles import parse_ppid

MAX_DEPTH = 32  # parents walked at most: a target's workers sit one or two levels down
ALIAS_FLAGS = (b"--alias", b"-a")


def parse_alias(cmdline: bytes) -> str:
    """The `--alias NAME` (or `-a NAME`, `--alias=NAME`) on a NUL-separated command line, or ""."""
    args = cmdline.split(b"\0")
    for i, arg in enumerate(args):
        if arg in ALIAS_FLAGS and i + 1 < len(args):
            return args[i + 1].decode("utf-8", "replace")
        if arg.startswith(b"--alias="):
            return arg[len(b"--alias="):].decode("utf-8", "replace")
    return ""


def read_proc(pid: int) -> Tuple[int, str]:
    """(parent pid, alias) from /proc; (0, "") for a process gone or not ours to read."""
    try:
        ppid = parse_ppid(read_small_bytes(f"/proc/{pid}/stat"))
    except ValueError:
        return 0, ""
    return ppid, parse_alias(read_small_bytes(f"/proc/{pid}/cmdline"))


class Lineage:
    """Each GPU process's owning target, from its ancestry."""

    def __init__(self, read: Callable[[int], Tuple[int, str]] = read_proc):
        self.read = read
        self._facts: Dict[int, Tuple[int, str]] = {}
        self._used: Set[int] = set()

    def _fact(self, pid: int) -> Tuple[int, str]:
        self._used.add(pid)
        fact = self._facts.get(pid)
        if fact is None:
            fact = self._facts[pid] = self.read(pid)
        return fact

    def owner(self, pid: int, targets: Mapping[int, str]) -> Optional[Tuple[str, str]]:
        """(server, alias on the GPU process's command line) where `pid` is a target's process
        or descends from one; None for anyone else's."""
        alias = self._fact(pid)[1] if pid not in targets else ""
        current = pid
        for _ in range(MAX_DEPTH):
            if current in targets:
                return targets[current], alias
            current = self._fact(current)[0]
            if current <= 1:
                return None
        return None

    def forget_unused(self) -> None:
        """Forget every pid not looked at since the last call (gone from the GPUs: its pid may
        be reused by another process)."""
        self._facts = {p: f for p, f in self._facts.items() if p in self._used}
        self._used = set()


__all__ = ["Lineage", "parse_alias", "read_proc"]
