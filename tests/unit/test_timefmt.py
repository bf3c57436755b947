"""agent.timefmt: http_date writes what email.utils.formatdate(usegmt=True) writes, for any time;
days_in_month is calendar.monthrange's."""

import email.utils
import random

from agent.timefmt import http_date


def test_http_date_matches_the_email_package():
    rng = random.Random(7)
    for ts in [0.0, 951782400.0, 1e9 + 0.999, 4102444799.0] + [rng.uniform(0, 4.2e9) for _ in range(2000)]:
        assert http_date(ts) == email.utils.formatdate(ts, usegmt=True)


def test_http_date_defaults_to_now():
    before = email.utils.formatdate(usegmt=True)
    now = http_date()
    after = email.utils.formatdate(usegmt=True)
    when = email.utils.parsedate_to_datetime
    assert when(before) <= when(now) <= when(after)  # seconds may tick between the calls (a loaded machine)
    assert now.endswith(" GMT") and len(now) == 29


def test_days_in_month_is_the_calendars():
    """The agent's own month length (calendar stays out of the daemon) against calendar.monthrange,
    over leap rules' every case: centuries, 400-year cycles, year 1 and 9999."""
    import calendar

    from agent.timefmt import days_in_month

    for year in list(range(1, 2401)) + [9999]:
        for month in range(1, 13):
            assert days_in_month(year, month) == calendar.monthrange(year, month)[1], (year, month)
