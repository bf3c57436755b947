"""Shared fixtures: the tiny model, a real llama-server, and the golden-file switch."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.peers import LlamaServer  # noqa: E402
from tests.support.tinymodel import write_tiny_llama  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return write_tiny_llama(str(tmp_path_factory.mktemp("model") / "tiny.gguf"))


@pytest.fixture
def llama_server(tiny_model, tmp_path):
    server = LlamaServer(tiny_model, log_dir=str(tmp_path)).start()
    yield server
    server.kill()


def _factory(build, stop):
    """A fixture's maker: `make(...)` builds with `build` and remembers; `stop_all()` stops each."""
    made = []

    def make(*args, **kwargs):
        made.append(build(*args, **kwargs))
        return made[-1]

    def stop_all():
        for thing in reversed(made):
            stop(thing)

    return make, stop_all


@pytest.fixture
def receivers():
    """Make local receivers (Slack, PagerDuty, webhook tables); all are closed after the test."""
    from tests.support.receivers import Receiver

    make, stop_all = _factory(lambda table, mode="ok": Receiver(table, mode), lambda r: r.close())
    yield make
    stop_all()


@pytest.fixture
def daemon(tmp_path):
    """Start the real daemon (`llm-agent run`) against a flapping target: `daemon(channel_toml,
    state_dir=None, interval="300ms")` returns (AgentProcess, Flapper); both stop after the test."""
    from tests.support.agentproc import new_agent

    def build(channel, state_dir=None, interval="300ms", workdir=None):
        return new_agent(workdir or tmp_path, channel, state_dir=state_dir, interval=interval)

    def stop(pair):
        agent, flapper = pair
        agent.stop()
        agent.kill()
        flapper.close()

    make, stop_all = _factory(build, stop)
    yield make
    stop_all()


@pytest.fixture
def serving(tmp_path):
    """`serving(config, **exporter_args)`: an agent serving in a thread (support/running.py);
    every one started is stopped after the test, and its state lives in tmp_path."""
    from itertools import count

    from tests.support.running import Running

    n = count()
    make, stop_all = _factory(lambda config, nvml=None, **exporter_args: Running(
        config, str(tmp_path / f"state{next(n)}"), nvml, **exporter_args), lambda r: r.stop())
    yield make
    stop_all()


@pytest.fixture
def prometheus(tmp_path):
    """`prometheus(targets, interval="1s")`: a real Prometheus (support/peers.py), stopped after the test."""
    from tests.support.peers import Prometheus

    def build(targets, interval="1s", config_text=None):
        prom = Prometheus(targets, str(tmp_path), interval=interval)
        if config_text is not None:
            with open(prom.config, "w") as f:
                f.write(config_text)
        return prom.start()

    make, stop_all = _factory(build, lambda prom: prom.stop())
    yield make
    stop_all()


@pytest.fixture
def utc(monkeypatch):
    """The host's time zone is UTC for the test (reports and schedules work in local time)."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by selenium (chromium-driver); its console log kept."""
    import shutil

    from tests.support.peers import require

    path = shutil.which("chromedriver")
    require("chromium-driver", path is not None and shutil.which("chromium") is not None,
            "apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(path), options=options)
    driver.set_script_timeout(20)
    yield driver
    driver.quit()
