"""A real Prometheus scrapes the agent (which scrapes a real llama-server)."""

from tests.support.peers import wait_until


def test_prometheus_scrapes_the_agent(llama_server, serving, prometheus):
    llama_server.complete(8)
    run = serving(f'''
[agent]
interval = "1s"
[collectors.nvml]
enabled = false
[[targets]]
name = "tiny"
url = "{llama_server.url}"
''')
    prom = prometheus([f"127.0.0.1:{run.port}"])
    wait_until(lambda: prom.query('up{job="llm-agent"} == 1'), 30, 0.5, "Prometheus to scrape the agent")
    wait_until(lambda: prom.query('llamacpp:tokens_predicted_total{server="tiny"} >= 8'), 30, 0.5,
               "llama-server's series through the agent")
    assert prom.query('llm_agent_target_up{server="tiny"}')[0]["value"][1] == "1"
    assert prom.query("node_cpu_seconds_total")
    assert prom.query('llm_agent_collector_success{collector="target:tiny"}')[0]["value"][1] == "1"
    # Prometheus negotiated OpenMetrics and stored the counters under their exact names
    targets = prom.query("scrape_samples_scraped")
    assert float(targets[0]["value"][1]) > 50


def test_a_hostile_target_never_breaks_prometheus_scrape_of_the_agent(serving, prometheus):
    """A target that sends a different hostile body every cycle (duplicate labels, __name__,
    server and exported_server, the agent's own family names, broken histograms, second TYPE
    lines, ...): every scrape Prometheus makes of the agent succeeds, in OpenMetrics."""
    import random

    from tests.support.hostile import hostile_body
    from tests.support.httpservers import RouteServer

    rng = random.Random(8)
    bodies = [hostile_body(rng, 40).encode() for _ in range(400)]
    served = {"n": 0}

    def evil(_handler):
        served["n"] += 1
        return 200, bodies[served["n"] % len(bodies)], "text/plain"

    with RouteServer({"/metrics": evil}) as srv:
        run = serving('[agent]\ninterval = "250ms"\n[collectors.nvml]\nenabled = false\n'
                      f'[[targets]]\nname = "evil"\nurl = "{srv.url}"\nkind = "openmetrics"\n')
        prom = prometheus([f"127.0.0.1:{run.port}"], interval="500ms")
        wait_until(lambda: float(prom.query('count_over_time(up{job="llm-agent"}[1m])')[0]["value"][1]) >= 20,
                   60, 0.5, "20 scrapes of the agent")
        assert served["n"] >= 40, "the agent went through many hostile bodies"
        scrapes = float(prom.query('count_over_time(up{job="llm-agent"}[1m])')[0]["value"][1])
        good = float(prom.query('sum_over_time(up{job="llm-agent"}[1m])')[0]["value"][1])
        assert good == scrapes, f"{scrapes - good:.0f} of {scrapes:.0f} scrapes failed: see {prom.workdir}/prometheus.log"
        assert prom.query('llm_agent_collector_success{collector="target:evil"}')
        assert prom.query('llm_agent_target_series_dropped_total{server="evil"}')


def test_prometheus_takes_bodies_rendered_ahead_by_the_cycle(serving, prometheus):
    """A real Prometheus scraping every 1 s an agent cycling every 500 ms: once its period is
    known, its scrapes find the snapshot they take rendered by the cycle, in the OpenMetrics
    and gzip it asks for, and the event loop answers them; what it stores is the agent's."""
    run = serving('[agent]\ninterval = "500ms"\n[collectors.nvml]\nenabled = false\n[discovery]\nenabled = false\n')
    prom = prometheus([f"127.0.0.1:{run.port}"])
    wait_until(lambda: run.exporter.answered_by_loop >= 3, 30, 0.2, "scrapes answered from bodies rendered ahead")
    assert run.exporter.rendered_ahead >= 3
    wait_until(lambda: prom.query('llm_agent_cycles_total > 10'), 30, 0.5, "the agent's series in Prometheus")
    assert prom.query('up{job="llm-agent"}')[0]["value"][1] == "1"
