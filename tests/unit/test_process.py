"""The process behind a target, its exit, and py-spy's missing-privilege path."""

import logging
import os
import stat
import subprocess
import sys
import threading

from agent.collectors.process import ExitWatcher, ProcessCollector, is_python
from agent.model import Snapshot
from agent.stacks import StackStore, dump


def test_process_metrics_with_gpu_memory_from_nvml():
    me = os.getpid()
    c = ProcessCollector("llama", "http://127.0.0.1:8080", gpu_memory=lambda: {me: 123 << 20}, finder=lambda port: me)
    snap = Snapshot(0.0, tuple(c.collect()))
    assert snap.value("llm_agent_target_process_found") == 1
    assert snap.samples("llm_agent_target_process_info")[0].label("pid") == str(me)
    assert snap.value("llm_agent_target_process_resident_memory_bytes") > 0
    assert snap.value("llm_agent_target_process_gpu_memory_bytes") == 123 << 20
    assert snap.value("llm_agent_target_process_threads") >= 1
    assert is_python(c.proc)


def test_remote_targets_have_no_process():
    c = ProcessCollector("remote", "http://10.1.2.3:8080", finder=lambda port: os.getpid())
    assert Snapshot(0.0, tuple(c.collect())).value("llm_agent_target_process_found") == 0


def test_exit_is_noticed_within_the_polling_period():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    exited = threading.Event()
    c = ProcessCollector("x", "http://127.0.0.1:1", finder=lambda port: child.pid)
    assert c.alive()
    watcher = ExitWatcher(lambda server: exited.set(), period=0.05)
    watcher.set([c])
    try:
        child.kill()
        child.wait()
        assert exited.wait(2)
    finally:
        watcher.close()


def test_missing_ptrace_privilege_is_reported_once_with_the_fix(tmp_path, caplog):
    fake = tmp_path / "py-spy"
    fake.write_text("#!/bin/sh\necho 'Error: Permission denied (os error 13)' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = dump(os.getpid(), binary=str(fake))
    assert "CAP_SYS_PTRACE" in result.error
    store = StackStore(str(tmp_path), binary=str(fake))
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        store.take_now("llama", os.getpid(), "test")
    assert caplog.text.count("CAP_SYS_PTRACE") == 1
