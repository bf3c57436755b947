"""Build the rule set from the shipped defaults, the configuration and Prometheus rule files.

A [[rules]] entry overrides the default of the same name, [alerting] disable drops defaults by
name. Evaluation order: [[recording_rules]] first (in order, so alert rules read this cycle's
results), then the alert rules, then each rule file's groups in file order, each group's rules
in order at the group's own interval."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Tuple

from ..config import Config, InhibitSettings, RuleSettings, parse_config
from ..config.load import DEFAULT_RULES_PATH
from ..timefmt import format_duration
from ..promql.parser import parse, parse_matcher
from ..templates import Template
from .engine import Group, InhibitRule, RecordingRule, Rule

if TYPE_CHECKING:  # rule files (and PyYAML) are loaded only where rule_files are configured
    from ..rulefile import FileRule, RuleGroup

log = logging.getLogger(__name__)
DEFAULTS = "defaults.toml"


def default_rules_config() -> Config:
    """The shipped defaults, validated like any config file."""
    with open(DEFAULT_RULES_PATH, encoding="utf-8") as f:
        text = f.read()
    return parse_config(text, f"agent/rules/{DEFAULTS}")


def _split_labels(labels: Dict[str, str], name: str) -> Tuple[Dict[str, str], Dict[str, Template]]:
    templates = {k: Template(v, _template_name(name)) for k, v in labels.items() if "{{" in v}
    return {k: v for k, v in labels.items() if k not in templates}, templates


def _template_name(rule: str) -> str:
    return "__alert_" + rule  # Prometheus' name for a rule's templates: its errors quote it


def build_rule(doc: RuleSettings) -> Rule:
    labels, templates = _split_labels(doc.labels, doc.name)
    return Rule(name=doc.name, expr=parse(doc.expr), for_=doc.for_, keep_firing_for=doc.keep_firing_for,
                cooldown=doc.cooldown, severity=doc.severity, labels=labels, label_templates=templates,
                annotations={k: Template(v, _template_name(doc.name)) for k, v in doc.annotations.items()})


def build_file_rule(rule: FileRule, key: str):
    if rule.record:
        return RecordingRule(rule.record, parse(rule.expr), dict(rule.labels), key=key)
    labels, templates = _split_labels(dict(rule.labels), rule.alert)
    return Rule(name=rule.alert, expr=parse(rule.expr), for_=rule.for_, keep_firing_for=rule.keep_firing_for,
                cooldown=0.0, severity=None, labels=labels, label_templates=templates,
                annotations={k: Template(v, _template_name(rule.alert)) for k, v in rule.annotations}, key=key)


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
        if d.cooldown > 0:
            log.warning("rule %s: `cooldown` is deprecated: repeats are set per channel now ([[notify]] "
                        "repeat_interval, default 4h); it still re-notifies this rule every %gs", d.name, d.cooldown)
    inhibits.extend(config.inhibit)
    return list(docs.values()), inhibits


@dataclass
class RuleSet:
    groups: List[Group]
    inhibit: List[InhibitRule] = field(default_factory=list)

    @property
    def alerts(self) -> List[Rule]:
        return [r for g in self.groups for r in g.rules if isinstance(r, Rule)]

    @property
    def records(self) -> List[RecordingRule]:
        return [r for g in self.groups for r in g.rules if isinstance(r, RecordingRule)]


def file_groups(groups: Tuple[RuleGroup, ...]) -> List[Group]:
    """Engine groups for the rule files' groups. A rule's state is keyed by file, group, name
    and which of that name it is (as Prometheus carries state over a reload), not by position:
    adding a rule above it must not resolve and re-page its alerts."""
    out = []
    for group in groups:
        seen: Dict[str, int] = {}
        rules = []
        for r in group.rules:
            name = r.alert or r.record
            seen[name] = seen.get(name, 0) + 1
            rules.append(build_file_rule(r, f"{group.file}:{group.name}:{name}#{seen[name]}"))
        out.append(Group(f"{group.file};{group.name}", rules, group.interval, group.limit))
    return out


def slow_groups(docs: List[RuleSettings]) -> List[Group]:
    """A group per rule with an `interval`, the rules of one interval at evenly spread offsets:
    twenty rules every 30s cost a few of them per 5-second cycle, not all of them every sixth."""
    by_interval: Dict[float, List[RuleSettings]] = {}
    for d in docs:
        by_interval.setdefault(d.interval, []).append(d)
    return [Group(f"rules@{format_duration(interval)}/{d.name}", [build_rule(d)], interval, offset=interval * i / len(same))
            for interval, same in by_interval.items() for i, d in enumerate(same)]


def load_rules(config: Config) -> RuleSet:
    docs, inhibits = rule_docs(config)
    records = [RecordingRule(d.record, parse(d.expr), dict(d.labels)) for d in config.recording_rules]
    groups = [Group("recording_rules", list(records)), Group("rules", [build_rule(d) for d in docs if not d.interval])]
    groups += slow_groups([d for d in docs if d.interval])
    groups += file_groups(config.rule_groups)
    inhibit = [InhibitRule(tuple(parse_matcher(m) for m in d.source_matchers),
                           tuple(parse_matcher(m) for m in d.target_matchers), tuple(d.equal))
               for d in inhibits]
    return RuleSet([g for g in groups if g.rules], inhibit)


__all__ = ["RuleSet", "load_rules", "rule_docs", "default_rules_config", "build_rule"]
