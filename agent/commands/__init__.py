"""Every `llm-agent` command, in one table: its name, what it does (the one line `--help` and
the README show), its arguments, and where its code is. The parser, the help, the dispatch and
the README's command list all come from here (tests/unit/test_docs.py checks the README).

A command's module is imported only when that command runs (cli.main), so `llm-agent --help`
or `check` never load what `run` needs; each module imports its own dependencies at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple


@dataclass(frozen=True)
class Arg:
    flags: Tuple[str, ...]
    options: Dict[str, Any] = field(default_factory=dict)  # argparse's add_argument keywords


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    name: str  # "run", or "rules export" for a subcommand
    help: str
    handler: str  # "module:function" in this package
    args: Tuple[Arg, ...] = ()
    config: bool = True  # the handler takes the loaded configuration (else only the arguments)


CONFIG = arg("--config", metavar="FILE", help="config file (TOML)")
THROUGH_API = (CONFIG, arg("--url", help="the agent's URL (default: from [exporter] listen)"),
               arg("--user", help="basic auth user (password from $LLM_AGENT_PASSWORD, else asked)"))
DURATION = "duration"  # an option whose type is a duration ("30m"): the parser converts it

COMMANDS: Tuple[Command, ...] = (
    Command("run", "collect every interval and serve /metrics (the systemd service runs this)", "run:run", (
        CONFIG,
        arg("--log-level", choices=("debug", "info", "warning", "error"), help="override agent.log_level"),
        arg("--log-format", choices=("auto", "text", "json", "journal"), default="auto",
            help="auto: journal priorities under systemd (JOURNAL_STREAM), text on a terminal"))),
    Command("check", "one diagnostic pass and the running agent's verdict; exit 0 ok, 1 warning, 2 critical",
            "check:check", (
                CONFIG, arg("--json", action="store_true", help="print the report as JSON"),
                arg("--sample", type=float, default=1.0, metavar="SECONDS",
                    help="gap between the two passes that measure tokens/s (default 1)"))),
    Command("config validate", "validate a config file; every error names the key and file:line",
            "configcmd:validate", (arg("file", nargs="?", help="config file (default: as for run)"),), config=False),
    Command("rules export", "everything loaded as one Prometheus rule file", "rules:export", (
        CONFIG, arg("-o", "--output", metavar="FILE", help="write to FILE instead of standard output"))),
    Command("rules check", "validate Prometheus rule files as promtool check rules does", "rules:check", (
        arg("files", nargs="+", metavar="FILE"),
        arg("--memory-history", type=DURATION, default=7 * 3600.0, metavar="DURATION",
            help="note rules reaching further back than this ([alerting] memory_history; default 7h)")), config=False),
    Command("rules test", "run promtool unit-test files on the agent's engine (a drop-in for promtool test rules)",
            "rules:test", (arg("files", nargs="*", metavar="FILE"),), config=False),
    Command("test-alert", "send a clearly marked test alert through a [[notify]] channel", "alerts:test_alert", (
        CONFIG, arg("--channel", required=True, metavar="NAME", help="the [[notify]] channel's name"),
        arg("--resolve", action="store_true", help="send the resolve after the alert"))),
    Command("stacks", "dump a Python server's stacks with py-spy (by target name or pid)", "operate:stacks", (
        arg("which", metavar="TARGET|PID", help="a target name (its port's process) or a pid"), CONFIG)),
    Command("reload", "ask the running agent to re-read its configuration (SIGHUP)", "operate:reload", (
        arg("--config", metavar="FILE", help="config file (TOML); its state_dir holds the pid file"),)),
    Command("report", "availability, latency, tokens, GPUs, incidents and cost from the history", "operate:report", (
        arg("--config", metavar="FILE", help="config file (TOML); its state_dir holds the history"),
        arg("--since", type=DURATION, default=7 * 86400.0, metavar="DURATION", help="the period up to now (default 7d)"),
        arg("--from", dest="start", metavar="TIME", help="period start: YYYY-MM-DD[THH:MM], local time"),
        arg("--to", dest="end", metavar="TIME", help="period end (default now)"),
        arg("--format", choices=("text", "md", "html", "json"), default="text"),
        arg("-o", "--output", metavar="FILE", help="write to FILE instead of standard output"))),
    Command("silence add", "silence the alerts matching every MATCHER on the running agent", "alerts:silence_add", (
        arg("matchers", nargs="+", metavar="MATCHER", help='label=value, label!=value, label=~"re", label!~"re"'),
        arg("--for", dest="duration", type=DURATION, default=3600.0, metavar="DURATION", help="how long (default 1h)"),
        arg("--comment", required=True, help="why (shown to whoever wonders where the pages went)"),
        arg("--author", help="who (default: $USER)"),
        arg("--force", action="store_true", help="allow a silence that matches every alert of the host (on the host "
                                                 "itself, or with credentials; `maintenance` is the usual way)"))
            + THROUGH_API),
    Command("silence list", "the silences (active and pending; --expired for all)", "alerts:silence_list",
            (arg("--expired", action="store_true", help="show expired ones too"),) + THROUGH_API),
    Command("silence expire", "end silences now", "alerts:silence_expire",
            (arg("ids", nargs="+", metavar="ID"),) + THROUGH_API),
    Command("maintenance", "silence the host (or one target) for a while; /healthz answers 503", "alerts:maintenance", (
        arg("--for", dest="duration", type=DURATION, metavar="DURATION", help="how long, e.g. 30m"),
        arg("--target", metavar="NAME", help="only this target's alerts (and /healthz?target=NAME)"),
        arg("--comment", default="", help="why"),
        arg("--end", action="store_true", help="end the maintenance window(s) now")) + THROUGH_API),
    Command("drill", "a fire drill: a synthetic fault through the running agent's rules and channels, timed",
            "alerts:drill", (
                arg("--kind", choices=("target-down", "hang", "xid"), default="target-down",
                    help="the fault: a target down, a hung target, an Xid calling for a reboot"),
                arg("--channel", metavar="NAME", default="", help="only this [[notify]] channel (default: every "
                                                                    "channel the alert's routes reach)"),
                arg("--wait", type=DURATION, default=600.0, metavar="DURATION",
                    help="how long to follow it (default 10m)")) + THROUGH_API),
    Command("bench", "benchmark a target at its next idle moment and compare with its baseline", "perf:bench", (
        arg("target", metavar="TARGET"),
        arg("--wait", type=DURATION, default=900.0, metavar="DURATION",
            help="how long to wait for the run (default 15m: it starts once the server is idle)")) + THROUGH_API),
    Command("baseline record", "the last completed benchmarks become the baseline", "perf:baseline_record", (
        arg("target", nargs="?", metavar="TARGET", help="one target (default: every one)"),
        arg("--last", type=int, default=0, metavar="N", help="how many runs (default [bench] baseline_runs)"))
            + THROUGH_API),
    Command("baseline show", "each target's baseline and environment", "perf:baseline_show",
            (arg("target", nargs="?", metavar="TARGET", help="one target (default: every one)"),) + THROUGH_API),
    Command("baseline compare", "the last benchmark against the baseline", "perf:baseline_compare",
            (arg("target", nargs="?", metavar="TARGET", help="one target (default: every one)"),) + THROUGH_API),
)

GROUPS = {  # what `--help` says of a command that only has subcommands
    "config": "configuration tools",
    "rules": "alert rule tools: export, check, test",
    "silence": "add, list or expire silences on the running agent (as amtool does)",
    "baseline": "record, show or compare performance baselines",
}


def find(name: str) -> Command:
    return next(c for c in COMMANDS if c.name == name)
