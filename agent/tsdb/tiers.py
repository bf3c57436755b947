"""The history's tiers: raw samples sealed in 30-minute windows, 1-minute rollups kept in
6-hour chunks, 5-minute rollups in 6-hour chunks (made from the minutes when a span is
compacted; kept as long as the minutes, they let a week-long panel read a fifth of the
points), 1-hour rollups in 10-day chunks; and how long each is kept."""

from __future__ import annotations

from dataclasses import dataclass

RAW_WINDOW = 1800.0  # the head is sealed every 30 minutes of data
# tier ids as stored in the file (the 5-minute tier came after the hour's: its id is 3)
RAW, MINUTE, HOUR, FIVE_MINUTES = 0, 1, 2, 3
FINEST_FIRST = (RAW, MINUTE, FIVE_MINUTES, HOUR)
RESOLUTION = {MINUTE: 60.0, FIVE_MINUTES: 300.0, HOUR: 3600.0}
CHUNK_SPAN = {RAW: RAW_WINDOW, MINUTE: 6 * 3600.0, FIVE_MINUTES: 6 * 3600.0, HOUR: 10 * 86400.0}
FIVE_MINUTES_FROM = "five_minutes_from"  # meta key: where the 5-minute tier begins in this file


@dataclass(frozen=True)
class Retention:
    raw: float = 86400.0
    minute: float = 30 * 86400.0
    hour: float = 400 * 86400.0
    alerts: float = 400 * 86400.0

    def of(self, tier: int) -> float:
        return {RAW: self.raw, MINUTE: self.minute, FIVE_MINUTES: self.minute, HOUR: self.hour}[tier]


def finer(tier: int, than: int) -> bool:
    """Whether `tier` has a finer resolution than `than` (ids are not in that order)."""
    return FINEST_FIRST.index(tier) < FINEST_FIRST.index(than)


DEFAULT_RETENTION = Retention()
