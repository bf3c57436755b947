"""The alert quality matrix (issue 26): every default rule fires on its scenario and not on its
near miss; every default rule has a case; docs/alert-quality.md is the current table."""

from pathlib import Path

import pytest

from agent.config import default_config
from agent.rules.loader import load_rules
from tests.support.alert_matrix import CASES, PAGE, page, run

ROOT = Path(__file__).resolve().parents[2]


def test_every_default_rule_has_a_case():
    assert sorted(c.rule for c in CASES) == sorted(r.name for r in load_rules(default_config()).alerts)


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_fires_on_its_scenario(case):
    assert run(case.rule, case.fires), case.fires.what


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_never_fires_on_its_near_misses(case):
    for miss in case.near_misses:
        assert not run(case.rule, miss), miss.what


def test_the_page_is_current():
    assert (ROOT / PAGE).read_text() == page(), "python -m tests.support.alert_matrix rewrites it"
