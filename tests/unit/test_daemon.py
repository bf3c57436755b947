"""The agent loop: SIGHUP-style reload keeps running on a broken config; discovery refresh."""

import threading

import pytest

from agent.config import load_config
from agent.daemon import Agent
from agent.discovery import Found
from agent.serve.exporter import Exporter
from tests.support.clock import ManualClock
from tests.support.httpservers import RouteServer, static
from tests.support.peers import wait_until

BASE = '[agent]\ninterval = "200ms"\n[collectors.nvml]\nenabled = false\n[collectors.host]\nenabled = false\n'


def test_reload_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one(tmp_path):
    with RouteServer({"/metrics": static(b"a 1\n")}) as srv:
        path = tmp_path / "agent.toml"
        path.write_text(BASE + f'[[targets]]\nname = "one"\nurl = "{srv.url}"\nkind = "openmetrics"\n')
        agent = Agent(load_config(str(path)), state_dir=str(tmp_path))
        exporter = Exporter("127.0.0.1", 0)
        loop = threading.Thread(target=agent.serve, args=(exporter,), daemon=True)
        loop.start()
        try:
            wait_until(lambda: agent.snapshot and agent.snapshot.value("a", server="one") == 1, 5, what="first cycle")
            history, outbox, store = agent.alerting.history, agent.alerting.outbox, agent.alerting.store
            path.write_text(BASE + f'[[targets]]\nname = "two"\nurl = "{srv.url}"\nkind = "openmetrics"\n')
            agent.request_reload()
            wait_until(lambda: agent.snapshot.value("a", server="two") == 1, 5, what="reloaded target")
            assert agent.snapshot.value("llm_agent_config_last_reload_successful") == 1
            # alert history, the outbox and the database carry over a reload
            assert (agent.alerting.history, agent.alerting.outbox, agent.alerting.store) == (history, outbox, store)
            path.write_text(BASE + '[agent]\ninterval = "nope"\n')
            agent.request_reload()
            wait_until(lambda: agent.snapshot.value("llm_agent_config_last_reload_successful") == 0, 5,
                       what="failed reload reported")
            assert agent.snapshot.value("a", server="two") == 1  # the old config keeps running
        finally:
            agent.stop()
            loop.join(5)
            exporter.server_close()
            agent.close()


def test_discovery_reruns_and_picks_up_a_server_started_later():
    found = []
    clock = ManualClock()
    agent = Agent(load_config(None), discover=lambda: list(found), monotonic=clock, alerting=False)
    assert [t.name for t in agent.targets()] == ["llama-server-8080"]  # the fallback
    found.append(Found("openmetrics", "vllm", "127.0.0.1", 8000, 42))
    assert [t.name for t in agent.targets()] == ["llama-server-8080"]  # not yet: discovery interval
    clock.now += 31
    assert [t.name for t in agent.targets()] == ["vllm-8000"]
    agent.close()


def test_every_collector_is_registered_and_a_reload_keeps_nvml_unless_its_section_changed(tmp_path):
    from agent.config import parse_config
    from agent.plugins import REGISTRY as registry, Registration, load_all
    from tests.support.fake_pynvml import FakeGpu, FakeNvml

    load_all()
    with pytest.raises(ValueError, match="registered twice"):  # a registry refuses a second of a name
        registry.add(registry.fixed, Registration("nvml", "", lambda ctx: None))

    assert {"agent", "nvml", "host"} <= set(registry.fixed)
    assert {"slo_cost", "process_gpu_memory", "engine_series"} <= set(registry.derivers)
    assert set(registry.target_kinds) == {"llamacpp", "openmetrics", "ollama"} and "probe" in registry.per_target
    agent = Agent(parse_config('[collectors.host]\nenabled = false\n[discovery]\nenabled = false\n'),
                  nvml=FakeNvml([FakeGpu()]), state_dir=str(tmp_path))
    try:
        nvml = agent.collectors.fixed["nvml"]
        derivers = {d.name: d for d in agent.runner.derivers}
        assert [d.name for d in agent.runner.derivers] == sorted(derivers), "in name order: engine_series before slo_cost"
        assert "host" not in agent.collectors.fixed, "a disabled collector is not built"
        agent.config = parse_config('[collectors.host]\nenabled = true\n[discovery]\nenabled = false\n')
        agent.collectors.ctx.config = agent.config
        old = agent.collectors.ctx.config
        agent.collectors.build_fixed(previous=parse_config('[collectors.host]\nenabled = false\n[discovery]\nenabled = false\n'))
        assert agent.collectors.fixed["nvml"] is nvml and "host" in agent.collectors.fixed
        kept = {d.name: d for d in agent.runner.derivers}
        assert kept["engine_series"] is derivers["engine_series"], "its token rates' minute survives a reload"
        assert kept["slo_cost"] is not derivers["slo_cost"]
        agent.collectors.ctx.config = parse_config('[collectors.nvml]\nxid_events = false\n')
        agent.collectors.build_fixed(previous=old)
        assert agent.collectors.fixed["nvml"] is not nvml, "its section changed: rebuilt"
    finally:
        agent.close(drain=0)


def test_a_reload_rebuilds_each_targets_collectors_when_their_sections_changed(tmp_path):
    """[probes], [bench], [[quality]] and [health] apply on a reload, not only after a restart."""
    from agent.config import parse_config
    from agent.perf.collector import PerfCollector

    base = BASE + '[discovery]\nenabled = false\n[[targets]]\nname = "t"\nurl = "http://127.0.0.1:1"\n'
    agent = Agent(parse_config(base), state_dir=str(tmp_path))
    try:
        agent.collectors.sync()
        before = next(c for c in agent.runner.collectors if isinstance(c, PerfCollector))
        assert before.interval == 6 * 3600
        new = parse_config(base + '[bench]\ninterval = "2h"\n')
        old, agent.config = agent.config, new
        agent.collectors.ctx.config = new
        agent.collectors.build_fixed(previous=old)
        agent.collectors.sync()
        after = next(c for c in agent.runner.collectors if isinstance(c, PerfCollector))
        assert after is not before and after.interval == 2 * 3600
        assert before._stop.is_set(), "the old one's thread was told to stop"
        same = agent.collectors.targets_now()
        agent.collectors.build_fixed(previous=new)
        agent.collectors.sync()
        assert next(c for c in agent.runner.collectors if isinstance(c, PerfCollector)) is after, "unchanged: kept"
        assert agent.collectors.targets_now() == same
    finally:
        agent.close(drain=0)


def test_freed_memory_goes_back_to_the_kernel_at_most_once_a_minute(monkeypatch):
    from agent import heap

    calls = []
    monkeypatch.setattr(heap, "release_freed_memory", lambda: calls.append(1))
    returner = heap.HeapReturner()
    assert [returner.tick(t) for t in (0.0, 5.0, 59.0, 60.0, 65.0, 120.5)] == [True, False, False, True, False, True]
    assert len(calls) == 3
    heap.limit_malloc_arenas()  # real glibc here, or a no-op: never raises


def test_releasing_freed_memory_gives_pages_back():
    """malloc_trim for real: a freed block in the middle of the heap stops counting as resident."""
    import psutil

    from agent import heap

    if heap._libc() is None:
        pytest.skip("no glibc here")

    keep, drop = [], []
    for _ in range(2000):  # 64 KiB blocks (under glibc's mmap threshold: heap), kept ones pinning the top
        drop.append(bytearray(64 << 10))
        keep.append(bytearray(64))
    before = psutil.Process().memory_info().rss
    del drop
    heap.release_freed_memory()
    after = psutil.Process().memory_info().rss
    assert after < before - (64 << 20), (before >> 20, after >> 20)


def test_sigterm_always_ends_the_process_even_when_a_cycle_is_stuck():
    """Issue 27: after a kernel-log flood no cycle ran for 85 s and SIGTERM did not stop the
    agent. Whatever the cycle does, the process exits drain + grace seconds after the signal."""
    import signal
    import threading
    import time

    from agent.daemon import install_signals

    class Stuck:  # an agent whose loop never gets back to look at its stop flag
        stopped = False

        def stop(self):
            self.stopped = True

    exited = threading.Event()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        agent = Stuck()
        install_signals(agent, drain=0.1, exit_now=lambda code: exited.set(), grace=0.2)
        start = time.monotonic()
        signal.raise_signal(signal.SIGTERM)
        assert exited.wait(5) and agent.stopped
        assert time.monotonic() - start < 2
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
