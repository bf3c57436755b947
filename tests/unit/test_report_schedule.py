"""Scheduled reports: the schedule's grammar and occurrences (local time), sending once per
occurrence across restarts, retrying a failure later, and the whole path through a running
agent's outbox to a webhook receiver."""


import pytest

from agent.config.schedule import parse_schedule
from agent.report.schedule import RETRY_AFTER, ReportScheduler, ScheduledReport
from agent.tsdb.store import HistoryStore
from tests.support.peers import wait_until
from tests.support.receivers import WEBHOOK

MON = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday


pytestmark = pytest.mark.usefixtures("utc")  # local days and times are UTC days here


@pytest.mark.parametrize("text, now, want", [
    ("daily 08:00", MON + 7 * 3600, MON - 16 * 3600),
    ("daily 08:00", MON + 8 * 3600, MON + 8 * 3600),
    ("weekly mon 09:00", MON + 8 * 3600, MON - 7 * 86400 + 9 * 3600),
    ("Weekly Tuesday 9:30", MON + 3 * 86400, MON + 86400 + 9.5 * 3600),
    ("monthly 1 10:00", MON, MON - 4 * 86400 + 10 * 3600),  # 2026-01-01 10:00
    ("monthly 31 10:00", MON + 40 * 86400, MON + 26 * 86400 + 10 * 3600),  # mid-February: January 31st
    ("monthly 31 10:00", MON + 55 * 86400, MON + 54 * 86400 + 10 * 3600),  # March 1st: February has 28 days, the 28th
])
def test_previous_occurrence(text, now, want):
    assert parse_schedule(text).previous(now) == want


@pytest.mark.parametrize("text, says", [("hourly 08:00", "daily 08:00"), ("daily 25:00", "00:00 to 23:59"),
                                        ("weekly fun 09:00", "weekday"), ("monthly 32 10:00", "1 to 31"), (7, "invalid")])
def test_bad_schedules_say_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_schedule(text)


def test_one_report_per_occurrence_across_restarts_and_a_failure_retried(tmp_path):
    path = str(tmp_path / "history.db")
    HistoryStore(path).close()
    now = [MON + 7 * 3600]
    sent, fail = [], [False]

    def produce(start, end, fmt):
        if fail[0]:
            raise RuntimeError("the store is busy")
        return "summary", f"{fmt} {start} {end}"

    def make():
        return ReportScheduler([ScheduledReport("daily", parse_schedule("daily 08:00"), 86400.0, "md", ("hook",))],
                               path, produce, lambda r, s, b, occ: sent.append((r.name, b, occ)), lambda: now[0])

    sched = make()
    sched.tick()
    sched.wait()
    assert sent == []  # new: nothing at once, the first goes at the next occurrence
    now[0] = MON + 8 * 3600 + 5
    sched.tick()
    sched.wait()
    assert sent == [("daily", f"md {MON - 16 * 3600} {MON + 8 * 3600}", MON + 8 * 3600)]
    sched.tick()
    sched.wait()
    sched.close()
    sched = make()  # restarted: the occurrence was sent already
    sched.tick()
    sched.wait()
    assert len(sent) == 1
    now[0] = MON + 86400 + 8 * 3600 + 5
    fail[0] = True
    sched.tick()
    sched.wait()
    assert sched.failures == 1 and len(sent) == 1
    fail[0] = False
    sched.tick()
    sched.wait()
    assert len(sent) == 1  # not before RETRY_AFTER
    now[0] += RETRY_AFTER
    sched.tick()
    sched.wait()
    assert len(sent) == 2 and sent[1][2] == MON + 86400 + 8 * 3600
    sched.close()


def test_a_scheduled_report_reaches_a_webhook_through_the_outbox(tmp_path, receivers):
    from agent.config import parse_config
    from agent.daemon import Agent
    from tests.support.fake_pynvml import FakeNvml, three_gpus

    hook = receivers(WEBHOOK)
    config = parse_config('[agent]\ninterval = "1s"\n[discovery]\nenabled = false\n[probes]\nenabled = false\n'
                          f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
                          '[[reports]]\nname = "daily"\nschedule = "daily 08:00"\nchannels = ["hook"]\nformat = "json"\n'
                          '[alerting]\ndefault_rules = false\n')
    now = [MON + 7 * 3600]
    agent = Agent(config, nvml=FakeNvml(three_gpus()), clock=lambda: now[0], state_dir=str(tmp_path), discover=lambda: [])
    try:
        for _ in range(5):
            agent.cycle()
            now[0] += 60
        now[0] = MON + 8 * 3600 + 1
        agent.cycle()
        agent.reports.wait()
        wait_until(lambda: hook.alerts("firing"), 10, what="the report delivered")
        (alert,) = hook.alerts("firing")
        assert alert["labels"]["alertname"] == "LlmAgentReport" and alert["labels"]["report"] == "daily"
        assert '"gpus"' in alert["annotations"]["report"] and alert["annotations"]["report_format"] == "json"
    finally:
        agent.close(drain=1)
