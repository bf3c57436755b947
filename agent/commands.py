"""The smaller `llm-agent` subcommands: rules export, test-alert, stacks, reload, report, silence,
maintenance. Each takes the parsed arguments and the loaded configuration (cli.main loads it
once)."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import Callable, Optional, Tuple
from urllib.parse import quote

from .config import Config
from .statelock import PIDFILE


def rules_export(args: argparse.Namespace, config: Config) -> int:
    from .perf.anomaly import load_history_rules
    from .rules.export import export_rules
    from .rules.loader import rule_docs

    history = [(h.record, h.expr) for h in load_history_rules()]
    text = export_rules(rule_docs(config)[0], config.recording_rules, config.rule_groups, history=history)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def rules_check(args: argparse.Namespace) -> int:
    """Validate Prometheus rule files as `promtool check rules` does; exit 1 on any problem."""
    from .rulefile import reach_problem
    from .rulefile import RuleFileError, count_rules, load_file

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
    return status


def rules_test(args: argparse.Namespace) -> int:
    """promtool's unit-test files on the agent's engine; exit 1 if any fails."""
    from .rules.unittest import render, run_file

    outcomes = [run_file(path) for path in args.files]
    sys.stdout.write(render(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


def test_alert(args: argparse.Namespace, config: Config) -> int:
    from .alerting import channels_from
    from .notify.base import NotifyError, redact
    from .notify.dispatcher import make_notifier
    from .notify.testalert import test_docs

    channels = {c.name: c for c in channels_from(config)}
    channel = channels.get(args.channel)
    if channel is None:
        known = ", ".join(sorted(channels)) or "none configured"
        print(f"llm-agent: no [[notify]] channel named {args.channel!r} (known: {known})", file=sys.stderr)
        return 2
    notifier = make_notifier(channel, config.alerting.alertmanager_resend)
    for doc in test_docs(config.hostname, resolve=args.resolve):
        try:
            notifier.send([doc])
        except NotifyError as e:
            kind = "would be retried" if e.retryable else "not retryable: fix the channel"
            print(f"llm-agent: test {doc.status} to {channel.name} ({channel.type}) failed: "
                  f"{redact(str(e), channel.secrets())} ({kind})", file=sys.stderr)
            return 1
        print(f"test {doc.status} delivered to {channel.name} ({channel.type})")
    return 0


def stacks(args: argparse.Namespace, config: Config) -> int:
    from .alerting import resolve_state_dir
    from .collectors.process import ProcessCollector
    from .probes.stacks import StackStore

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.which.isdigit():
        pid, name = int(args.which), f"pid-{args.which}"
    else:
        from .discovery import discover_processes, discovered_targets

        # only what this command needs: the targets, as the running agent would find them
        found = config.targets or (discovered_targets(discover_processes(), config.discovery.fallback_url)
                                   if config.discovery.enabled else ())
        targets = {t.name: t for t in found}
        target = targets.get(args.which)
        if target is None:
            print(f"llm-agent: no target named {args.which!r} (known: {', '.join(sorted(targets)) or 'none'})", file=sys.stderr)
            return 2
        proc = ProcessCollector(target.name, target.url).current()
        if proc is None:
            print(f"llm-agent: no process found listening for {target.name} ({target.url})", file=sys.stderr)
            return 1
        pid, name = proc.pid, target.name
    try:
        state_dir = resolve_state_dir(config)
    except OSError:
        state_dir = "/tmp"
    result = StackStore(state_dir, config.health.py_spy_timeout).take_now(name, pid, "llm-agent stacks")
    if result.error:
        print(f"llm-agent: {result.error}", file=sys.stderr)
        return 1
    print(result.text.rstrip())
    print(f"\nsummary: {result.summary}\nsaved to {result.path}")
    return 0


def reload(args: argparse.Namespace, config: Config) -> int:
    import signal

    import psutil

    from .alerting import resolve_state_dir

    pidfile = os.path.join(resolve_state_dir(config), PIDFILE)
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        proc = psutil.Process(pid)
        if not any("llm-agent" in part or "agent.cli" in part for part in proc.cmdline()):
            raise psutil.NoSuchProcess(pid)
    except (OSError, ValueError, psutil.Error):
        print(f"llm-agent: no running agent found (no live pid in {pidfile}); under systemd use "
              "`systemctl reload llm-agent`", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGHUP)
    print(f"reload requested (pid {pid}); a rejected config is logged and the old one keeps running")
    return 0


def report(args: argparse.Namespace, config: Config) -> int:
    """`llm-agent report`: read the history file (beside a running agent, read-only) and render."""
    import sqlite3
    import time
    from datetime import datetime

    from .alerting import resolve_state_dir
    from .report.compute import Period, Reporter
    from .report.render import render
    from .tsdb.recorder import retention_of
    from .tsdb.store import FILE_NAME, HistoryStore

    def when(text: Optional[str], default: float) -> float:
        if not text:
            return default
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise SystemExit(f"llm-agent report: cannot read {text!r} as a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None

    now = time.time()
    end = when(args.end, now)
    start = when(args.start, end - args.since)
    if end <= start:
        print("llm-agent report: the period ends before it starts", file=sys.stderr)
        return 2
    path = os.path.join(config.agent.state_dir, FILE_NAME)
    if not os.path.exists(path):  # the agent fell back to another state directory (not root, say)
        path = os.path.join(resolve_state_dir(config), FILE_NAME)
    try:
        store = HistoryStore(path, retention_of(config), readonly=True)
    except sqlite3.Error as e:
        print(f"llm-agent report: {e}", file=sys.stderr)
        return 2
    try:
        doc = Reporter(store, config.slo.availability, config.slo.ttft_seconds, config.hostname).report(Period(start, end))
    finally:
        store.close()
    out = render(doc, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
        print(f"llm-agent report: written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return 0


def _api(args: argparse.Namespace, config: Config):
    """(base URL, auth) of the running agent's API, from --url/--user or the configuration."""
    import getpass

    from .apiclient import local_url

    base = (args.url or local_url(config.exporter.listen, bool(config.exporter.tls_cert_file))).rstrip("/")
    auth = None
    if args.user:
        password = os.environ.get("LLM_AGENT_PASSWORD")
        auth = (args.user, password if password is not None else getpass.getpass(f"password for {args.user}: "))
    return base, auth


def _through_api(command: Callable[[argparse.Namespace, str, Optional[Tuple[str, str]]], int]
                 ) -> Callable[[argparse.Namespace, Config], int]:
    """A subcommand that talks to the running agent's API: it gets the API's base URL and auth,
    and a refused or failed call ends it with the error on stderr and exit status 1."""
    @functools.wraps(command)
    def run(args: argparse.Namespace, config: Config) -> int:
        from .apiclient import ApiError

        base, auth = _api(args, config)
        try:
            return command(args, base, auth)
        except ApiError as e:
            print(f"llm-agent: {e}", file=sys.stderr)
            return 1
    return run


@_through_api
def silence(args: argparse.Namespace, base: str, auth: Optional[Tuple[str, str]]) -> int:
    """silence add|list|expire, through the running agent's Alertmanager API v2."""
    import getpass
    import time as _time

    from .apiclient import call
    from .promql.parser import PromQLError, parse_matcher
    from .timefmt import iso

    if args.silence_command == "add":
        matchers = []
        for text in args.matchers:
            try:
                m = parse_matcher(text)
            except PromQLError as e:
                print(f"llm-agent: {e}", file=sys.stderr)
                return 2
            matchers.append({"name": m.label, "value": m.value, "isRegex": m.op in ("=~", "!~"),
                             "isEqual": m.op in ("=", "=~")})
        now = _time.time()
        author = args.author or os.environ.get("USER") or getpass.getuser()
        doc = {"matchers": matchers, "startsAt": iso(now), "endsAt": iso(now + args.duration),
               "createdBy": author, "comment": args.comment}
        print(call(base, "POST", "/api/v2/silences" + ("?force=1" if args.force else ""), doc, auth)["silenceID"])
        return 0
    if args.silence_command == "expire":
        for sid in args.ids:
            call(base, "DELETE", f"/api/v2/silence/{sid}", auth=auth)
        return 0
    found = call(base, "GET", "/api/v2/silences", auth=auth) or []
    shown = [s for s in found if args.expired or s["status"]["state"] != "expired"]
    print(_silence_table(shown))
    return 0


def _silence_table(silences) -> str:
    if not silences:
        return "no silences"
    ops = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
    rows = [("ID", "STATE", "ENDS", "CREATED BY", "MATCHERS", "COMMENT")]
    for s in silences:
        matchers = " ".join(f'{m["name"]}{ops[(m["isRegex"], m.get("isEqual", True))]}"{m["value"]}"' for m in s["matchers"])
        rows.append((s["id"], s["status"]["state"], s["endsAt"], s["createdBy"], matchers, s["comment"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)


@_through_api
def maintenance(args: argparse.Namespace, base: str, auth: Optional[Tuple[str, str]]) -> int:
    """A maintenance window: a silence of the whole host (or --target's alerts) that also turns
    /healthz to 503 "maintenance" so a load balancer drains the box; --end finishes it early."""
    import time as _time

    from .apiclient import call
    from .notify.silences import MAINTENANCE_AUTHOR, maintenance_silence

    if args.end:
        found = call(base, "GET", "/api/v2/silences", auth=auth) or []
        ended = [s["id"] for s in found if s["createdBy"] == MAINTENANCE_AUTHOR and s["status"]["state"] != "expired"
                 and (not args.target or any(m["name"] == "server" and m["value"] == args.target for m in s["matchers"]))]
        for sid in ended:
            call(base, "DELETE", f"/api/v2/silence/{sid}", auth=auth)
        print(f"ended {len(ended)} maintenance window(s)")
        return 0
    if not args.duration:
        print("llm-agent: maintenance needs --for DURATION (or --end)", file=sys.stderr)
        return 2
    doc = maintenance_silence(args.duration, args.target or "", args.comment or "", _time.time())
    sid = call(base, "POST", "/api/v2/silences?maintenance=1", doc, auth)["silenceID"]
    what = f"target {args.target}'s alerts are" if args.target else "every alert is silenced and /healthz answers 503;"
    print(f"maintenance {sid}: {what} silenced until {doc['endsAt']} (end early: llm-agent maintenance --end)")
    return 0


@_through_api
def bench(args: argparse.Namespace, base: str, auth: Optional[Tuple[str, str]]) -> int:
    """Ask the running agent to benchmark TARGET at its next idle moment; print the result."""
    import time as _time

    from .apiclient import call

    before = (call(base, "GET", f"/api/v1/perf?target={quote(args.target)}", auth=auth)["targets"]
              .get(args.target) or {}).get("last_run")
    queued = call(base, "POST", f"/api/v1/perf/bench?target={quote(args.target)}", auth=auth)
    print(f"queued: {args.target} is benchmarked once it has had no request for {queued['idle_for']:g}s "
          f"(a user's request makes it hang up and try again later)", file=sys.stderr)
    deadline = _time.monotonic() + args.wait
    while _time.monotonic() < deadline:
        _time.sleep(2)
        summary = call(base, "GET", f"/api/v1/perf?target={quote(args.target)}", auth=auth)["targets"][args.target]
        run = summary.get("last_run")
        if run and run != before:
            print(_perf_report(args.target, summary))
            return 0 if run["outcome"] == "completed" else 1
    print(f"llm-agent: no run within {args.wait:g}s (is {args.target} ever idle?)", file=sys.stderr)
    return 1


@_through_api
def baseline(args: argparse.Namespace, base: str, auth: Optional[Tuple[str, str]]) -> int:
    """baseline record|show|compare, through the running agent."""
    from .apiclient import call

    if args.baseline_command == "record":
        names = [args.target] if args.target else [
            n for n, summary in sorted(call(base, "GET", "/api/v1/perf", auth=auth)["targets"].items())
            if summary.get("last_completed")]
        if not names:
            print("llm-agent: no target has a completed benchmark yet; run `llm-agent bench NAME`", file=sys.stderr)
            return 1
        for name in names:
            doc = call(base, "POST", f"/api/v1/perf/baseline?target={quote(name)}&last={args.last}", auth=auth)
            print(f"baseline of {name} recorded from {doc['runs']} run(s) for {_env_line(doc['environment'])}:")
            for fig, value in doc["figures"].items():
                print(f"  {fig:34s} {value:.4g}")
        return 0
    path = "/api/v1/perf" + (f"?target={quote(args.target)}" if args.target else "")
    targets = call(base, "GET", path, auth=auth)["targets"]
    for name, summary in sorted(targets.items()):
        if args.baseline_command == "show":
            b = summary.get("baseline")
            print(f"{name}: {_env_line(summary['environment'])}")
            if b is None:
                print("  no baseline yet for this environment")
                continue
            print(f"  {b['how']} from {b['runs']} run(s):")
            for fig, value in b["figures"].items():
                print(f"  {fig:34s} {value:.4g}")
        else:
            print(_perf_report(name, summary))
    return 0


def _env_line(env: dict) -> str:
    return ", ".join(f"{k} {env.get(k) or '?'}" for k in ("model", "build", "gpu", "driver"))


def _perf_report(name: str, summary: dict) -> str:
    from .perf.book import Comparison, figures_table

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
