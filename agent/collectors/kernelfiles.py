"""Reading the small files the kernel exposes (/proc, /sys, /dev nodes' neighbours): a bounded
read, decoded leniently, and "" when the file is gone or not ours to read, since a process
that exits or a port that disappears between listing and reading is the normal case there."""

from __future__ import annotations


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
