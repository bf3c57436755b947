"""The fleet path end to end, at small size: four agents on loopback watching one shared real
llama-server push to a real two-replica Alertmanager cluster; a real Prometheus scrapes them
all through file_sd. Killing the server (a fleet-wide fault) reaches Alertmanager's webhook
receiver as one notification per Alertmanager group, holding one alert per host (each agent's
alerts carry its Hostname), not one notification per host; every scrape succeeds."""

import time

from tests.support.fleet import AlertmanagerCluster, file_sd_prometheus, group_notifications, start_agents
from tests.support.peers import wait_until
from tests.support.receivers import WEBHOOK, Receiver

N = 4


def test_a_fleet_wide_fault_is_one_notification_per_alertmanager_group(llama_server, tmp_path):
    hook = Receiver(WEBHOOK, "ok")
    cluster = AlertmanagerCluster(str(tmp_path / "am"), hook.url, group_wait="8s").start()
    agents = start_agents(N, str(tmp_path), [llama_server.url], cluster.urls, interval="1s")
    prom = None
    try:
        prom = file_sd_prometheus(str(tmp_path / "prom"), agents, interval="1s")
        wait_until(lambda: len(prom.query("up == 1")) == N, 30, what="Prometheus scraping every agent")
        llama_server.kill()
        wait_until(lambda: group_notifications([r["body"] for r in hook.requests]).get('{}:{alertname="LlmTargetDown"}'),
                   60, what="the LlmTargetDown group at the webhook")
        time.sleep(8)  # the other replica's turn (peer timeout) and more agent cycles: nothing else comes
        groups = group_notifications([r["body"] for r in hook.requests])
        down = groups['{}:{alertname="LlmTargetDown"}']
        assert len(down) == 1, "one notification for the group, not one per host or per replica"
        hosts = sorted(a["labels"]["Hostname"] for a in down[0]["alerts"])
        assert hosts == [f"agent-{i:03d}" for i in range(N)], "each host's alert, none merged"
        assert all(len(v) == 1 for v in groups.values()), {k: len(v) for k, v in groups.items()}
        assert prom.query("min(up)")[0]["value"][1] == "1", "every scrape succeeded"
    finally:
        for a in agents:
            a.stop()
        if prom is not None:
            prom.stop()
        cluster.stop()
        hook.close()
