"""The process behind a target, its exit, and py-spy's missing-privilege path."""

import contextlib
import logging
import os
import stat
import subprocess
import sys
import time

import pytest

from agent.collectors.process import ExitWatcher, ProcessCollector, ProcessGpuMemory, is_python
from agent.model import Snapshot, gauge
from tests.support.peers import wait_until
from agent.probes.stacks import StackStore, dump


def test_process_metrics_and_gpu_memory_joined_from_this_cycles_nvml_series():
    me = os.getpid()
    c = ProcessCollector("llama", "http://127.0.0.1:8080", finder=lambda port: me)
    families = list(c.collect())
    snap = Snapshot(0.0, tuple(families))
    assert snap.value("llm_agent_target_process_found") == 1
    assert snap.samples("llm_agent_target_process_info")[0].label("pid") == str(me)
    assert snap.value("llm_agent_target_process_resident_memory_bytes") > 0
    assert snap.value("llm_agent_target_process_threads") >= 1
    assert is_python(c.proc)
    nvml = gauge("llm_agent_gpu_process_memory_bytes", "")
    nvml.add({"gpu": "0", "pid": str(me)}, 100 << 20).add({"gpu": "1", "pid": str(me)}, 23 << 20)
    nvml.add({"gpu": "1", "pid": "1"}, 5 << 20)  # another process: not this target's
    derived = Snapshot(0.0, tuple(ProcessGpuMemory().derive(Snapshot(0.0, tuple(families) + (nvml,)))))
    assert [(s.labels, s.value) for s in derived.samples("llm_agent_target_process_gpu_memory_bytes")] == \
        [((("server", "llama"),), 123 << 20)]


def test_process_figures_match_psutils_and_a_dead_or_reaped_one_is_not_found():
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE)
    child.stdout.readline()  # started: its descriptors and threads settled
    c = ProcessCollector("x", "http://127.0.0.1:1", finder=lambda port: child.pid)
    try:
        snap = Snapshot(0.0, tuple(c.collect()))
        p = psutil.Process(child.pid)
        assert snap.value("llm_agent_target_process_threads") == p.num_threads()
        assert snap.value("llm_agent_target_process_open_fds") == p.num_fds()
        assert abs(snap.value("llm_agent_target_process_resident_memory_bytes") - p.memory_info().rss) < 1 << 20
        assert snap.value("llm_agent_target_process_start_time_seconds") == p.create_time()
        child.kill()
        time.sleep(0.2)  # a zombie until reaped: not a live server
        assert Snapshot(0.0, tuple(c.collect())).value("llm_agent_target_process_found") == 0
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert Snapshot(0.0, tuple(c.collect())).value("llm_agent_target_process_found") == 0  # reaped: gone


def test_pid_stat_is_read_past_a_command_name_with_spaces_and_parentheses():
    from agent.collectors.procfiles import parse_pid_stat

    line = b"4242 (llama) (srv 1)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1658 8412 0 0 20 0 13 0 25 38326272 2306 0 0"
    stat = parse_pid_stat(line)
    assert (stat.state, stat.utime, stat.stime, stat.threads, stat.start, stat.rss) == ("S", 1658, 8412, 13, 25, 2306)
    import pytest

    for bad in (b"", b"4242 (x) S 1 2", b"garbage without a paren", line[:line.rindex(b" 38326272")]):
        with pytest.raises(ValueError):
            parse_pid_stat(bad)


def test_remote_targets_have_no_process():
    c = ProcessCollector("remote", "http://10.1.2.3:8080", finder=lambda port: os.getpid())
    assert Snapshot(0.0, tuple(c.collect())).value("llm_agent_target_process_found") == 0


def sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@contextlib.contextmanager
def watched_sleeper(period=0.05):
    """A sleeping child found by its collector and watched: (child, exits reported, watcher);
    the watcher closed and the child killed afterwards."""
    child = sleeper()
    exits = []
    c = ProcessCollector("x", "http://127.0.0.1:1", finder=lambda port: child.pid)
    assert c.alive()
    watcher = ExitWatcher(exits.append, period=period)
    watcher.set([c])
    try:
        yield child, exits, watcher
    finally:
        watcher.close()
        if child.poll() is None:
            child.kill()


def test_exit_is_noticed_within_the_polling_period():
    with watched_sleeper() as (child, exits, _):
        child.kill()
        child.wait()
        wait_until(lambda: exits == ["x"], 2, what="the exit")


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds are Linux's (5.3+)")
def test_with_pidfds_the_watcher_sleeps_until_an_exit_and_follows_a_restart():
    first = sleeper()
    pids = [first.pid]
    exits = []
    c = ProcessCollector("x", "http://127.0.0.1:1", finder=lambda port: pids[-1])
    assert c.alive()
    watcher = ExitWatcher(exits.append, period=0.05)
    second = None
    try:
        for _ in range(20):  # a second of cycles while nothing exits
            watcher.set([c])
            time.sleep(0.05)
        assert watcher.wakeups <= 2, "no wake-up while nothing exits (a 0.05 s poll would be ~20)"
        first.kill()
        first.wait()
        wait_until(lambda: exits == ["x"], 2, what="the exit")
        second = sleeper()  # the server restarted: the collector finds the new process in its cycle
        pids.append(second.pid)
        assert c.alive() and c.proc.pid == second.pid
        watcher.set([c])
        second.kill()
        second.wait()
        wait_until(lambda: exits == ["x", "x"], 2, what="the restarted process's exit")
    finally:
        watcher.close()
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds are Linux's (5.3+)")
def test_a_process_that_ends_before_its_pidfd_opens_is_still_reported():
    """Its pid taken again by then, the pidfd would watch a stranger that never exits: the
    watcher checks the process it opened is the one it watches, and polls it otherwise."""
    class Ending:
        pid = os.getpid()  # a live pid: the stranger
        calls = 0

        def is_running(self):
            Ending.calls += 1
            return Ending.calls == 1  # alive at the watcher's first look, gone by the open

        def status(self):
            return "running"

    exits = []
    c = ProcessCollector("x", "http://127.0.0.1:1", finder=lambda port: None)
    c.proc = Ending()
    watcher = ExitWatcher(exits.append, period=0.05)
    try:
        watcher.set([c])
        wait_until(lambda: exits == ["x"], 2, what="the exit")
    finally:
        watcher.close()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds are Linux's (5.3+)")
def test_a_pidfd_that_says_exit_while_the_process_runs_is_polled_not_spun_on(monkeypatch):
    r, w = os.pipe()
    os.write(w, b"x")  # always readable: a descriptor that says "ended" whatever happens
    monkeypatch.setattr(os, "pidfd_open", lambda pid: os.dup(r))
    try:
        with watched_sleeper() as (child, exits, watcher):
            time.sleep(0.5)
            assert exits == [] and watcher.wakeups < 30, "polled every 0.05 s, not spun on (thousands)"
            child.kill()
            child.wait()
            wait_until(lambda: exits == ["x"], 2, what="the exit, seen by polling")
    finally:
        os.close(r)
        os.close(w)


def test_a_process_found_after_the_set_is_watched_at_once():
    """The cycle hands the watcher its collectors before they look for their processes: one
    found in the first cycle must be watched from then, not from the next set (30 s later at a
    30 s interval; test_health's kill -9 test waited for its page in vain)."""
    child = sleeper()
    exits = []
    c = ProcessCollector("x", "http://127.0.0.1:1", finder=lambda port: child.pid)
    watcher = ExitWatcher(exits.append, period=60.0)  # a poll would come too late to pass
    try:
        watcher.set([c])  # no process known yet
        assert c.alive()  # the collector's cycle finds it
        time.sleep(0.1)
        child.kill()
        child.wait()
        wait_until(lambda: exits == ["x"], 2, what="the exit")
    finally:
        watcher.close()
        if child.poll() is None:
            child.kill()


def test_without_pidfds_the_watcher_polls(monkeypatch):
    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")  # a kernel before 5.3

    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    with watched_sleeper() as (child, exits, watcher):
        time.sleep(0.5)
        assert watcher.wakeups >= 5, "polled every period"
        child.kill()
        child.wait()
        wait_until(lambda: exits == ["x"], 2, what="the exit")


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


def test_a_port_whose_process_is_not_found_is_searched_again_only_after_a_while(monkeypatch):
    """Searching means psutil.net_connections(), which reads every process's descriptors (11 ms
    here, more on a busy host): a server in another network namespace is not searched every
    cycle, once its first minute (a server still starting) has passed."""
    import agent.collectors.process as process

    now = [1000.0]
    monkeypatch.setattr(process.time, "monotonic", lambda: now[0])
    calls = []
    c = ProcessCollector("boxed", "http://127.0.0.1:8080", finder=lambda port: calls.append(port))
    c.collect()
    now[0] += process.RESTART_WINDOW
    calls.clear()
    for _ in range(5):
        assert Snapshot(0.0, tuple(c.collect())).value("llm_agent_target_process_found") == 0
    assert calls == [8080]
    now[0] += process.FIND_AGAIN
    c.collect()
    assert calls == [8080, 8080]


def test_a_restarted_server_is_found_at_the_next_cycle_not_after_the_backoff(monkeypatch):
    """kill -9 then a restart a few seconds later: the new process is found the next cycle, so
    the exit watcher pages its next crash at once (bench_health.py's crash trials)."""
    import agent.collectors.process as process

    now = [1000.0]
    monkeypatch.setattr(process.time, "monotonic", lambda: now[0])
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    listening = {"pid": server.pid}
    c = ProcessCollector("llama", "http://127.0.0.1:8080", finder=lambda port: listening["pid"])
    now[0] += 2 * process.RESTART_WINDOW  # long after start: the backoff applies
    assert c.current().pid == server.pid
    server.kill()
    server.wait()
    listening["pid"] = None  # killed: nobody on the port for a moment
    assert c.current() is None
    for _ in range(3):  # the restarted server comes up a few seconds later
        now[0] += 2
        assert c.current() is None
    listening["pid"] = os.getpid()
    now[0] += 2
    assert c.current() is not None and c.current().pid == os.getpid()
