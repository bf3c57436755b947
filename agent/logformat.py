"""Log formats: plain text on a terminal, journald priorities under systemd, JSON lines.

Under systemd stderr goes to the journal ($JOURNAL_STREAM names it); a `<N>` prefix gives
each line its syslog priority, so `journalctl -p warning` works without systemd-python.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import IO

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        prio = PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def under_journal(stream: IO) -> bool:
    """Whether `stream` is the journal stream systemd connected ($JOURNAL_STREAM = dev:inode)."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(wanted) and wanted == f"{st.st_dev}:{st.st_ino}"


def handler_for(fmt: str, stream: IO) -> logging.Handler:
    """The handler for `fmt` (auto, text, json, journal). Under the journal, systemd-python's
    JournalHandler when installed: each line then carries the fields the agent logs with
    (TARGET, ALERTNAME, CHANNEL, GPU), so `journalctl TARGET=llama` works."""
    if fmt == "auto":
        fmt = "journal" if under_journal(stream) else "text"
    if fmt == "journal":
        try:
            from systemd import journal  # optional (systemd-python): only under journald

            return journal.JournalHandler(SYSLOG_IDENTIFIER="llm-agent")
        except ImportError:
            pass
    handler = logging.StreamHandler(stream)
    if fmt == "journal":
        handler.setFormatter(JournalFormatter())
    elif fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler
