"""LLM-aware health with real peers: completion probes against llama-server, kill -STOP as a
hang (alert, /healthz 503) and kill -CONT as recovery, kill -9 paged at once by the exit
watcher, and a real Python server stuck mid-stream: stall detected, py-spy names the function."""

import os
import signal
import subprocess
import sys
import time


from tests.support.configs import TARGETS_ONLY
from tests.support.running import Running
from tests.support.peers import LlamaServer, free_port, wait_until
from tests.support.receivers import WEBHOOK, Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = '''
[agent]
interval = "{interval}"
''' + TARGETS_ONLY


def _tiny_paging(url: str, hook: str, target_timeout: str = "", resolve_at_once: bool = False) -> str:
    """The target "tiny" at `url`, and a webhook channel to `hook` that pages its alerts."""
    return (f'[[targets]]\nname = "tiny"\nurl = "{url}"\n' + (f'timeout = "{target_timeout}"\n' if target_timeout else "")
            + f'[[notify]]\nname = "hook"\ntype = "webhook"\nurl = "{hook}"\n'
            + ('group_interval = "0s"  # resolves at once (grouping has its own tests)\n' if resolve_at_once else ""))


def test_probe_fills_ttft_and_tpot_and_records_a_canary(llama_server, tmp_path):
    run = Running(BASE.format(interval="300ms") + f'''
[probes]
interval = "300ms"
max_tokens = 6
canary_baseline = true
[[targets]]
name = "tiny"
url = "{llama_server.url}"
''', str(tmp_path))
    try:
        wait_until(lambda: (run.value("llm_agent_probe_ttft_seconds_count", server="tiny") or 0) >= 2, 20,
                   what="two successful probes")
        assert run.value("llm_agent_probe_success", server="tiny") == 1
        assert run.value("llm_agent_probe_tpot_seconds_count", server="tiny") >= 2
        assert run.value("llm_agent_probe_tokens_total", server="tiny") >= 12  # 6 tokens each
        assert run.value("llm_agent_probe_canary_match", server="tiny") == 1  # same answer at temperature 0
        assert (tmp_path / "canary-tiny.txt").read_text()
        code, doc = run.healthz()
        assert code == 200 and doc["status"] == "ok"
        assert [c["name"] for c in doc["checks"]] == ["agent", "target:tiny"]
    finally:
        run.stop()


def test_a_server_without_metrics_is_still_probed(tiny_model, tmp_path):
    server = LlamaServer(tiny_model, args=["--no-slots"], log_dir=str(tmp_path)).start()
    run = Running(BASE.format(interval="300ms") + f'''
[probes]
interval = "300ms"
[[targets]]
name = "bare"
url = "{server.url}"
''', str(tmp_path))
    try:
        wait_until(lambda: run.value("llm_agent_probe_success", server="bare") == 1, 20, what="a successful probe")
        assert run.value("llm_agent_target_metrics_enabled", server="bare") == 0
    finally:
        run.stop()
        server.kill()


def test_kill_stop_is_a_hang_and_kill_cont_resolves_it(llama_server, tmp_path):
    receiver = Receiver(WEBHOOK, "ok")
    run = Running(BASE.format(interval="500ms") + '''
[health]
hang_after = "2s"
[probes]
interval = "1s"
timeout = "2s"
''' + _tiny_paging(llama_server.url, receiver.url, target_timeout="1s", resolve_at_once=True), str(tmp_path))
    try:
        wait_until(lambda: run.value("llm_agent_target_process_found", server="tiny") == 1, 10, what="the process")
        assert run.healthz()[0] == 200
        llama_server.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: any(a["labels"]["alertname"] == "LlmTargetHung" for a in receiver.alerts("firing")), 20,
                   what="the hang alert")
        code, doc = run.healthz()
        assert code == 503 and "target:tiny: hung: alive but not answering" in doc["reasons"]
        assert run.healthz("?target=tiny")[0] == 503
        assert run.healthz("?target=nope")[0] == 404
        assert not any(a["labels"]["alertname"] == "LlmTargetDown" for a in receiver.alerts()), "hung, not down"
        llama_server.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: any(a["labels"]["alertname"] == "LlmTargetHung" for a in receiver.alerts("resolved")), 20,
                   what="the resolve")
        wait_until(lambda: run.healthz()[0] == 200, 10, what="healthy again")
    finally:
        llama_server.proc.send_signal(signal.SIGCONT)
        run.stop()
        receiver.close()


def test_a_hang_is_paged_hang_after_the_first_silent_request_not_at_the_next_tick(llama_server, tmp_path):
    """The hang clock starts when the first timed-out request was sent, and a timeout is checked
    again at once: with a 60 s interval the page still comes hang_after (3 s) after it."""
    receiver = Receiver(WEBHOOK, "ok")
    run = Running(BASE.format(interval="60s") + '''
[health]
hang_after = "3s"
[probes]
enabled = false
''' + _tiny_paging(llama_server.url, receiver.url, target_timeout="1s"), str(tmp_path))
    try:
        assert run.value("llm_agent_target_process_found", server="tiny") == 1
        llama_server.proc.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        run.agent.wake_now()  # one cycle now; no other until the 60 s tick
        wait_until(lambda: receiver.alerts("firing"), 20, 0.05, what="the hang page")
        took = time.monotonic() - start
        assert receiver.alerts("firing")[0]["labels"]["alertname"] == "LlmTargetHung"
        assert 2.9 <= took < 6, f"paged {took:.1f}s after the first silent request (hang_after 3 s)"
    finally:
        llama_server.proc.send_signal(signal.SIGCONT)
        run.stop()
        receiver.close()


def test_kill_9_is_paged_before_the_next_cycle(llama_server, tmp_path):
    receiver = Receiver(WEBHOOK, "ok")
    run = Running(BASE.format(interval="30s") + '''
[probes]
enabled = false
''' + _tiny_paging(llama_server.url, receiver.url, resolve_at_once=True), str(tmp_path))
    try:
        assert run.value("llm_agent_target_process_found", server="tiny") == 1
        llama_server.kill()
        start = time.monotonic()
        wait_until(lambda: receiver.alerts("firing"), 25, 0.05, what="the page")
        assert time.monotonic() - start < 10, "the exit watcher ran a cycle at once, not at the 30 s tick"
        assert receiver.alerts("firing")[0]["labels"]["alertname"] == "LlmTargetDown"
    finally:
        run.stop()
        receiver.close()


def test_stuck_python_server_is_stalled_and_py_spy_names_the_function(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "support", "stuck_server.py"), str(port)],
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    receiver = Receiver(WEBHOOK, "ok")
    run = Running(BASE.format(interval="300ms") + f'''
[health]
stall_after = "1s"
[probes]
interval = "1s"
timeout = "1s"
[[targets]]
name = "pyserve"
url = "http://127.0.0.1:{port}"
kind = "openmetrics"
[[notify]]
name = "hook"
type = "webhook"
url = "{receiver.url}"
group_interval = "0s"  # resolves at once (grouping has its own tests)
''', str(tmp_path))
    try:
        wait_until(lambda: run.value("llm_agent_target_stalled", server="pyserve") == 1, 20, what="the stall")
        assert run.value("llm_agent_probe_errors_total", server="pyserve", kind="timeout") >= 1
        wait_until(lambda: "pyserve" in run.agent.stacks.latest, 20, what="the py-spy dump")
        dump = run.agent.stacks.latest["pyserve"]
        assert not dump.error, dump.error
        assert "stuck_in_decode" in dump.summary.split(";")[0]
        assert open(dump.path).read().count("stuck_in_decode") >= 1
        def stalled_with_stacks():
            return [a for a in receiver.alerts("firing")
                    if a["labels"]["alertname"] == "LlmTargetStalled" and "stacks" in a["annotations"]]
        # the alert goes out at once; the dump lands a moment later and the alert is sent again with it
        wait_until(stalled_with_stacks, 20, what="the stall alert with its stacks")
        alert = stalled_with_stacks()[0]
        assert "stuck_in_decode" in alert["annotations"]["stacks"]
        assert alert["annotations"]["stacks_file"] == dump.path
        cli_config = tmp_path / "cli.toml"
        cli_config.write_text(f'[agent]\nstate_dir = "{tmp_path / "cli-state"}"\n')
        # as a fresh checkout runs it: the venv's bin/ (where py-spy is) not on PATH
        bare = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": ROOT, "HOME": str(tmp_path)}
        r = subprocess.run([sys.executable, "-m", "agent.cli", "stacks", str(proc.pid), "--config", str(cli_config)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, env=bare)
        assert r.returncode == 0 and "stuck_in_decode" in r.stdout, r.stderr
        assert str(tmp_path / "cli-state" / "stacks") in r.stdout
        sleeper = subprocess.Popen(["sleep", "30"])
        try:
            r = subprocess.run([sys.executable, "-m", "agent.cli", "stacks", str(sleeper.pid), "--config",
                                str(cli_config)], cwd=ROOT, capture_output=True, text=True, timeout=60, env=bare)
        finally:
            sleeper.kill()
        assert r.returncode == 1 and f"process {sleeper.pid} is not a Python process" in r.stderr
    finally:
        run.stop()
        receiver.close()
        proc.kill()
