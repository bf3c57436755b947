"""Health is worked out once: /healthz and `check` give the same reasons for a target, and
`check` judges readings with the alert rules' own thresholds."""

import os

from agent.config import parse_config
from agent.serve.health import health, rule_findings, target_checks
from agent.model import Snapshot, gauge
from agent.rules.loader import load_rules


def snap(**extra):
    fams = [gauge("llm_agent_target_up", "").add({"server": "a", "kind": "llamacpp"}, 0),
            gauge("llm_agent_target_process_found", "").add({"server": "a"}, 1)]
    for name, (labels, value) in extra.items():
        fams.append(gauge(name, "").add(labels, value))
    return Snapshot(1000.0, tuple(fams))


def test_healthz_and_check_share_the_target_verdict():
    s = snap()
    reasons = target_checks(s)[0]["reasons"]
    assert reasons == ["not answering: its process is alive (stopped, hung or overloaded)"]
    code, doc = health(s, 1000.0, 5.0)
    assert code == 503 and doc["reasons"] == [f"target:a: {reasons[0]}"]
    from agent.check import build_report

    assert build_report(s, "h", "x")["targets"][0]["health"] == reasons


def test_check_uses_the_rules_thresholds_and_leaves_ranged_rules_to_the_agent():
    ruleset = load_rules(parse_config(""))
    rules, inhibit = ruleset.alerts, ruleset.inhibit
    gpu = {"gpu": "0", "UUID": "u"}
    s = snap(DCGM_FI_DEV_GPU_TEMP=(gpu, 90.0), DCGM_FI_DEV_FB_USED=(gpu, 91.0), DCGM_FI_DEV_FB_FREE=(gpu, 9.0),
             DCGM_FI_DEV_GPU_UTIL=(gpu, 1.0))
    found = {p.message.split("(alert ")[1].split()[0].rstrip(")"): p for p in rule_findings(rules, inhibit, [s])}
    assert "GpuTemperatureHigh" in found and found["GpuTemperatureHigh"].severity == "warning"
    assert "fires if this lasts 300s" in found["GpuTemperatureHigh"].message
    assert "GpuMemoryHigh" in found, "90% as the rule says (check used to say 95%)"
    assert "GpuUtilizationLow" not in found, "a 30-minute average is not judged from one pass"
    assert found["GpuTemperatureHigh"].subject == "gpu 0"


def test_subjects_already_reported_are_not_repeated():
    ruleset = load_rules(parse_config(""))
    rules, inhibit = ruleset.alerts, ruleset.inhibit
    s = snap(llm_agent_gpu_up=({"gpu": "0"}, 0.0))
    subjects = {p.subject for p in rule_findings(rules, inhibit, [s], covered={"gpu 0"})}
    assert "gpu 0" not in subjects


def test_check_reports_disks_as_df_does():
    """Issue 26: check said 69% where df said 25% (root's reserved blocks counted as used)."""
    import shutil
    import subprocess

    from agent.check import df_used_percent

    st = os.statvfs("/")
    size, free, avail = st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize
    df = subprocess.run(["df", "--output=pcent", "/"], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert abs(df_used_percent(size, free, avail) - float(df.rstrip("%"))) <= 1  # df rounds up
    assert df_used_percent(100.0, 50.0, 45.0) == round(100 * 50 / 95, 1)
    assert df_used_percent(0.0, 0.0, 0.0) is None and df_used_percent(10.0, None, 1.0) is None
    assert shutil.which("df")
