"""One verdict (issue 26): the console's badge, /healthz, check and the report all derive from
verdict.judge; a firing critical alert makes the host critical; silenced and inhibited alerts
are said to be held, never counted; a host maintenance window is `maintenance`."""

from agent.model import Snapshot, gauge
from agent.serve.health import health
from agent.verdict import Verdict, judge

CRIT = {"labels": {"alertname": "GpuXidActionRequired", "severity": "critical", "gpu": "3"}, "summary": "reset GPU 3"}
WARN = {"labels": {"alertname": "HostDiskFull", "severity": "warning", "mountpoint": "/"}, "summary": "disk"}
SILENCED = {"labels": {"alertname": "LlmTargetDown", "severity": "critical", "server": "a"}, "summary": "a is down",
            "silence": {"until": 1_800_000_000, "by": "alice", "comment": "upgrade", "maintenance": False}}
INHIBITED = {"labels": {"alertname": "LlmProbeErrorRate", "severity": "warning", "server": "a"},
             "inhibited_by": "LlmTargetDown"}
OK_TARGET = {"name": "target:a", "target": "a", "severity": "ok", "reasons": []}


def test_a_firing_critical_alert_makes_the_host_critical_whatever_the_targets_say():
    v = judge([OK_TARGET], [CRIT, WARN])
    assert v.status == "critical" and v.http_status == 503 and v.exit_code == 2
    assert v.reasons[0].startswith("alert GpuXidActionRequired (gpu=3) (critical): reset GPU 3")
    assert v.counts == {"critical": 1, "warning": 1}


def test_held_alerts_are_said_to_be_held_and_not_counted():
    v = judge([OK_TARGET], [SILENCED, INHIBITED])
    assert v.status == "ok" and v.counts == {}
    assert v.held[0].startswith("LlmTargetDown (server=a) silenced until ") and v.held[0].endswith(" by alice: upgrade")
    assert v.held[1] == "LlmProbeErrorRate (server=a) inhibited by LlmTargetDown"


def test_maintenance_of_the_host_wins_and_exits_zero():
    v = judge([OK_TARGET], [CRIT], [{"target": "", "until": 1_800_000_000, "comment": "PSU"}])
    assert v.status == "maintenance" and v.http_status == 503 and v.exit_code == 0
    assert v.reasons[0].startswith("maintenance until ")


def test_a_target_in_maintenance_is_not_judged():
    down = {"name": "target:a", "target": "a", "severity": "critical", "reasons": ["down: not answering"]}
    assert judge([down]).status == "critical"
    assert judge([down], maintenance=[{"target": "a", "until": 1, "comment": ""}]).status == "ok"


def test_warnings_serve_and_nothing_yet_is_starting():
    waiting = {"name": "target:a", "target": "a", "severity": "warning", "reasons": ["waiting"]}
    assert (judge([waiting]).status, judge([waiting]).http_status) == ("warning", 200)
    assert judge([], started=False).status == "starting" and Verdict("starting").http_status == 503


def _snapshot():
    lbl = {"server": "a", "kind": "llamacpp"}
    fams = [gauge("llm_agent_target_up", "").add(lbl, 1), gauge("llm_agent_gpu_up", "").add({"gpu": "0", "UUID": "u"}, 1)]
    return Snapshot(1000.0, tuple(fams))


def test_healthz_is_the_verdict_with_its_alerts():
    status, doc = health(_snapshot(), 1001.0, 5.0, alerts=[CRIT, SILENCED])
    assert status == 503 and doc["status"] == "critical", "the console showed healthy over criticals"
    assert doc["alerts"] == {"critical": 1} and len(doc["held"]) == 1 and doc["firing_total"] == 2
    status, doc = health(_snapshot(), 1001.0, 5.0, alerts=[SILENCED])
    assert status == 200 and doc["status"] == "ok"
    status, doc = health(_snapshot(), 1001.0, 5.0, target="a", alerts=[CRIT])
    assert status == 200, "a GPU's alert is not target a's"
