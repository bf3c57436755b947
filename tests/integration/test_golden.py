"""End to end: the whole /metrics output against a golden file, and promtool's lint.

The agent runs with a fake 3-GPU NVML and a replay of a captured llama-server; values that
change from run to run (durations, the agent's own process figures, versions) are filtered.
Regenerate after an intended change with:  pytest tests/integration/test_golden.py --update-golden
"""

import re
import tempfile
from pathlib import Path

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from agent.config import parse_config
from agent.daemon import Agent
from agent.serve.exporter import Exporter
from tests.support.fake_pynvml import FakeNvml, three_gpus
from tests.support.httpservers import RouteServer, static
from tests.support.peers import promtool_lint

FIX = Path(__file__).parent.parent / "fixtures"
GOLDEN = FIX / "golden" / "metrics.txt"
VOLATILE = re.compile(r"^(# (HELP|TYPE) )?(process_\w+|llm_agent_threads|llm_agent_build_info|\w+_duration_seconds"
                      r"|llm_agent_exporter_requests_total|llm_agent_cycles_total|\w+_cpu_seconds_total"
                      r"|llm_agent_target_process_\w+)[ {]")  # the replay server runs in the test's own process


def replay_routes():
    ll = FIX / "llamacpp"
    return {"/health": static((ll / "health_ok.json").read_bytes(), ctype="application/json"),
            "/metrics": static((ll / "metrics.txt").read_bytes()),
            "/slots": static((ll / "slots.json").read_bytes(), ctype="application/json"),
            "/props": static((ll / "props.json").read_bytes(), ctype="application/json")}


def scrape_agent(accept="text/plain", snapshots=None):
    state_dir = tempfile.mkdtemp()
    with RouteServer(replay_routes()) as replay:
        config = parse_config(f'''
[agent]
hostname = "gpu-host-1"
[collectors.host]
enabled = false
[collectors.fabric]
sysfs_root = "{FIX}/sysfs"
dev_root = "{FIX}/sysfs"
[collectors.kernel]
enabled = false
[probes]
enabled = false
[[targets]]
name = "llama"
url = "{replay.url}"
''')
        agent = Agent(config, nvml=FakeNvml(three_gpus()), state_dir=state_dir)
        exporter = Exporter("127.0.0.1", 0).start()
        agent.exporter = exporter
        try:
            snapshot = agent.cycle()
            if snapshots is not None:
                snapshots.append(snapshot)
            return requests.get(f"http://127.0.0.1:{exporter.port}/metrics", headers={"Accept": accept}).content
        finally:
            exporter.stop()
            agent.close()


def test_metrics_output_matches_golden_file(update_golden):
    body = scrape_agent().decode()
    stable = "".join(line + "\n" for line in body.splitlines() if not VOLATILE.match(line))
    if update_golden or not GOLDEN.exists():
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(stable)
    assert stable == GOLDEN.read_text(), "run with --update-golden if the change is intended"


def test_promtool_lint_is_clean_but_for_compatibility_names():
    assert promtool_lint(scrape_agent()) == []


def test_openmetrics_output_parses_strictly():
    body = scrape_agent("application/openmetrics-text;version=1.0.0").decode()
    names = {f.name for f in om_parse(body)}
    assert {"llamacpp:tokens_predicted", "DCGM_FI_DEV_GPU_UTIL", "llm_agent_gpu_up"} <= names


def test_every_sample_is_named_as_its_family_or_with_a_suffix():
    """The model's contract (MetricFamily) that the rules' history relies on to pass over whole
    families no rule reads: checked on a whole cycle's snapshot, every collector's families."""
    snapshots = []
    scrape_agent(snapshots=snapshots)
    odd = [(f.name, s.name) for f in snapshots[0].families for s in f.samples
           if s.name != f.name and not any(s.name == f.name + x for x in ("_total", "_bucket", "_sum", "_count", "_created"))]
    assert odd == [] and len(snapshots[0].families) > 100
