"""Benchmark (issue 28): what expanding one annotation costs, with Go's whole template language.

For every template of the default rules and of the first 100 community alert rules
(tests/fixtures/community-rules/), the time of one expansion (median of N, warm, for an alert
carrying every label the template reads), then the median and p95 over the templates; beside
it the same default templates through the subset renderer the agent had before (read from git
at the commit named by --before), as the peer run in the same process. Annotations are
expanded when an alert's value moves, not every cycle, so this is paid per change.

    python tests/bench/bench_templates.py [--runs 200] [--before b15280b]
"""

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.rulefile import load_file  # noqa: E402
from agent.rules.loader import default_rules_config, rule_docs  # noqa: E402
from agent.templates import Context, Template  # noqa: E402
from tests.bench.common import pct  # noqa: E402

LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
CONTEXT = Context({"Hostname": "gpu-1"}, "http://gpu-1:9400/", lambda q: [({"__name__": "up", "job": "x"}, 1.0)])


def _labels(text):
    return {"__name__": "x", "instance": "host:9100", "job": "node", "server": "llama", "gpu": "0",
            **{name: "1" for name in LABEL.findall(text)}}


def _time_one(render, runs):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        render()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _default_texts():
    docs, _ = rule_docs(default_rules_config())
    return [text for d in docs for text in list(d.annotations.values()) + list(d.labels.values()) if "{{" in text]


def _community_texts(limit=100):
    texts, rules = [], 0
    for path in sorted((Path(ROOT) / "tests" / "fixtures" / "community-rules").glob("*/*.yml")):
        for group in load_file(str(path)):
            for rule in group.rules:
                if rule.alert and rules < limit:
                    rules += 1
                    texts.extend(v for _, v in [*rule.annotations, *rule.labels] if "{{" in v)
    return texts, rules


def measure(texts, runs):
    per = []
    for text in texts:
        template = Template(text, "__alert_Bench")
        labels = _labels(text)
        per.append(_time_one(lambda t=template, ls=labels: t.render(ls, 1234.5, CONTEXT), runs))
    return per


def old_renderer(commit):
    """The agent's templates.py at `commit`, loaded as a module of its own."""
    source = subprocess.run(["git", "show", f"{commit}:agent/templates.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "old_templates.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("old_templates", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def show(name, per):
    us = [s * 1e6 for s in per]
    print(f"{name}: {len(us)} templates; per expansion median {statistics.median(us):.1f} us, "
          f"p95 {pct(us, 95):.1f} us, max {max(us):.1f} us")
    return statistics.median(us)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--before", default="b15280b", help="a commit whose templates.py is the subset renderer")
    args = ap.parse_args()
    defaults = _default_texts()
    community, rules = _community_texts()
    now = show("default rules (Go templates)", measure(defaults, args.runs))
    show(f"{rules} community alert rules (Go templates)", measure(community, args.runs))
    old = old_renderer(args.before)
    per = []
    for text in defaults:
        template = old.Template(text)
        labels = _labels(text)
        per.append(_time_one(lambda t=template, ls=labels: t.render(ls, 1234.5), args.runs))
    before = show(f"default rules (the subset renderer at {args.before})", per)
    print(f"ratio Go templates / subset renderer (median, default rules): {now / before:.2f}x")


if __name__ == "__main__":
    main()
