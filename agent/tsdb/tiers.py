"""The history's tiers: raw samples sealed in 30-minute windows, 1-minute rollups kept in
6-hour chunks, 1-hour rollups in 10-day chunks; and how long each is kept."""

from __future__ import annotations

from dataclasses import dataclass

RAW_WINDOW = 1800.0  # the head is sealed every 30 minutes of data
RAW, MINUTE, HOUR = 0, 1, 2
RESOLUTION = {MINUTE: 60.0, HOUR: 3600.0}
CHUNK_SPAN = {RAW: RAW_WINDOW, MINUTE: 6 * 3600.0, HOUR: 10 * 86400.0}


@dataclass(frozen=True)
class Retention:
    raw: float = 86400.0
    minute: float = 30 * 86400.0
    hour: float = 400 * 86400.0
    alerts: float = 400 * 86400.0

    def of(self, tier: int) -> float:
        return (self.raw, self.minute, self.hour)[tier]


DEFAULT_RETENTION = Retention()
