"""Prometheus rule files and promtool's unit-test files, checked against promtool itself:
`llm-agent rules check` must reach promtool's verdict on every file (and say file:line), and
`llm-agent rules test` the same verdict as `promtool test rules` on the same test files."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from tests.support.peers import promtool_path

ROOT = Path(__file__).parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "rulefiles"
BAD = sorted((FIXTURES / "bad").glob("*.yml"))
UNIT_TESTS = sorted(FIXTURES.glob("*_test*.yml")) + sorted((FIXTURES / "unittests").glob("*_test.yml"))


def agent(*args):
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120)


def promtool(*args):
    return subprocess.run([promtool_path(), *args], capture_output=True, text=True, timeout=120)


def test_a_good_rule_file_passes_both():
    assert promtool("check", "rules", str(FIXTURES / "rules.yml")).returncode == 0
    out = agent("rules", "check", str(FIXTURES / "rules.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 9 rules found" in out.stdout


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_a_bad_rule_file_fails_both_and_the_agent_names_file_and_line(path):
    assert promtool("check", "rules", str(path)).returncode == 1
    out = agent("rules", "check", str(path))
    assert out.returncode == 1
    assert f"{path}:" in out.stdout  # file:line
    line = out.stdout.split(f"{path}:", 2)[-1].split(":", 1)[0]
    assert line.isdigit()


def test_a_range_vector_rule_is_refused_at_load_where_promtool_waits_for_evaluation():
    # promtool accepts it and every evaluation fails; the agent says so before the first one
    assert promtool("check", "rules", str(FIXTURES / "matrix_expr.yml")).returncode == 0
    out = agent("rules", "check", str(FIXTURES / "matrix_expr.yml"))
    assert out.returncode == 1 and "must be an instant vector or a scalar" in out.stdout


@pytest.mark.parametrize("path", UNIT_TESTS, ids=[p.stem for p in UNIT_TESTS])
def test_unit_test_files_get_promtools_verdict_and_words(path):
    # a drop-in: the same exit code, and the same text on the same stream (run from the file's
    # directory with a relative path, so that both print the same name)
    theirs = subprocess.run([promtool_path(), "test", "rules", path.name], cwd=path.parent, capture_output=True,
                            text=True, timeout=120)
    ours = subprocess.run([sys.executable, "-m", "agent.cli", "rules", "test", path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def test_no_file_and_a_missing_file_exit_as_promtool_does(tmp_path):
    for args in ((), (str(tmp_path / "nope.yml"),)):
        theirs, ours = promtool("test", "rules", *args), agent("rules", "test", *args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (1, "")
        assert ours.stderr.replace("llm-agent", "promtool") == theirs.stderr


def test_the_failing_file_really_fails_three_cases():
    ours = agent("rules", "test", str(FIXTURES / "rules_test_failing.yml"))
    assert ours.returncode == 1
    assert ours.stderr.count("alertname:") == 3 and ours.stderr.startswith("  FAILED:\n")


def test_rule_files_in_the_config_resolve_relative_to_it_and_errors_carry_file_line(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text((FIXTURES / "rules.yml").read_text())
    config = tmp_path / "agent.toml"
    config.write_text('[alerting]\nrule_files = ["rules/*.yml"]\n')
    loaded = parse_config(config.read_text(), str(config))
    assert sum(len(g.rules) for g in loaded.rule_groups) == 9
    (rules / "b.yml").write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(up)\n")
    with pytest.raises(ConfigError) as e:
        parse_config(config.read_text(), str(config))
    assert f"{config}:2: alerting.rule_files: {rules / 'b.yml'}:5: groups[0].rules[0].expr: 1:1: parse error: " \
        "expected type range vector" in str(e.value)


def test_a_missing_rule_file_is_an_error_but_an_empty_glob_is_not(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('[alerting]\nrule_files = ["none/*.yml"]\n')
    assert parse_config(config.read_text(), str(config)).rule_groups == ()
    config.write_text('[alerting]\nrule_files = ["missing.yml"]\n')
    with pytest.raises(ConfigError, match="missing.yml: rule file not found"):
        parse_config(config.read_text(), str(config))


def test_export_keeps_everything_loaded_and_promtool_accepts_it(tmp_path):
    config = tmp_path / "agent.toml"
    (tmp_path / "r.yml").write_text((FIXTURES / "rules.yml").read_text())
    config.write_text('[alerting]\nrule_files = ["r.yml"]\n[[recording_rules]]\nrecord = "x:up:sum"\nexpr = "sum(up)"\n')
    out = agent("rules", "export", "--config", str(config), "-o", str(tmp_path / "out.yml"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "out.yml").read_text()
    assert 'record: "x:up:sum"' in text and 'record: "job:http_requests:rate5m"' in text and "alert: \"Flapping\"" in text
    assert promtool("check", "rules", str(tmp_path / "out.yml")).returncode == 0
