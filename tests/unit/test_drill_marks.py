"""Issue 30: a fire drill's alert says DRILL in every channel's title, a test alert TEST, a real
one neither; the drill source's series and its bounds."""

import json

import pytest

from agent.drill import MAX_ACTIVE, RECOVERY_SECONDS, Drills
from agent.notify import email, opsgenie, pagerduty, slack, teams
from agent.notify.base import AlertDoc

LABELS = {"alertname": "LlmTargetDown", "severity": "critical", "server": "drill-1", "drill": "true", "drill_id": "1"}


def doc(labels, test=False):
    return AlertDoc("firing", dict(labels), {"summary": "DRILL: Inference server drill-1 is down"}, 1.0, 0.0, 1.0,
                    "fp", test)


@pytest.mark.parametrize("labels,test,mark", [(LABELS, False, "[DRILL] "), (LABELS, True, "[TEST] "),
                                              ({"alertname": "LlmTargetDown", "severity": "critical"}, False, "")])
def test_every_channel_title_carries_the_mark(labels, test, mark):
    alert = doc(labels, test)
    assert alert.marker == mark
    titles = [slack.payload(alert, "h")["text"], pagerduty.payload(alert, "k", "h")["payload"]["summary"],
              opsgenie.create(alert, "h", {})["message"], email.subject_of([alert], email.DEFAULT_SUBJECT, "h"),
              json.dumps(teams.payload([alert], "h"))]
    for title in titles:
        assert (mark.strip("[] ") in title) if mark else ("DRILL" not in title.replace("DRILL:", "")), title


def test_a_drills_series_then_its_recovery_then_nothing():
    now = [1000.0]
    drills = Drills(lambda: now[0], "h")
    d = drills.start("target-down")
    fams = {f.name: f for f in drills.families()}
    assert fams["llm_agent_target_up"].samples[0].value == 0 and dict(fams["llm_agent_target_up"].samples[0].labels)[
        "drill"] == "true"
    drills.observe([(dict(LABELS, drill_id=d.id), "firing", ["hook"])])
    drills.delivered("hook", [dict(LABELS, drill_id=d.id)])
    drills.observe([(dict(LABELS, drill_id=d.id), "firing", ["hook"])])
    assert drills.status(d.id)["outcome"] == "delivered"
    assert {f.name: f for f in drills.families()}["llm_agent_target_up"].samples[0].value == 1, "recovered"
    now[0] += RECOVERY_SECONDS
    assert drills.families() == []
    drills.observe([])
    assert "resolved" in drills.status(d.id)["stages"]


def test_drills_are_bounded_and_kinds_checked():
    drills = Drills(lambda: 0.0)
    with pytest.raises(ValueError, match="kind must be"):
        drills.start("meteor")
    for _ in range(MAX_ACTIVE):
        drills.start("xid")
    with pytest.raises(ValueError, match="running already"):
        drills.start("hang")
    assert drills.status("nope") is None


def test_an_undelivered_drill_stops_and_says_what_never_happened():
    now = [0.0]
    drills = Drills(lambda: now[0])
    d = drills.start("hang", "pager")
    now[0] = 601.0
    drills.observe([])
    assert drills.status(d.id)["outcome"] == "stopped after 600s: the rule never fired"
