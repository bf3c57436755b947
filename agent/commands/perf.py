"""Benchmark commands, through the running agent: `bench` (a run at the target's next idle
moment, then its figures against the baseline) and `baseline record|show|compare`."""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import quote

from ..apiclient import call
from ..perf.book import Comparison, figures_table
from .api import Auth, through_api


@through_api
def bench(args: argparse.Namespace, base: str, auth: Auth) -> int:
    """Ask the running agent to benchmark TARGET at its next idle moment; print the result."""

    before = (call(base, "GET", f"/api/v1/perf?target={quote(args.target)}", auth=auth)["targets"]
              .get(args.target) or {}).get("last_run")
    queued = call(base, "POST", f"/api/v1/perf/bench?target={quote(args.target)}", auth=auth)
    print(f"queued: {args.target} is benchmarked once it has had no request for {queued['idle_for']:g}s "
          f"(a user's request makes it hang up and try again later)", file=sys.stderr)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        time.sleep(2)
        summary = call(base, "GET", f"/api/v1/perf?target={quote(args.target)}", auth=auth)["targets"][args.target]
        run = summary.get("last_run")
        if run and run != before:
            print(_perf_report(args.target, summary))
            return 0 if run["outcome"] == "completed" else 1
    print(f"llm-agent: no run within {args.wait:g}s (is {args.target} ever idle?)", file=sys.stderr)
    return 1


@through_api
def baseline_record(args: argparse.Namespace, base: str, auth: Auth) -> int:
    """The last completed runs of TARGET (or of every target that has one) become its baseline."""
    names = [args.target] if args.target else [
        n for n, summary in sorted(call(base, "GET", "/api/v1/perf", auth=auth)["targets"].items())
        if summary.get("last_completed")]
    if not names:
        print("llm-agent: no target has a completed benchmark yet; run `llm-agent bench NAME`", file=sys.stderr)
        return 1
    for name in names:
        doc = call(base, "POST", f"/api/v1/perf/baseline?target={quote(name)}&last={args.last}", auth=auth)
        print(f"baseline of {name} recorded from {doc['runs']} run(s) for {_env_line(doc['environment'])}:")
        _print_figures(doc["figures"])
    return 0


@through_api
def baseline_show(args: argparse.Namespace, base: str, auth: Auth) -> int:
    for name, summary in _summaries(args, base, auth):
        b = summary.get("baseline")
        print(f"{name}: {_env_line(summary['environment'])}")
        if b is None:
            print("  no baseline yet for this environment")
            continue
        print(f"  {b['how']} from {b['runs']} run(s):")
        _print_figures(b["figures"])
    return 0


def _print_figures(figures: dict) -> None:
    for fig, value in figures.items():
        print(f"  {fig:34s} {value:.4g}")


@through_api
def baseline_compare(args: argparse.Namespace, base: str, auth: Auth) -> int:
    for name, summary in _summaries(args, base, auth):
        print(_perf_report(name, summary))
    return 0


def _summaries(args: argparse.Namespace, base: str, auth: Auth) -> list:
    path = "/api/v1/perf" + (f"?target={quote(args.target)}" if args.target else "")
    return sorted(call(base, "GET", path, auth=auth)["targets"].items())


def _env_line(env: dict) -> str:
    return ", ".join(f"{k} {env.get(k) or '?'}" for k in ("model", "build", "gpu", "driver"))


def _perf_report(name: str, summary: dict) -> str:

    run = summary.get("last_run") or {}
    lines = [f"{name}: {_env_line(summary['environment'])}"]
    if run:
        lines.append(f"  last run: {run['outcome']}" + (f" ({run['detail']})" if run.get("detail") else "") +
                     f"; cost {run['tokens']} tokens, {run['seconds']:.1f} s")
        if run.get("fitted"):
            lines.append(f"  {run['fitted']}")
    rows = figures_table([Comparison(**c) for c in summary.get("comparison") or []])
    if rows:
        lines.append(f"  {'figure':34s} {'now':>10s} {'baseline':>10s}  change")
        lines += [f"  {f:34s} {cur:>10s} {b:>10s}  {ch}" for f, cur, b, ch in rows]
    elif summary.get("last_completed"):
        lines += [f"  {k:34s} {v:.4g}" for k, v in summary["last_completed"]["figures"].items()]
        lines.append("  no baseline yet for this environment")
    change = summary.get("last_change")
    if change:
        lines.append(f"  changed: {change['what']}")
    q = summary.get("quality")
    if q:
        lines.append(f"  quality: {q['score']:.0%} of {len(q['cases'])} case(s)" +
                     (f" (baseline {summary['quality_baseline']:.0%})" if summary.get("quality_baseline") is not None else ""))
    return "\n".join(lines)
