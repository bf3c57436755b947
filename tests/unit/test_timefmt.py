"""agent.timefmt.http_date: what email.utils.formatdate(usegmt=True) writes, for any time."""

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
