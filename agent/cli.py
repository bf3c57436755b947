"""The `llm-agent` command: the parser and the dispatch, both made from the command table
(agent/commands/__init__.py). Only the command that runs is imported."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import __version__
from .commands import COMMANDS, DURATION, GROUPS, Command
from .config import ConfigError, load_config, resolve_path
from .config.values import parse_duration

EPILOG = """The config is --config FILE, else $LLM_AGENT_CONFIG, else /etc/llm-agent/agent.toml if it
exists, else the embedded defaults."""


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add(parser: argparse.ArgumentParser, command: Command) -> None:
    for a in command.args:
        options = dict(a.options)
        if options.get("type") == DURATION:
            options["type"] = _duration_arg
        parser.add_argument(*a.flags, **options)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-agent", description="Monitoring agent for GPU hosts serving LLMs.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"llm-agent {__version__}")
    top = p.add_subparsers(dest="command", metavar="COMMAND")
    groups: Dict[str, Any] = {}  # a command group's subparsers
    for command in COMMANDS:
        head, _, sub = command.name.partition(" ")
        if not sub:
            _add(top.add_parser(head, help=command.help), command)
            continue
        if head not in groups:
            group = top.add_parser(head, help=GROUPS[head])
            groups[head] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        _add(groups[head].add_parser(sub, help=command.help), command)
    return p


def handler(command: Command) -> Callable[..., int]:
    """The command's function, its module imported now: the one place a command's code loads."""
    module, function = command.handler.split(":")
    return getattr(importlib.import_module(f"agent.commands.{module}"), function)


def load(path_arg: Optional[str]):
    """The configuration at --config (or where it is looked for), or None with the problems printed."""
    try:
        return load_config(resolve_path(path_arg))
    except ConfigError as e:
        print(f"llm-agent: invalid configuration:\n{e}", file=sys.stderr)
        return None


def _parsed(argv: Optional[List[str]]) -> Tuple[argparse.Namespace, Optional[Command]]:
    """The arguments and the command they name (None: help printed). The parser is built and
    dropped here: every command's options and help kept for the daemon's life were 0.2 MiB."""
    p = parser()
    args = p.parse_args(argv)
    name = " ".join(part for part in (args.command, getattr(args, "subcommand", None)) if part)
    command = next((c for c in COMMANDS if c.name == name), None)
    if command is None:
        p.print_help(sys.stderr)
    return args, command


def main(argv: Optional[List[str]] = None) -> int:
    args, command = _parsed(argv)
    if command is None:
        return 2
    if not command.config:
        return handler(command)(args)
    config = load(getattr(args, "config", None))
    if config is None:
        return 2
    return handler(command)(args, config)


if __name__ == "__main__":
    sys.exit(main())
