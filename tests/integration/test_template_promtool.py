"""Every template case expanded by promtool (Prometheus 2.42) and by `llm-agent rules test` on
the same rule and test files: the same text, case by case, save the two the agent does
differently on purpose (tests/unit/test_gotemplate.py's KNOWN)."""

import sys

from tests.support.peers import promtool_path
from tests.support.promtool_templates import CASES, agent_render, load_cases, promtool_render
from tests.unit.test_gotemplate import KNOWN


def test_promtool_and_the_agent_expand_every_case_alike():
    promtool_path()  # skips (or fails under LLM_AGENT_REQUIRE_PEERS) without promtool
    cases = load_cases(CASES)
    theirs = promtool_render(cases)
    ours = agent_render(cases, [sys.executable, "-m", "agent.cli"])
    differ = [(c[0], t, o) for c, t, o in zip(cases, theirs, ours) if t != o and c[0] not in KNOWN]
    agree = sum(1 for t, o in zip(theirs, ours) if t == o)
    print(f"template cases: {agree} of {len(cases)} agree; known differences: {len(KNOWN)}")
    assert differ == []
    assert agree >= len(cases) - len(KNOWN)
