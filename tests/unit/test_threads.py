"""agent.threads: each thread's kernel name is its Python name (what `top -H` and the real-time
benchmark read)."""

import os
import sys
import threading

import pytest

from agent import threads

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names in /proc are Linux's")


def comm(tid: int) -> str:
    with open(f"/proc/self/task/{tid}/comm") as f:
        return f.read().strip()


def test_a_daemon_thread_carries_its_name_into_the_kernel_cut_to_fifteen_bytes():
    seen = {}
    done = threading.Event()

    def work(a, b):
        seen["args"] = (a, b)
        seen["comm"] = comm(threading.get_native_id())
        done.wait(5)

    t = threads.daemon(work, "remote-write:a-very-long-endpoint", 1, 2)
    assert t.daemon and t.name == "remote-write:a-very-long-endpoint" and not t.is_alive()
    t.start()
    for _ in range(500):
        if "comm" in seen:
            break
        threading.Event().wait(0.01)
    done.set()
    t.join(5)
    assert seen == {"args": (1, 2), "comm": "remote-write:a-"}


def test_a_pool_initializer_names_each_worker_by_its_python_name():
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="collector", initializer=threads.name_os_thread) as pool:
        assert pool.submit(lambda: comm(threading.get_native_id())).result(5) == "collector_0"


def test_a_name_that_cannot_be_written_changes_nothing(monkeypatch):
    monkeypatch.setattr(threading, "get_native_id", lambda: 2 ** 31 - 1)  # no such task
    threads.name_os_thread("anything")  # no exception: a name is cosmetic
    assert comm(os.getpid()) != "anything"
