"""`llm-agent rules export|check|test`: the loaded rules as a Prometheus rule file, rule files
checked as promtool checks them, and promtool's unit tests on the agent's engine."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Tuple

from ..config import Config
from ..perf.anomaly import load_history_rules
from ..promql.reach import reach_problem
from ..rulefile import FileRule, RuleFileError, count_rules, load_file
from ..rules.export import export_rules
from ..rules.loader import rule_docs
from ..rules.unittest import run as run_tests
from ..templates import Template, dry_run_problem


def export(args: argparse.Namespace, config: Config) -> int:
    history = [(h.record, h.expr) for h in load_history_rules()]
    text = export_rules(rule_docs(config)[0], config.recording_rules, config.rule_groups, history=history)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def check(args: argparse.Namespace) -> int:
    """Validate Prometheus rule files as `promtool check rules` does; exit 1 on any problem."""
    status = 0
    for path in args.files:
        print(f"Checking {path}")
        try:
            groups = load_file(path)
        except RuleFileError as e:
            print("  FAILED:")
            for problem in e.problems:
                print(f"{problem}")
            status = 1
            continue
        print(f"  SUCCESS: {count_rules(groups)} rules found")
        for group in groups:  # valid Prometheus, but more than the agent's in-memory history holds by default
            for rule in group.rules:
                reason = reach_problem(rule.expr, args.memory_history)
                if reason:
                    print(f"  note: {rule.where}: {rule.alert or rule.record}: {reason}")
                for where, problem in _template_problems(rule):
                    print(f"  note: {rule.where}: {rule.alert}: {where} fails for every alert, in Prometheus "
                          f"too: {problem}")
    return status


def _template_problems(rule: FileRule) -> List[Tuple[str, str]]:
    """Templates Prometheus accepts at load that fail whenever the alert fires (Go's type rules)."""
    if not rule.alert:
        return []
    out = []
    for kind, pairs in (("label", rule.labels), ("annotation", rule.annotations)):
        for key, text in pairs:
            problem = dry_run_problem(Template(text, "__alert_" + rule.alert))
            if problem:
                out.append((f"{kind} {key}", problem))
    return out


def test(args: argparse.Namespace) -> int:
    """promtool's unit-test files on the agent's engine, a drop-in for `promtool test rules`:
    its streams, its text, its exit codes (1 for a failure, for no file and for a missing one)."""
    if not args.files:
        sys.stderr.write("llm-agent: error: required argument 'test-rule-file' not provided, try --help\n")
        return 1
    for path in args.files:
        if not os.path.exists(path):
            sys.stderr.write(f"llm-agent: error: path '{path}' does not exist, try --help\n")
            return 1
    return run_tests(args.files, sys.stdout, sys.stderr)
