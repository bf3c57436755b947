"""Operating commands: `stacks` (a Python server's stacks through py-spy), `reload` (SIGHUP
to the running agent), `report` (from the history file, read-only beside the running agent)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import time
from datetime import datetime
from typing import Optional

import psutil

from ..alerting import resolve_state_dir
from ..collectors.process import ProcessCollector
from ..config import Config
from ..discovery import discover_processes, discovered_targets
from ..probes.stacks import StackStore
from ..report.compute import Period, Reporter
from ..report.render import render
from ..statelock import PIDFILE
from ..tsdb.recorder import retention_of
from ..tsdb.store import FILE_NAME, HistoryStore


def stacks(args: argparse.Namespace, config: Config) -> int:

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.which.isdigit():
        pid, name = int(args.which), f"pid-{args.which}"
    else:

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
        doc = Reporter(store, config.slo.availability, config.slo.ttft_seconds, config.hostname,
                       short_lived=config.slo.short_lived_share).report(Period(start, end))
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
