"""Build the rule set from the shipped defaults and the configuration: a [[rules]] entry
overrides the default of the same name, [alerting] disable drops defaults by name."""

from __future__ import annotations

from importlib import resources
from typing import Dict, List, Tuple

from ..config import Config, InhibitSettings, RuleSettings, parse_config
from .engine import InhibitRule, Rule
from .parser import parse, parse_matcher
from .templates import Template

DEFAULTS = "defaults.toml"


def default_rules_config() -> Config:
    """The shipped defaults, validated like any config file."""
    text = resources.files(__package__).joinpath(DEFAULTS).read_text(encoding="utf-8")
    return parse_config(text, f"agent/rules/{DEFAULTS}")


def build_rule(doc: RuleSettings) -> Rule:
    templates = {k: Template(v) for k, v in doc.labels.items() if "{{" in v}
    return Rule(name=doc.name, expr=parse(doc.expr), for_=doc.for_, keep_firing_for=doc.keep_firing_for,
                cooldown=doc.cooldown, severity=doc.severity,
                labels={k: v for k, v in doc.labels.items() if k not in templates},
                label_templates=templates,
                annotations={k: Template(v) for k, v in doc.annotations.items()})


def rule_docs(config: Config) -> Tuple[List[RuleSettings], List[InhibitSettings]]:
    """(rule settings, inhibit settings) after defaults, overrides and disabling."""
    docs: Dict[str, RuleSettings] = {}
    inhibits: List[InhibitSettings] = []
    if config.alerting.default_rules:
        defaults = default_rules_config()
        docs.update((d.name, d) for d in defaults.rules)
        inhibits.extend(defaults.inhibit)
    for name in config.alerting.disable:
        docs.pop(name, None)
    for d in config.rules:
        docs[d.name] = d
    inhibits.extend(config.inhibit)
    return list(docs.values()), inhibits


def load_rules(config: Config) -> Tuple[List[Rule], List[InhibitRule]]:
    docs, inhibits = rule_docs(config)
    rules = [build_rule(d) for d in docs]
    inhibit = [InhibitRule(tuple(parse_matcher(m) for m in d.source_matchers),
                           tuple(parse_matcher(m) for m in d.target_matchers), tuple(d.equal))
               for d in inhibits]
    return rules, inhibit
