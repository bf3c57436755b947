"""What a plain agent keeps out of its memory (issue 32's RSS): the real daemon, with history,
the default rules and streamed probes against a real llama-server, never maps OpenSSL
(~4 MiB), which only TLS needs (an https target still speaks it: test_wire). An HTTP channel
loads requests, and OpenSSL with it, on purpose: notify/base.py says why."""

from tests.support.agentproc import AgentProcess
from tests.support.peers import free_port, wait_until


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_an_agent_without_tls_never_maps_openssl(llama_server, tmp_path):
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    agent = AgentProcess(str(tmp_path), f'''
[agent]
interval = "300ms"
state_dir = "{state}"
[exporter]
listen = "127.0.0.1:{port}"
[discovery]
enabled = false
[collectors.nvml]
enabled = false
[probes]
interval = "300ms"
max_tokens = 4
[[targets]]
name = "tiny"
url = "{llama_server.url}"
''', port).start()
    try:
        wait_until(lambda: agent.value("llm_agent_probe_ttft_seconds_count", server="tiny") >= 2, 30,
                   what="two streamed probes answered")
        assert agent.value("llm_agent_probe_success", server="tiny") == 1
        maps = _maps(agent.proc.pid)
        assert "libcrypto" not in maps and "libssl" not in maps
        assert "_hashlib" not in maps and "_ssl" not in maps
    finally:
        assert agent.stop() == 0

