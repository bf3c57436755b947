"""The docs are checked against the code, so they cannot drift again (issue 26: the README said
33 default rules in one place, 51 in another, 32 in a third; `--help` listed the commands twice
and left `report` out): counts, commands and endpoints named where they are; the reference
pages made from the code are current; the README stays a guide (under 15 KB) whose links lead
somewhere."""

import re
from pathlib import Path

from agent.cli import parser as _parser
from agent.commands import COMMANDS
from agent.config import default_config
from agent.rules.loader import load_rules
from agent.serve.exporter import COUNTED_PATHS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def commands():
    return {c.name.split()[0] for c in COMMANDS}


def test_every_number_of_rules_the_readme_states_is_the_number_shipped():
    shipped = len(load_rules(default_config()).alerts)
    stated = [int(n) for n in re.findall(r"\b(\d+) (?:default (?:alert )?rules|alert rules)\b", DOCS)]
    stated += [int(n) for n in re.findall(r"default rules \((\d+)\)", DOCS)]
    assert all(n == shipped for n in stated), (stated, shipped)


def test_the_readme_names_only_real_commands_and_the_reference_has_them_all():
    named = set(re.findall(r"`llm-agent ([a-z-]+)", README))
    assert named and named <= commands()
    reference = (ROOT / "docs" / "commands.md").read_text()
    assert {c.name for c in COMMANDS} == set(re.findall(r"^## `llm-agent ([a-z -]+)`", reference, re.M))


def test_help_lists_each_command_once_with_what_it_does():
    text = _parser().format_help()
    for name in commands():
        assert len(re.findall(rf"^    {re.escape(name)}\b", text, re.M)) == 1, name
    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert all(action.help for action in sub._choices_actions), "every command says what it does"


def test_every_endpoint_the_exporter_serves_is_in_the_readme():
    for path in COUNTED_PATHS:  # the query API's endpoints are listed as `/api/v1/query`, `query_range`, ...
        named = (f"`{path}", f"`{path.rsplit('/', 1)[1]}`", f" {path}`")  # `GET/POST /api/v2/silences`
        assert any(n in DOCS for n in named) or path == "/", path


def test_the_generated_reference_pages_are_current():
    from tests.support.docpages import pages

    for path, text in pages().items():
        assert (ROOT / path).read_text() == text, f"{path} is stale: python -m tests.support.docpages"


def test_the_readme_is_a_guide_and_its_links_lead_somewhere():
    assert len(README.encode()) < 15_000, len(README.encode())
    for page in [README] + [p.read_text() for p in (ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page):
            base = ROOT if page is README else ROOT / "docs"
            assert (base / target).exists(), target
