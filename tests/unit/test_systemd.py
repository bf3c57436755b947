"""sd_notify over a real AF_UNIX datagram socket standing in for systemd; the watchdog only
fed while the loop progresses; the daemon's READY/STATUS/RELOADING/STOPPING sequence."""

import os
import socket
import threading

import pytest

from agent.config import load_config
from agent.daemon import Agent
from agent.serve.exporter import Exporter
from agent.systemd import Notifier, Watchdog
from tests.support.clock import ManualClock
from tests.support.peers import wait_until


@pytest.fixture
def systemd_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock):
    return sock.recv(4096).decode()


def test_messages_reach_the_socket(systemd_socket):
    path, sock = systemd_socket
    n = Notifier({"NOTIFY_SOCKET": path}, use_library=False)
    n.ready("serving")
    assert received(sock) == "READY=1\nSTATUS=serving"
    n.reloading()
    msg = received(sock)
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and int(msg.split("=")[-1]) > 0
    n.stopping()
    assert received(sock) == "STOPPING=1"


def test_abstract_socket_address():
    name = f"llm-agent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}, use_library=False).notify(STATUS="x")
        assert received(sock) == "STATUS=x"
    finally:
        sock.close()


def test_outside_systemd_everything_is_a_no_op():
    n = Notifier({}, use_library=False)
    assert not n.enabled and not n.notify(READY="1")


def test_watchdog_is_fed_only_while_the_loop_progresses(systemd_socket):
    path, sock = systemd_socket
    clock = ManualClock(100.0)
    progress = {"t": 100.0}
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "0"}, use_library=False)
    w = Watchdog(n, lambda: progress["t"], stale_after=20, clock=clock)
    assert w.tick() and received(sock) == "WATCHDOG=1"
    clock.now = 130.0  # the loop is wedged: 30 s without a cycle
    assert not w.tick()
    progress["t"] = 131.0
    clock.now = 131.0
    assert w.tick()


def test_watchdog_for_another_pid_is_ignored():
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_usec == 0


def test_daemon_says_ready_after_the_first_cycle_and_stopping_at_the_end(systemd_socket, tmp_path):
    path, sock = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path}, use_library=False)  # what systemd sets for the service
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\ninterval = "200ms"\n[collectors.nvml]\nenabled = false\n[discovery]\nenabled = false\n')
    agent = Agent(load_config(str(config)), state_dir=str(tmp_path))
    exporter = Exporter("127.0.0.1", 0)
    loop = threading.Thread(target=agent.serve, args=(exporter, notifier), daemon=True)
    loop.start()
    try:
        first = received(sock)
        assert first.startswith("READY=1\nSTATUS=targets 0/0 up, GPUs 0/0")
        assert agent.snapshot is not None
        assert received(sock).startswith("STATUS=")
        agent.request_reload()
        wait_until(lambda: received(sock).startswith("RELOADING=1"), 5, what="RELOADING")
        wait_until(lambda: received(sock).startswith("READY=1"), 5, what="READY after the reload")
    finally:
        agent.stop()
        loop.join(5)
        exporter.server_close()
        agent.close(drain=0)
    messages = []
    sock.settimeout(0.5)
    try:
        while True:
            messages.append(received(sock))
    except socket.timeout:
        pass
    assert messages[-1] == "STOPPING=1"


def test_systemd_python_path_reaches_the_socket(systemd_socket, monkeypatch):
    """With systemd-python installed the library sends; it reads $NOTIFY_SOCKET itself."""
    from tests.support.peers import require

    try:
        from systemd import daemon  # noqa: F401
        found = True
    except ImportError:
        found = False
    require("systemd-python", found, "pip install systemd-python (needs libsystemd-dev)")
    path, sock = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)  # the library's own interface is the environment
    n = Notifier({"NOTIFY_SOCKET": path}, use_library=True)
    assert n._library is not None
    assert n.notify(READY="1", STATUS="via systemd-python")
    assert received(sock) == "READY=1\nSTATUS=via systemd-python"


def test_journal_handler_is_used_under_the_journal_when_available():
    import io

    from agent.logformat import handler_for

    try:
        from systemd import journal
    except ImportError:
        pytest.skip("systemd-python is not installed")
    assert isinstance(handler_for("journal", io.StringIO()), journal.JournalHandler)
