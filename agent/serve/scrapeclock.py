"""When the next /metrics scrape will come, from when each scraper came before.

The exporter renders a snapshot on its first scrape, not at publish: Prometheus scrapes every
15-60 s and the agent cycles every 5 s, so most snapshots are never asked for. But a render in
a scrape's worker thread, seconds after the cycle built the snapshot, runs with cold caches:
2.4 ms against 1.3 in the cycle's thread right after publish, and the worker and the event
loop's wake-ups cost on top. A scraper keeps its period, so the exporter can tell which
snapshot it will take: that one is rendered by the cycle's thread once the cycle's own work is
done, in the format that scraper asked for, and its scrape is answered by the event loop from
bytes already made.

Scrapers are told apart by address and User-Agent (a Prometheus HA pair, vmagent beside
Prometheus on one host): each keeps its own period. At most MAX_SCRAPERS are remembered, the
least recent dropped, so a crowd of clients cannot grow this (it can only push Prometheus out,
whose scrapes are then rendered on request, as before); a scraper that stops coming costs two
renders in vain, then none.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

MAX_SCRAPERS = 4
SHORTEST_PERIOD = 1.0  # a gap shorter than this is a retry or a person with curl, not a period
SLACK = 0.25  # seconds: a scrape due this soon after the next publish may yet take this snapshot

Format = Tuple[str, bool]  # ("text" | "openmetrics", gzipped)


class _Scraper:
    __slots__ = ("last", "period", "fmt")

    def __init__(self, last: float, fmt: Format):
        self.last = last
        self.period: Optional[float] = None
        self.fmt = fmt


class ScrapeClock:
    """Scrape times by client; which formats to render ahead at each publish."""

    def __init__(self) -> None:
        self._scrapers: Dict[str, _Scraper] = {}

    def scraped(self, client: str, now: float, fmt: Format) -> None:
        """A /metrics request from `client` at `now` (monotonic) asking for `fmt`."""
        s = self._scrapers.pop(client, None)  # re-inserted: the dict's order is recency
        if s is None:
            if len(self._scrapers) >= MAX_SCRAPERS:
                del self._scrapers[next(iter(self._scrapers))]
            s = _Scraper(now, fmt)
        else:
            gap = now - s.last
            if gap >= SHORTEST_PERIOD:
                s.period, s.last = gap, now
            s.fmt = fmt
        self._scrapers[client] = s

    def due(self, now: float, interval: float) -> Set[Format]:
        """The formats some scraper will ask for before the next publish, `interval` from `now`:
        its next scrape (its last plus its period) falls after the previous publish and up to
        the next one, with SLACK to spare where a scrape and a cycle coincide (then both
        snapshots may be rendered: one of them in vain)."""
        out: Set[Format] = set()
        for s in self._scrapers.values():
            if s.period is not None and now - interval < s.last + s.period <= now + interval + SLACK:
                out.add(s.fmt)
        return out

    def clients(self) -> List[str]:
        return list(self._scrapers)
