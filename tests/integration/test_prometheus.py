"""A real Prometheus scrapes the agent (which scrapes a real llama-server)."""

import threading

from agent.config import parse_config
from agent.daemon import Agent
from agent.exporter import Exporter
from tests.support.peers import Prometheus, wait_until


def test_prometheus_scrapes_the_agent(llama_server, tmp_path):
    llama_server.complete(8)
    config = parse_config(f'''
[agent]
interval = "1s"
[collectors.nvml]
enabled = false
[[targets]]
name = "tiny"
url = "{llama_server.url}"
''')
    agent = Agent(config, state_dir=str(tmp_path))
    exporter = Exporter("127.0.0.1", 0).start()
    loop = threading.Thread(target=agent.serve, args=(exporter,), daemon=True)
    loop.start()
    prom = Prometheus([f"127.0.0.1:{exporter.port}"], str(tmp_path)).start()
    try:
        wait_until(lambda: prom.query('up{job="llm-agent"} == 1'), 30, 0.5, "Prometheus to scrape the agent")
        wait_until(lambda: prom.query('llamacpp:tokens_predicted_total{server="tiny"} >= 8'), 30, 0.5,
                   "llama-server's series through the agent")
        assert prom.query('llm_agent_target_up{server="tiny"}')[0]["value"][1] == "1"
        assert prom.query("node_cpu_seconds_total")
        assert prom.query('llm_agent_collector_success{collector="target:tiny"}')[0]["value"][1] == "1"
        # Prometheus negotiated OpenMetrics and stored the counters under their exact names
        targets = prom.query("scrape_samples_scraped")
        assert float(targets[0]["value"][1]) > 50
    finally:
        prom.stop()
        agent.stop()
        loop.join(5)
        exporter.stop()
        agent.close()
