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
