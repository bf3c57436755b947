"""Small JSON notes in the state directory (the kernel log's position, the GPUs seen, a
target's last answer, the boots with a reboot Xid), each written whole or not at all: a
temporary file renamed over the old one, so a kill -9 mid-write leaves the previous note.
"""

from __future__ import annotations

import json
import os
from typing import Optional


def write_json(path: str, doc: object) -> Optional[OSError]:
    """Write `doc` to `path` atomically. A full or read-only disk is returned, never raised:
    the caller keeps the note in memory and says so in its own words."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        return None
    except OSError as e:
        return e


__all__ = ["write_json"]
