"""`llm-agent check`: one pass over GPUs, targets and host, and the running agent's verdict."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..check import build_report, exit_code, render_report, running_agent, use_color, with_running_agent
from ..config import Config
from ..daemon import Agent
from ..rules.loader import load_rules
from ..serve.health import rule_findings


def check(args: argparse.Namespace, config: Config) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    agent = Agent(config, alerting=False)
    try:
        snapshots = [agent.cycle()]
        if any(s.value for s in snapshots[0].samples("llm_agent_target_up")) and args.sample > 0:
            time.sleep(args.sample)  # a second pass turns token counters into rates
            snapshots.append(agent.cycle())
    finally:
        agent.close()
    snapshot = snapshots[-1]
    ruleset = load_rules(config)
    covered = sorted({p.subject for p in snapshot.problems})
    findings = rule_findings([r for g in ruleset.groups for r in g.rules], ruleset.inhibit, snapshots, covered)
    report = with_running_agent(build_report(snapshot, config.hostname, config.source, findings),
                                running_agent(config.exporter.listen, bool(config.exporter.tls_cert_file)))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_report(report, color=use_color(sys.stdout)))
    return exit_code(report)
