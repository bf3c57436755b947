"""The distributions: `python -m build` makes an sdist and a wheel without warnings; the wheel
carries what the agent reads at run time (the default rules), the sdist the example config and
contrib/, so the quick start's non-editable install works, not only the tests' editable one."""

import os
import subprocess
import sys
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_build_sdist_and_wheel(tmp_path):
    out = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(tmp_path), ROOT],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # "byte-compiling is disabled" only echoes PYTHONDONTWRITEBYTECODE from the environment
    log = "\n".join(line for line in (out.stdout + out.stderr).lower().splitlines() if "byte-compiling is disabled" not in line)
    assert "warning" not in log and "deprecated" not in log, log[-2000:]
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "agent/rules/defaults.toml" in names
    assert "agent/cli.py" in names and not any(n.startswith("tests/") for n in names)
    (sdist,) = [p for p in os.listdir(tmp_path) if p.endswith(".tar.gz")]
    members = {m.split("/", 1)[1] for m in tarfile.open(tmp_path / sdist).getnames() if "/" in m}
    for wanted in ("agent.toml.example", "contrib/systemd/llm-agent.service", "contrib/grafana/llm-agent-host.json",
                   "contrib/prometheus/llm-agent-rules.yml", "packaging/build-deb"):
        assert wanted in members, wanted
