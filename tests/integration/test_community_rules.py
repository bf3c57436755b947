"""Rule files from the wild: every one promtool accepts loads in the agent (`rules check`) and
every rule in it evaluates on the agent's engine, templates included, without an error.

The files (tests/fixtures/community-rules/, sources and licences in its README) are the
largest public collection of community rules: 112 files for 80+ exporters."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.rules.engine import Engine
from agent.rules.history import History
from agent.rules.loader import file_groups
from agent.rulefile import load_file
from agent.templates import Context
from tests.support.peers import promtool_path

COMMUNITY = Path(__file__).parent.parent / "fixtures" / "community-rules"
FILES = sorted(COMMUNITY.glob("*/*.yml"))


def test_promtool_and_the_agent_accept_every_file():
    promtool = subprocess.run([promtool_path(), "check", "rules", *map(str, FILES)], capture_output=True, text=True,
                              timeout=300)
    ours = subprocess.run([sys.executable, "-m", "agent.cli", "rules", "check", *map(str, FILES)], capture_output=True,
                          text=True, timeout=300)
    accepted_by_promtool = promtool.stdout.count("SUCCESS")
    accepted_by_agent = ours.stdout.count("SUCCESS")
    print(f"community rule files: promtool accepts {accepted_by_promtool} of {len(FILES)}, "
          f"the agent {accepted_by_agent} of {accepted_by_promtool}")
    assert len(FILES) >= 112
    assert accepted_by_promtool == len(FILES)
    assert (ours.returncode, accepted_by_agent) == (0, accepted_by_promtool), ours.stdout[-3000:]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_rule_evaluates_and_renders(path):
    groups = load_file(str(path))
    history = History(keep_all=True)
    # one sample for every metric name the rules read, so that comparisons produce alerts and
    # every annotation is rendered at least where its rule's expression can yield a sample
    engine = Engine(file_groups(groups), history, no_data_timeout=1e-9, step=60.0)
    for t in (0.0, 60.0, 120.0):
        engine.evaluate(t)
    assert engine.failures == {}, engine.last_error
    # and every template of every alert rule expands for an alert carrying each label it reads
    for rule in engine.rules:
        for template in [*getattr(rule, "annotations", {}).values(), *getattr(rule, "label_templates", {}).values()]:
            labels = {name: "1" for name in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", template.text)}
            template.render({"__name__": "x", "instance": "host:9100", "job": "j", **labels}, 42.0,
                            Context({"Hostname": "h"}, "http://h:9400/", lambda q: []))


def test_every_file_loads_in_the_agents_config_and_evaluates_in_the_daemons_engine(tmp_path):
    from agent.config import parse_config
    from agent.rules.loader import load_rules

    config = tmp_path / "agent.toml"
    files = ", ".join(f'"{p}"' for p in FILES)
    # eight rules read 1d to 1w back: past the default in-memory history (7h), they load once it
    # is raised, as `rules check` notes for each
    config.write_text(f'[alerting]\ndefault_rules = false\nmemory_history = "8d"\nrule_files = [{files}]\n')
    loaded = parse_config(config.read_text(), str(config))
    ruleset = load_rules(loaded)
    rules = [r for g in ruleset.groups for r in g.rules]
    assert len(rules) == 954
    engine = Engine(ruleset.groups, History(), no_data_timeout=600.0, step=5.0)
    for t in (0.0, 5.0, 10.0):
        engine.evaluate(t)
    assert engine.failures == {}, engine.last_error
