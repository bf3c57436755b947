"""Reading the small files the kernel exposes (/proc, /sys, /dev nodes' neighbours): a bounded
read, decoded leniently, and "" when the file is gone or not ours to read, since a process
that exits or a port that disappears between listing and reading is the normal case there."""

from __future__ import annotations

import io
import os
from typing import Optional


def read_small(path: str, limit: int = 65536) -> str:
    """At most `limit` bytes of `path` as text; "" when it cannot be read."""
    return read_small_bytes(path, limit).decode("utf-8", "replace")


def read_small_bytes(path: str, limit: int = 65536) -> bytes:
    """At most `limit` bytes of `path`; b"" when it cannot be read (the parsers of
    collectors/procfiles.py take bytes and leave out what they cannot read)."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def open_fds(fd_dir: str) -> int:
    """How many descriptors a process has open, from its /proc/<pid>/fd: the directory's size
    where the kernel gives it as that count (Linux 6.2+: one stat, where a listing opens,
    reads and closes the directory), else its entries counted. OSError when not ours to read."""
    return os.stat(fd_dir).st_size or len(os.listdir(fd_dir))


class KernelFile:
    """A /proc file read every cycle, kept open and read again from its start (the kernel makes
    its text afresh on each read from offset 0): after seconds of idleness an open(), its
    fstat, isatty and close cost ~3x the read itself (the 9 files a cycle reads, 2 s apart:
    590 us against 164). `read()` gives at most `limit` bytes, b"" when the file
    cannot be read; after a failed read the file is opened again the next time, so a
    /proc/<pid>/ file follows whoever has that path then, as reading by path always did. The
    buffer starts small and doubles to what the file last needed."""

    def __init__(self, path: str, limit: int = 65536):
        self.path = path
        self.limit = limit
        self._file: Optional[io.FileIO] = None  # unbuffered: closes itself if its owner is dropped
        self._size = min(4096, limit)

    def read(self) -> bytes:
        try:
            if self._file is None:
                self._file = io.FileIO(self.path, "r")
            data = os.pread(self._file.fileno(), self._size, 0)
            while len(data) >= self._size < self.limit:  # it may hold more: read it whole again
                self._size = min(self._size * 2, self.limit)
                data = os.pread(self._file.fileno(), self._size, 0)
            return data
        except OSError:  # gone (a process that exited: ESRCH), or not ours to read
            self.close()
            return b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
