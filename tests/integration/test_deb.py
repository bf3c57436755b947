"""The .deb: built by packaging/build-deb, installed with dpkg, run, checked, purged, all in a
throwaway root: a private mount namespace whose /etc, /opt, /usr and /var are overlays on
the host's, so dpkg, adduser and postinst do their real work while the host's own files (an
installed agent's /var/lib/llm-agent, its alert state and outbox) are never touched.

Needs root, unshare and overlayfs (CI runs as root); skipped elsewhere unless peers are required.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support.peers import require

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = "/lib/systemd/system/llm-agent.service"
OVERLAID = ("etc", "opt", "usr", "var")


def run(*cmd, check=True, timeout=300):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=check)


def in_throwaway_root(workdir, script: str) -> subprocess.CompletedProcess:
    """Run `script` (bash) where writes to /etc, /opt, /usr and /var land in `workdir`."""
    mounts = []
    for d in OVERLAID:
        upper, work = os.path.join(workdir, d, "upper"), os.path.join(workdir, d, "work")
        os.makedirs(upper)
        os.makedirs(work)
        mounts.append(f"mount -t overlay overlay -o lowerdir=/{d},upperdir={upper},workdir={work} /{d}")
    # as on a fresh machine, Python writes bytecode next to the modules it runs
    body = "set -e\nunset PYTHONDONTWRITEBYTECODE\n" + "\n".join(mounts) + "\n" + script
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", body],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    require("dpkg-deb", shutil.which("dpkg-deb") is not None, "apt-get install dpkg")
    require("unshare", shutil.which("unshare") is not None, "apt-get install util-linux")
    if os.geteuid() != 0:
        pytest.skip("installing a .deb, even into a throwaway root, needs root")
    probe = in_throwaway_root(str(tmp_path_factory.mktemp("probe")), "touch /etc/.llm-agent-probe")
    if probe.returncode != 0:
        pytest.skip(f"no overlay mounts here: {probe.stderr.strip()}")
    assert not os.path.exists("/etc/.llm-agent-probe"), "the throwaway root leaked onto the host"
    out = tmp_path_factory.mktemp("deb")
    return run(os.path.join(ROOT, "packaging", "build-deb"), str(out)).stdout.strip().splitlines()[-1]


def test_install_run_and_purge_in_a_throwaway_root(deb, tmp_path):
    info = run("dpkg-deb", "--info", deb).stdout
    assert "Package: llm-agent" in info and "/etc/llm-agent/agent.toml" in run("dpkg-deb", "--info", deb, "conffiles").stdout
    host_before = {p: os.path.exists(p) for p in ("/opt/llm-agent", "/var/lib/llm-agent", UNIT, "/usr/bin/llm-agent")}
    out = tmp_path / "out"
    out.mkdir()
    analyze = shutil.which("systemd-analyze") is not None
    result = in_throwaway_root(str(tmp_path / "root"), f"""
dpkg -i {deb} > {out}/dpkg-install.txt 2>&1
/usr/bin/llm-agent --version > {out}/version.txt
/usr/bin/llm-agent check --json > {out}/check.json || true
/usr/bin/llm-agent config validate /etc/llm-agent/agent.toml > {out}/validate.txt
test -x /opt/llm-agent/bin/py-spy && echo yes > {out}/py-spy.txt
find /opt/llm-agent -name 'pynvml*.pyc' > {out}/bytecode.txt
find /opt/llm-agent/lib -path '*/agent/__pycache__/daemon*.pyc' >> {out}/bytecode.txt
cp {UNIT} {out}/unit.txt
getent passwd llm-agent > {out}/user.txt
if {str(analyze).lower()}; then
  systemd-analyze verify {UNIT} > {out}/verify.txt 2>&1 || echo "exit $?" >> {out}/verify.txt
  systemd-analyze security --offline=true {UNIT} > {out}/security.txt 2>&1 || true
fi
dpkg --purge llm-agent > {out}/purge.txt 2>&1
for p in /opt/llm-agent {UNIT} /var/lib/llm-agent; do test -e $p && echo "$p" >> {out}/left.txt; done
getent passwd llm-agent >> {out}/left.txt || true
true
""")
    assert result.returncode == 0, result.stderr + (out / "dpkg-install.txt").read_text()
    assert (out / "version.txt").read_text().strip() == "llm-agent 0.1.0"
    assert '"status"' in (out / "check.json").read_text() and json.loads((out / "check.json").read_text())
    assert "valid" in (out / "validate.txt").read_text()
    assert (out / "py-spy.txt").exists(), "the package carries py-spy for `llm-agent stacks` and hang dumps"
    assert len((out / "bytecode.txt").read_text().split()) >= 2, \
        "postinst compiles the bytecode the read-only service cannot write (RSS and start time)"
    assert "Type=notify" in (out / "unit.txt").read_text()
    assert (out / "user.txt").read_text().startswith("llm-agent:")
    if analyze:
        assert "exit" not in (out / "verify.txt").read_text(), (out / "verify.txt").read_text()
        security = (out / "security.txt").read_text()
        score = float(re.search(r"Overall exposure level for llm-agent.service: ([\d.]+)", security).group(1))
        assert score <= 2.5, security
    left = (out / "left.txt").read_text() if (out / "left.txt").exists() else ""
    assert left == "", f"purge left behind: {left}"
    assert {p: os.path.exists(p) for p in host_before} == host_before, "the host was touched"
