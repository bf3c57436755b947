"""The wheel carries what the agent reads at run time (the default rules), so the quick start's
non-editable install works, not only the tests' editable one."""

import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wheel_contains_the_default_rules(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), ROOT],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "agent/rules/defaults.toml" in names
    assert "agent/cli.py" in names and not any(n.startswith("tests/") for n in names)
