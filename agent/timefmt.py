"""RFC 3339 times as Alertmanager, PagerDuty, Opsgenie and Ollama write them, read and written
the same way on Python 3.9 (whose fromisoformat takes neither "Z" nor nanoseconds) and later."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

_DURATION = re.compile(r"^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$")
_UNITS = (31536000.0, 604800.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)
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


def parse_duration(text: str) -> float:
    """A PromQL duration (1h30m, 90s, 1y, or "0" as Prometheus' model.ParseDuration takes it) in
    seconds; ValueError if not one."""
    if text == "0":
        return 0.0
    m = _DURATION.match(text)
    if not text or not m:
        raise ValueError(f"not a valid duration string: {text!r}")
    seconds = sum(int(n) * unit for n, unit in zip(m.groups(), _UNITS) if n)
    if seconds * 1000 >= 2 ** 63:  # Prometheus keeps milliseconds in an int64
        raise ValueError(f"duration out of range: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Prometheus' way of writing a duration: 1d, 7h5m, 2w (years and weeks only when exact)."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    out = ""
    for unit, mult, exact in (("y", 31536000000, True), ("w", 604800000, True), ("d", 86400000, False),
                              ("h", 3600000, False), ("m", 60000, False), ("s", 1000, False), ("ms", 1, False)):
        if exact and ms % mult:
            continue
        if ms // mult > 0:
            out += f"{ms // mult}{unit}"
            ms -= ms // mult * mult
    return out


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ts: Optional[float] = None) -> str:
    """An HTTP Date header's value (RFC 9110 5.6.7: IMF-fixdate), in English whatever the locale;
    email.utils.formatdate writes the same, but its import costs the exporter ~1 MiB of RSS."""
    t = time.gmtime(ts)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def days_in_month(year: int, month: int) -> int:
    """The month's length in the proleptic Gregorian calendar (calendar.monthrange's, without
    loading the calendar module and the locale machinery it brings: a quarter of a MiB resident)."""
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31
