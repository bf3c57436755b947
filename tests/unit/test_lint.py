"""The code stays clean: ruff (pyflakes, pycodestyle, bugbear) and mypy, as configured in
pyproject.toml, run as part of the test command that CI and a newcomer run."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tool(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        if os.environ.get("LLM_AGENT_REQUIRE_PEERS") == "1":
            pytest.fail(f"{name} is not installed (scripts/bootstrap --test installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def test_ruff_is_clean():
    r = subprocess.run([tool("ruff"), "check", "agent", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean():
    r = subprocess.run([tool("mypy"), "agent"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
