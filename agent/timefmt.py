"""RFC 3339 times as Alertmanager, PagerDuty, Opsgenie and Ollama write them, read and written
the same way on Python 3.9 (whose fromisoformat takes neither "Z" nor nanoseconds) and later."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)")


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds; 0 is Go's zero time, as Alertmanager writes "never"."""
    if not ts:
        return "0001-01-01T00:00:00Z"
    seconds, millis = divmod(int(round(ts * 1000)), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_rfc3339(text: object) -> Optional[float]:
    """Seconds since the epoch, or None when `text` is not an RFC 3339 time (Go's zero time,
    0001-01-01, is None too: it means "unset")."""
    if not isinstance(text, str):
        return None
    m = _RFC3339.fullmatch(text.strip())
    if not m or m.group(1).startswith("0001-"):
        return None
    day, clock, fraction, zone = m.groups()
    try:
        base = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        base -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return base.timestamp() + (float("0." + fraction) if fraction else 0.0)
