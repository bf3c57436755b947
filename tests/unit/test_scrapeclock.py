"""Which snapshots the exporter renders at publish: those a scraper will take (scrapeclock.py)."""

from agent.serve.scrapeclock import MAX_SCRAPERS, ScrapeClock

PROM = ("openmetrics", True)
TEXT = ("text", False)


def simulate(scrapers, until, interval=5.0, offset=0.02):
    """Cycles publish every `interval` (at `offset`); each scraper (client, first, period, fmt,
    stops_at) scrapes on its period. Returns (scrapes served from a body rendered ahead,
    scrapes that rendered their own, renders nobody took), the scrapes counted up to `until`,
    the renders of publishes up to then (later scrapes only take what those rendered)."""
    clock = ScrapeClock()
    events = [(offset + i * interval, "publish", None) for i in range(int(until / interval) + 1)]
    for s in scrapers:
        client, first, period, fmt, stops = (s + (float("inf"),))[:5]
        t = first
        while t < min(until + 2 * interval, stops):
            events.append((t, "scrape", (client, fmt)))
            t += period
    events.sort(key=lambda e: e[0])
    ahead, cold = [], []
    rendered, taken = set(), set()
    snapshot = None
    for t, kind, what in events:
        if kind == "publish":
            snapshot = t
            rendered |= {(snapshot, fmt) for fmt in clock.due(t, interval)}
        elif snapshot is not None:
            client, fmt = what
            if t <= until:
                (ahead if (snapshot, fmt) in rendered else cold).append((round(t, 2), client))
            taken.add((snapshot, fmt))
            clock.scraped(client, t, fmt)
    return ahead, cold, sorted((round(s, 2), f) for s, f in rendered - taken)


def test_a_scraper_every_15s_takes_a_body_rendered_ahead_from_its_third_scrape():
    ahead, cold, vain = simulate([("prom", 1.3, 15.0, PROM)], 600)
    assert [t for t, _ in cold] == [1.3, 16.3]  # no period known yet
    assert len(ahead) == 38 and vain == []


def test_each_scraper_keeps_its_own_period_and_format():
    ahead, cold, vain = simulate([("prom-a", 1.3, 15.0, PROM), ("prom-b", 9.7, 15.0, PROM),
                                  ("vmagent", 3.1, 30.0, TEXT), ("curl", 7.0, 60.0, TEXT)], 600)
    assert sorted(c for _, c in cold) == ["curl", "curl", "prom-a", "prom-a", "prom-b", "prom-b", "vmagent", "vmagent"]
    assert len(ahead) == 40 + 40 + 20 + 10 - 8 and vain == []


def test_a_scrape_just_after_a_cycle_renders_both_snapshots_around_it_one_in_vain():
    ahead, cold, vain = simulate([("prom", 0.1, 15.0, PROM)], 120)
    assert len(cold) == 2 and len(ahead) == 6
    assert vain == [(round(25.02 + 15 * k, 2), PROM) for k in range(7)]  # each taken by the one after it


def test_a_scraper_that_stops_coming_costs_two_renders_in_vain():
    ahead, cold, vain = simulate([("prom", 1.3, 15.0, PROM, 100.0)], 600)
    # the last scrape was at 91.3: 106.3 is prepared for at 105.02, and again at 110.02 as a
    # late scrape might come yet; then no more
    assert len(ahead) == 5 and vain == [(105.02, PROM), (110.02, PROM)]


def test_a_quick_second_request_is_not_taken_for_the_period():
    clock = ScrapeClock()
    for t in (0.0, 15.0, 15.2):  # a retry, or a person with curl from the same address
        clock.scraped("a", t, PROM)
    assert clock.due(25.02, 5.0) == {PROM}


def test_a_crowd_of_clients_is_bounded():
    clock = ScrapeClock()
    for i in range(1000):
        clock.scraped(f"10.0.{i // 256}.{i % 256}", float(i), PROM)
    assert len(clock.clients()) == MAX_SCRAPERS
    assert clock.clients()[-1] == "10.0.3.231"  # the most recent kept
