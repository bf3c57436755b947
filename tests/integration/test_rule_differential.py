"""A real rule file evaluated twice: by the agent on its own history, and by a real Prometheus
scraping the agent and loading the same file. The same alerts fire, with the same labels and
the same annotations (templates, `query` included).

Prometheus drops the scrape's `instance` and `job` labels, so both see the same series."""

import textwrap
from pathlib import Path

import requests

from tests.support.peers import wait_until

RULES = Path(__file__).parent.parent / "fixtures" / "rulefiles" / "node_differential.yml"


def _firing(url: str) -> dict:
    alerts = requests.get(url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {tuple(sorted(a["labels"].items())): a["annotations"] for a in alerts if a["state"] == "firing"}


def test_the_agent_and_prometheus_fire_the_same_alerts_with_the_same_text(serving, prometheus, tmp_path):
    run = serving(f'''
[agent]
interval = "1s"
[collectors.nvml]
enabled = false
[alerting]
default_rules = false
rule_files = ["{RULES}"]
''')
    config = textwrap.dedent(f"""\
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        rule_files: ["{RULES}"]
        scrape_configs:
          - job_name: agent
            static_configs:
              - targets: ["127.0.0.1:{run.port}"]
            metric_relabel_configs:
              - action: labeldrop
                regex: instance|job
        """)
    prom = prometheus([], config_text=config)
    agent_url = f"http://127.0.0.1:{run.port}"
    wanted = {"HostMemorySize", "HostCpuCount", "HostBootTime", "HostFilesystemSize"}

    def both_fire() -> bool:
        names = [{dict(k)["alertname"] for k in _firing(u)} for u in (agent_url, prom.url)]
        return all(wanted <= n for n in names)

    wait_until(both_fire, 60, 0.5, "all four rules firing in both")
    ours, theirs = _firing(agent_url), _firing(prom.url)
    print(f"rule differential: {len(ours)} alerts in the agent, {len(theirs)} in Prometheus")
    assert set(ours) == set(theirs)
    for labels in theirs:
        assert ours[labels] == theirs[labels], dict(labels)
    assert len(ours) >= 4
    for labels, annotations in sorted(ours.items()):
        print(dict(labels)["alertname"], annotations)
