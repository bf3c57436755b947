"""The .deb: built by packaging/build-deb, installed with dpkg, run, checked, purged.

Needs root and Debian's tools (CI runs as root); skipped elsewhere unless peers are required.
"""

import os
import re
import shutil
import subprocess

import pytest

from tests.support.peers import require

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = "/lib/systemd/system/llm-agent.service"


def run(*cmd, check=True, timeout=300):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    require("dpkg-deb", shutil.which("dpkg-deb") is not None, "apt-get install dpkg")
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root")
    out = tmp_path_factory.mktemp("deb")
    path = run(os.path.join(ROOT, "packaging", "build-deb"), str(out)).stdout.strip().splitlines()[-1]
    run("dpkg", "--purge", "llm-agent", check=False)
    yield path
    run("dpkg", "--purge", "llm-agent", check=False)


def test_install_run_and_purge(deb):
    info = run("dpkg-deb", "--info", deb).stdout
    assert "Package: llm-agent" in info and "/etc/llm-agent/agent.toml" in run("dpkg-deb", "--info", deb, "conffiles").stdout
    run("dpkg", "-i", deb)
    assert run("/usr/bin/llm-agent", "--version").stdout.strip() == "llm-agent 0.1.0"
    check = run("/usr/bin/llm-agent", "check", "--json", check=False)
    assert check.returncode in (0, 1, 2) and '"status"' in check.stdout
    assert run("/usr/bin/llm-agent", "config", "validate", "/etc/llm-agent/agent.toml").returncode == 0
    assert os.path.exists(UNIT) and "Type=notify" in open(UNIT).read()
    assert run("getent", "passwd", "llm-agent").returncode == 0
    if shutil.which("systemd-analyze"):
        verify = run("systemd-analyze", "verify", UNIT, check=False)
        assert verify.returncode == 0, verify.stderr
        security = run("systemd-analyze", "security", "--offline=true", UNIT, check=False).stdout
        score = float(re.search(r"Overall exposure level for llm-agent.service: ([\d.]+)", security).group(1))
        assert score <= 2.5, security
    run("dpkg", "--purge", "llm-agent")
    assert not os.path.exists("/opt/llm-agent") and not os.path.exists(UNIT)
    assert run("getent", "passwd", "llm-agent", check=False).returncode != 0
