"""A report's schedule, as [[reports]] schedule says it: "daily 08:00", "weekly mon 09:00",
"monthly 1 10:00", in the host's time zone. A config value type: parsed as the config is read."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from ..timefmt import days_in_month

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SCHEDULE = re.compile(r"^\s*(daily|weekly\s+(\w+)|monthly\s+(\d{1,2}))\s+(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Schedule:
    kind: str  # daily | weekly | monthly
    weekday: int  # 0 = Monday (weekly)
    day: int  # day of the month (monthly; past the month's end: its last day)
    hour: int
    minute: int

    def default_period(self) -> float:
        return {"daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 30 * 86400.0}[self.kind]

    def previous(self, now: float) -> float:
        """The latest occurrence at or before `now` (local time)."""
        t = time.localtime(now)
        candidates = []
        for back in range(0, 63):  # two months of days covers every kind
            day = time.localtime(time.mktime((t.tm_year, t.tm_mon, t.tm_mday - back, 12, 0, 0, 0, 0, -1)))
            if self.kind == "weekly" and day.tm_wday != self.weekday:
                continue
            if self.kind == "monthly" and day.tm_mday != min(self.day, days_in_month(day.tm_year, day.tm_mon)):
                continue
            at = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, self.hour, self.minute, 0, 0, 0, -1))
            if at <= now:
                candidates.append(at)
                break
        return candidates[0] if candidates else -math.inf


def parse_schedule(text: object) -> Schedule:
    m = _SCHEDULE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"invalid schedule {text!r}: use \"daily 08:00\", \"weekly mon 09:00\" or \"monthly 1 10:00\"")
    hour, minute = int(m.group(4)), int(m.group(5))
    if hour > 23 or minute > 59:
        raise ValueError(f"invalid time of day in {text!r}: use HH:MM, 00:00 to 23:59")
    kind = m.group(1).split()[0].lower()
    weekday, day = 0, 1
    if kind == "weekly":
        name = m.group(2).lower()[:3]
        if name not in DAYS:
            raise ValueError(f"invalid weekday {m.group(2)!r} in {text!r}: use mon, tue, wed, thu, fri, sat or sun")
        weekday = DAYS.index(name)
    if kind == "monthly":
        day = int(m.group(3))
        if not 1 <= day <= 31:
            raise ValueError(f"invalid day of the month {day} in {text!r}: use 1 to 31")
    return Schedule(kind, weekday, day, hour, minute)
