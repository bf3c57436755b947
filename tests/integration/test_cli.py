"""The `llm-agent` command as operators and scripts use it (a subprocess each time)."""

import json
import os
import signal
import socket
import subprocess
import sys

import requests

from tests.support.peers import free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, env=None, timeout=60):
    full_env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    full_env.pop("LLM_AGENT_CONFIG", None) if not (env and "LLM_AGENT_CONFIG" in env) else None
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)


def write(tmp_path, text, name="agent.toml"):
    """The config file; without an [exporter] of its own it gets a port nothing listens on, so
    `check` gives its own verdict, never that of an agent running on this machine's :9400."""
    if "[exporter]" not in text:
        text += f'\n[exporter]\nlisten = "127.0.0.1:{free_port()}"\n'
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_version_and_help():
    assert cli("--version").stdout.strip() == "llm-agent 0.1.0"
    out = cli("--help").stdout
    for command in ("run", "check", "config", "report"):
        assert f"\n    {command} " in out


def test_config_validate(tmp_path):
    bad = write(tmp_path, '[agent]\ninterval = "5x"\n[exporter]\nlisten = ":70000"\n')
    r = cli("config", "validate", bad)
    assert r.returncode == 2
    assert f'{bad}:2: agent.interval: invalid duration' in r.stderr
    assert f"{bad}:4: exporter.listen: port 70000 is out of range 1-65535" in r.stderr
    good = write(tmp_path, '[agent]\ninterval = "10s"\n', "good.toml")
    r = cli("config", "validate", good)
    assert (r.returncode, r.stdout.strip()) == (0, f"{good}: valid")


def test_config_from_environment_variable(tmp_path):
    bad = write(tmp_path, "[agent]\nbogus = 1\n")
    r = cli("config", "validate", env={"LLM_AGENT_CONFIG": bad})
    assert r.returncode == 2 and "agent.bogus: unknown key" in r.stderr


def test_run_refuses_a_bad_config_without_starting(tmp_path):
    r = cli("run", "--config", write(tmp_path, '[agent]\ninterval = "0s"\n'))
    assert r.returncode == 2 and "agent.interval: must be greater than zero" in r.stderr


def test_run_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write(tmp_path, f'[exporter]\nlisten = "127.0.0.1:{port}"\n')
        r = cli("run", "--config", config)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"llm-agent: cannot listen on 127.0.0.1:{port}: the port is already in use; "
                                f"set [exporter] listen in {config} to a free port")


def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path, llama_server):
    port = free_port()
    config = write(tmp_path, f'[agent]\ninterval = "1s"\nstate_dir = "{tmp_path}"\n[exporter]\nlisten = "127.0.0.1:{port}"\n'
                             f'[[targets]]\nname = "tiny"\nurl = "{llama_server.url}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: b'llm_agent_target_up{server="tiny",kind="llamacpp"} 1'
                   in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).content, 20, what="agent serving")
        assert requests.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"stopped" in proc.stderr.read()


def test_check_json_with_a_healthy_server(tmp_path, llama_server):
    llama_server.complete(8)
    config = write(tmp_path, f'[[targets]]\nname = "tiny"\nurl = "{llama_server.url}"\n')
    r = cli("check", "--json", "--sample", "0.2", "--config", config)
    report = json.loads(r.stdout)
    assert r.returncode == 0, r.stdout
    assert report["status"] == "ok"
    target = report["targets"][0]
    assert (target["name"], target["up"], target["ready"], target["model"]) == ("tiny", True, True, "tiny.gguf")
    assert "generation_tokens_per_second" in target
    from tests.unit.test_nvml import real_nvml_works

    if real_nvml_works():  # a GPU host, the product's home
        assert report["nvml"] is True
    else:  # no driver: said, as information, not fatal
        assert report["nvml"] is False
        assert any(p["subject"] == "nvml" and p["severity"] == "info" for p in report["problems"])
    assert report["host"]["cpus"] >= 1


def test_check_text_on_a_host_with_nothing_running(tmp_path):
    config = write(tmp_path, f'[[targets]]\nname = "llama"\nurl = "http://127.0.0.1:{free_port()}"\n')
    r = cli("check", "--config", config)
    # a server that has never answered is not an outage (issue 26): check says what it waits for
    assert r.returncode == 1, r.stdout
    assert "Targets\n  llama (llamacpp)  WARNING: waiting: it has not answered since the agent began watching it" \
        in r.stdout
    assert "WARNING target llama: waiting for it: nothing has answered at http://127.0.0.1:" in r.stdout
    assert "fix: start the server" in r.stdout
    assert "NVML" in r.stdout
    assert "Status: WARNING (exit 1; the verdict of this check's pass)" in r.stdout


def test_check_never_prints_a_secret(tmp_path, llama_server):
    config = write(tmp_path, f'[[targets]]\nname = "tiny"\nurl = "{llama_server.url}"\napi_key = "${{TOKEN}}"\n')
    r = cli("check", "--json", "--config", config, env={"TOKEN": "sk-never-print-me"})
    assert "sk-never-print-me" not in r.stdout + r.stderr


def test_reload_command_applies_a_new_config(tmp_path, llama_server):
    port = free_port()
    head = f'[agent]\ninterval = "300ms"\nstate_dir = "{tmp_path}"\n[exporter]\nlisten = "127.0.0.1:{port}"\n' \
           '[probes]\nenabled = false\n'
    config = write(tmp_path, head + f'[[targets]]\nname = "one"\nurl = "{llama_server.url}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", config], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: b'server="one"' in requests.get(metrics, timeout=1).content, 20, what="first target")
        write(tmp_path, head + f'[[targets]]\nname = "two"\nurl = "{llama_server.url}"\n')
        r = cli("reload", "--config", config)
        assert r.returncode == 0 and "reload requested" in r.stdout
        wait_until(lambda: b'server="two"' in requests.get(metrics, timeout=1).content, 20, what="reloaded target")
        assert b"llm_agent_config_last_reload_successful 1" in requests.get(metrics).content
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not (tmp_path / "llm-agent.pid").exists()
    assert cli("reload", "--config", config).returncode == 1


def test_check_calls_a_stopped_server_not_answering_not_down(tmp_path, llama_server):
    config = write(tmp_path, f'[probes]\nenabled = false\n[[targets]]\nname = "tiny"\nurl = "{llama_server.url}"\n'
                             'timeout = "500ms"\n')
    os.kill(llama_server.proc.pid, signal.SIGSTOP)
    try:
        r = cli("check", "--sample", "0", "--config", config)
    finally:
        os.kill(llama_server.proc.pid, signal.SIGCONT)
    assert "tiny (llamacpp)  CRITICAL: not answering: its process is alive (stopped, hung or overloaded)" in r.stdout, \
        r.stdout
    assert f"(pid {llama_server.proc.pid}) is stopped (SIGSTOP?)" in r.stdout
    assert f"fix: send it SIGCONT (kill -CONT {llama_server.proc.pid})" in r.stdout
    assert "start the server" not in r.stdout


def test_check_shows_what_the_running_agent_fires(tmp_path):
    from tests.support.agentproc import new_agent, webhook

    agent, flapper = new_agent(tmp_path, webhook("http://127.0.0.1:9/none"))
    try:
        flapper.set(["x"], 1.0)
        agent.start()
        wait_until(lambda: agent.value("llm_agent_alert_firing", alertname="Flap") == 1, 20, what="Flap firing")
        r = cli("check", "--json", "--sample", "0", "--config", agent.config_path)
        report = json.loads(r.stdout)
        running = report["running_agent"]
        assert [a["labels"]["alertname"] for a in running["firing"]] == ["Flap"]
        assert report["status"] == running["status"] == "warning" and r.returncode == 1, "one verdict: the agent's"
        r = cli("check", "--sample", "0", "--config", agent.config_path)
        assert "Firing now (the running agent)\n  WARNING Flap" in r.stdout
        assert "Status: WARNING (exit 1; the verdict of the running agent)" in r.stdout
        r = cli("maintenance", "--for", "20m", "--comment", "new PSU", "--config", agent.config_path)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: "maintenance" in cli("check", "--sample", "0", "--config", agent.config_path).stdout, 20,
                   what="the next cycle to see the window")
        r = cli("check", "--sample", "0", "--config", agent.config_path)
        text = r.stdout
        assert "INFO MAINTENANCE of the whole host" in text.splitlines()[1] and "new PSU" in text, text
        # a silenced critical is said to be silenced, never shown as a bare critical (issue 26)
        assert "INFO Flap (server=flapper) maintenance until" in text, text
        assert "Status: MAINTENANCE (exit 0; the verdict of the running agent)" in text and r.returncode == 0
    finally:
        agent.stop()
        flapper.close()
    text = cli("check", "--sample", "0", "--config", agent.config_path).stdout
    assert "cannot tell: no agent is running there" in text
