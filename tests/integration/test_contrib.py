"""The files shipped in contrib/: Grafana dashboards whose every expression parses with
promtool and names only metrics the agent exports; Prometheus and Alertmanager examples that
promtool and amtool accept."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.peers import promtool_path, require

ROOT = Path(__file__).parent.parent.parent
CONTRIB = ROOT / "contrib"
GRAFANA_VARS = {"$__rate_interval": "5m", "$instance": "x", "$server": "x", "${datasource}": "x"}
PROMQL_WORDS = {"sum", "avg", "min", "max", "count", "by", "without", "on", "ignoring", "and", "or", "unless",
                "bool", "rate", "irate", "increase", "histogram_quantile", "avg_over_time", "vector", "le", "offset"}


def exported_names():
    """Every metric name the agent can put on /metrics (from its sources and fixtures)."""
    names = set()
    for path in (ROOT / "agent").rglob("*.py"):
        names |= set(re.findall(r'"((?:llm_agent|DCGM_FI|node|process)_[A-Za-z0-9_]+)"', path.read_text()))
        names |= {f"node_{m}" for m in re.findall(r'f"node_(\w+)', path.read_text())}
    for fixture in (ROOT / "tests" / "fixtures" / "golden" / "metrics.txt", ROOT / "tests" / "fixtures" / "llamacpp" / "metrics.txt"):
        names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", fixture.read_text(), re.M))
    names |= {f"node_memory_{m}_bytes" for m in ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree")}
    names |= {f"llm_agent_probe_{h}_seconds_{s}" for h in ("ttft", "tpot", "duration") for s in ("bucket", "sum", "count")}
    from agent.collectors.engines import load_table  # the engine-neutral series are data, not literals
    for row in load_table():
        names |= {row.name} | {row.name + s for s in ("_bucket", "_sum", "_count") if row.type == "histogram"}
    process = (ROOT / "agent" / "collectors" / "process.py").read_text()  # names built as f"llm_agent_target_process_{name}"
    names |= {f"llm_agent_target_process_{n}" for n in re.findall(r'\("([a-z_]+)", "(?:gauge|counter)"', process)}
    return names


def dashboard_exprs():
    out = []
    for path in sorted((CONTRIB / "grafana").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel["title"], target["expr"]))
    return out


def test_dashboards_parse_with_promtool(tmp_path):
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    rules = ["groups:", "  - name: dashboards", "    rules:"]
    for i, (_, _, expr) in enumerate(exprs):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        rules += [f"      - record: dashboard_expr_{i}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "d.yml").write_text("\n".join(rules) + "\n")
    out = subprocess.run([promtool_path(), "check", "rules", str(tmp_path / "d.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("file,title,expr", dashboard_exprs(), ids=lambda x: x if isinstance(x, str) and len(x) < 40 else None)
def test_dashboard_metrics_are_exported(file, title, expr):
    known = exported_names()
    stripped = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"\((?:[a-zA-Z_, ]*)\)", lambda m: m.group(0) if "(" in m.group(0)[1:] else "()", stripped)
    words = set(re.findall(r"(?<![\w:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w(])\s*(?=[{\s)/*+\-<>=]|$)", stripped))
    unknown = {w for w in words if w not in PROMQL_WORDS and not w.islower() or w.startswith(("llm_agent_", "node_", "llamacpp:"))}
    labels = ("cpu", "mode", "instance", "server", "Hostname", "le", "channel", "result", "alertname", "severity")
    unknown = {w for w in unknown if w not in known and w not in PROMQL_WORDS and w not in labels}
    assert not unknown, f"{file} / {title}: {sorted(unknown)} not exported by the agent"


def test_prometheus_example_config_checks():
    out = subprocess.run([promtool_path(), "check", "config", str(CONTRIB / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    json.loads((CONTRIB / "prometheus" / "llm-agent-targets.json").read_text())


def test_alertmanager_example_config_checks():
    amtool = shutil.which("amtool")
    require("amtool", amtool is not None, "apt-get install prometheus-alertmanager")
    out = subprocess.run([amtool, "check-config", str(CONTRIB / "prometheus" / "alertmanager.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
