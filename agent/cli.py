"""The `llm-agent` command: the parser, `run`, `check` and `config validate` (the smaller
subcommands are in commands.py)."""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import time
from typing import List, Optional

from . import __version__
from .config import Config, ConfigError, load_config, resolve_path

log = logging.getLogger("agent")

EPILOG = """The config is --config FILE, else $LLM_AGENT_CONFIG, else /etc/llm-agent/agent.toml if it
exists, else the embedded defaults."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-agent", description="Monitoring agent for GPU hosts serving LLMs.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"llm-agent {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="collect every interval and serve /metrics")
    run.add_argument("--config", metavar="FILE", help="config file (TOML)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override agent.log_level")
    run.add_argument("--log-format", choices=("auto", "text", "json", "journal"), default="auto",
                     help="auto: journal priorities under systemd (JOURNAL_STREAM), text on a terminal")
    chk = sub.add_parser("check", help="one diagnostic pass; exit 0 ok, 1 warnings, 2 critical")
    chk.add_argument("--config", metavar="FILE", help="config file (TOML)")
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.add_argument("--sample", type=float, default=1.0, metavar="SECONDS",
                     help="gap between the two passes that measure tokens/s (default 1)")
    rules = sub.add_parser("rules", help="alert rule tools")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    export = rules_sub.add_parser("export", help="print the loaded rules as a Prometheus rule file")
    export.add_argument("--config", metavar="FILE", help="config file (TOML)")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    check_files = rules_sub.add_parser("check", help="validate Prometheus rule files (as promtool check rules)")
    check_files.add_argument("files", nargs="+", metavar="FILE")
    check_files.add_argument("--memory-history", type=_duration_arg, default=7 * 3600.0, metavar="DURATION",
                             help="note rules reaching further back than this ([alerting] memory_history; default 7h)")
    test_files = rules_sub.add_parser("test", help="run promtool unit-test files on the agent's engine")
    test_files.add_argument("files", nargs="+", metavar="FILE")
    test = sub.add_parser("test-alert", help="send a test alert through a channel")
    test.add_argument("--config", metavar="FILE", help="config file (TOML)")
    test.add_argument("--channel", required=True, metavar="NAME", help="the [[notify]] channel's name")
    test.add_argument("--resolve", action="store_true", help="send the resolve after the alert")
    stacks = sub.add_parser("stacks", help="dump a Python server's stacks with py-spy")
    stacks.add_argument("which", metavar="TARGET|PID", help="a target name (its port's process) or a pid")
    stacks.add_argument("--config", metavar="FILE", help="config file (TOML)")
    rel = sub.add_parser("reload", help="ask the running agent to re-read its configuration (SIGHUP)")
    rel.add_argument("--config", metavar="FILE", help="config file (TOML); its state_dir holds the pid file")
    rep = sub.add_parser("report", help="availability, latency, tokens, GPUs, incidents and cost from the history")
    rep.add_argument("--config", metavar="FILE", help="config file (TOML); its state_dir holds the history")
    rep.add_argument("--since", type=_duration_arg, default=7 * 86400.0, metavar="DURATION",
                     help="the period up to now (default 7d)")
    rep.add_argument("--from", dest="start", metavar="TIME", help="period start: YYYY-MM-DD[THH:MM], local time")
    rep.add_argument("--to", dest="end", metavar="TIME", help="period end (default now)")
    rep.add_argument("--format", choices=("text", "md", "html", "json"), default="text")
    rep.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    sil = sub.add_parser("silence", help="add, list or expire silences on the running agent")
    sil_sub = sil.add_subparsers(dest="silence_command", metavar="SUBCOMMAND")
    sil_add = sil_sub.add_parser("add", help="silence the alerts matching every MATCHER")
    sil_add.add_argument("matchers", nargs="+", metavar="MATCHER", help='label=value, label!=value, label=~"re", label!~"re"')
    sil_add.add_argument("--for", dest="duration", type=_duration_arg, default=3600.0, metavar="DURATION",
                         help="how long (default 1h)")
    sil_add.add_argument("--comment", required=True, help="why (shown to whoever wonders where the pages went)")
    sil_add.add_argument("--author", help="who (default: $USER)")
    sil_add.add_argument("--force", action="store_true",
                         help="allow a silence that matches every alert of the host (on the host itself, or with "
                              "credentials; `maintenance` is the usual way)")
    sil_list = sil_sub.add_parser("list", help="the silences (active and pending; --expired for all)")
    sil_list.add_argument("--expired", action="store_true", help="show expired ones too")
    sil_exp = sil_sub.add_parser("expire", help="end silences now")
    sil_exp.add_argument("ids", nargs="+", metavar="ID")
    bench = sub.add_parser("bench", help="benchmark a target now (at its next idle moment) and compare with its baseline")
    bench.add_argument("target", metavar="TARGET")
    bench.add_argument("--wait", type=_duration_arg, default=900.0, metavar="DURATION",
                       help="how long to wait for the run (default 15m: it starts once the server is idle)")
    base = sub.add_parser("baseline", help="record, show or compare performance baselines")
    base_sub = base.add_subparsers(dest="baseline_command", metavar="SUBCOMMAND")
    base_rec = base_sub.add_parser("record", help="the last completed benchmarks become the baseline")
    base_rec.add_argument("--last", type=int, default=0, metavar="N", help="how many runs (default [bench] baseline_runs)")
    base_show = base_sub.add_parser("show", help="each target's baseline and environment")
    base_cmp = base_sub.add_parser("compare", help="the last benchmark against the baseline")
    for cmd in (base_rec, base_show, base_cmp):
        cmd.add_argument("target", nargs="?", metavar="TARGET", help="one target (default: every one)")
    mnt = sub.add_parser("maintenance", help="silence the host (or one target) for a while; /healthz answers 503")
    mnt.add_argument("--for", dest="duration", type=_duration_arg, metavar="DURATION", help="how long, e.g. 30m")
    mnt.add_argument("--target", metavar="NAME", help="only this target's alerts (and /healthz?target=NAME)")
    mnt.add_argument("--comment", default="", help="why")
    mnt.add_argument("--end", action="store_true", help="end the maintenance window(s) now")
    for cmd in (sil_add, sil_list, sil_exp, mnt, bench, base_rec, base_show, base_cmp):
        cmd.add_argument("--config", metavar="FILE", help="config file (TOML): where the agent listens")
        cmd.add_argument("--url", help="the agent's URL (default: from [exporter] listen)")
        cmd.add_argument("--user", help="basic auth user (password from $LLM_AGENT_PASSWORD, else asked)")
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    val = cfg_sub.add_parser("validate", help="validate a config file")
    val.add_argument("file", nargs="?", help="config file (default: as for run)")
    return p


def _duration_arg(text: str) -> float:
    from .config.values import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _load(path_arg: Optional[str]):
    path = resolve_path(path_arg)
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"llm-agent: invalid configuration:\n{e}", file=sys.stderr)
        return None


def _setup_logging(level: str, fmt: str = "text") -> None:
    from .logformat import handler_for

    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper()))
    root.addHandler(handler_for(fmt, sys.stderr))


def exporter_security(config):
    """(TLSContext or None, BasicAuth or None) from [exporter]."""
    from .serve.websecurity import BasicAuth, TLSContext

    cert, key = config.exporter.tls_cert_file, config.exporter.tls_key_file
    tls = TLSContext(cert, key, config.exporter.tls_client_ca_file) if cert and key else None
    users = config.exporter.basic_auth_users
    return tls, (BasicAuth(users) if users else None)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    import sqlite3

    from .alerting import resolve_state_dir
    from .daemon import Agent, install_signals
    from .serve.exporter import Exporter, ExporterError
    from .statelock import StateDirInUse, StateLock

    from .heap import limit_malloc_arenas

    limit_malloc_arenas()  # before the exporter's threads allocate
    _setup_logging(args.log_level or config.agent.log_level, args.log_format)
    host, port = config.exporter.listen
    try:
        tls, auth = exporter_security(config)
        exporter = Exporter(host, port, config.exporter.max_threads, config.exporter.request_timeout,
                            config_source=config.source if config.source != "(defaults)" else
                            "a config file given with --config (none is in use: the embedded defaults run)",
                            max_connections=config.exporter.max_connections, tls=tls, auth=auth)
    except (ExporterError, OSError, ssl.SSLError) as e:
        print(f"llm-agent: {e}", file=sys.stderr)
        return 1
    lock = None
    try:
        state_dir = resolve_state_dir(config)
        lock = StateLock(state_dir)  # before the database is opened: a second agent must not touch it
        if auth is not None:
            auth.remember_in(state_dir)  # the addresses that verified before, and their own bcrypt budget
        agent = Agent(config, state_dir=state_dir)
    except (OSError, StateDirInUse, sqlite3.Error) as e:
        print(f"llm-agent: {e}", file=sys.stderr)
        exporter.server_close()
        if lock is not None:
            lock.release()
        return 1
    install_signals(agent)
    exporter.start()
    log.info("llm-agent %s serving on http://%s:%d/metrics every %gs (config: %s)",
             __version__, host, exporter.port, config.interval, config.source)
    try:
        agent.serve(exporter)
    finally:
        exporter.stop()
        agent.close()
        lock.release()
    log.info("stopped")
    return 0


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    from .check import build_report, exit_code, render_report, running_agent, use_color, with_running_agent
    from .daemon import Agent
    from .serve.health import rule_findings
    from .rules.loader import load_rules

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


def cmd_config_validate(args: argparse.Namespace) -> int:
    path = resolve_path(args.file)
    if path is None:
        print("llm-agent: no config file given or found; the embedded defaults are valid")
        return 0
    if _load(path) is None:
        return 2
    print(f"{path}: valid")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from . import commands

    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "config" and args.config_command == "validate":
        return cmd_config_validate(args)
    if args.command == "rules" and args.rules_command in ("check", "test"):  # files, no agent config
        return (commands.rules_check if args.rules_command == "check" else commands.rules_test)(args)
    handlers = {"run": cmd_run, "check": cmd_check, "test-alert": commands.test_alert, "stacks": commands.stacks,
                "reload": commands.reload, "report": commands.report, "maintenance": commands.maintenance,
                "silence": commands.silence if getattr(args, "silence_command", None) else None,
                "bench": commands.bench, "baseline": commands.baseline if getattr(args, "baseline_command", None) else None,
                "rules": commands.rules_export if args.command == "rules" and args.rules_command == "export" else None}
    handler = handlers.get(args.command)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    config = _load(args.config)
    if config is None:
        return 2
    return handler(args, config)


if __name__ == "__main__":
    sys.exit(main())
