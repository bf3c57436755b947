"""Alert commands: `test-alert` through a channel's real notifier, and silences and maintenance
windows on the running agent, through its Alertmanager API v2 (what amtool does)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from typing import Any, Dict, List
from urllib.parse import quote

from ..alerting import channels_from
from ..apiclient import call
from ..config import Config
from ..notify.base import NotifyError, redact
from ..notify.dispatcher import make_notifier
from ..notify.silences import MAINTENANCE_AUTHOR, maintenance_silence
from ..notify.testalert import test_docs
from ..promql.parser import PromQLError, parse_matcher
from ..timefmt import iso
from .api import Auth, through_api


def test_alert(args: argparse.Namespace, config: Config) -> int:
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


@through_api
def silence_add(args: argparse.Namespace, base: str, auth: Auth) -> int:
    matchers = []
    for text in args.matchers:
        try:
            m = parse_matcher(text)
        except PromQLError as e:
            print(f"llm-agent: {e}", file=sys.stderr)
            return 2
        matchers.append({"name": m.label, "value": m.value, "isRegex": m.op in ("=~", "!~"), "isEqual": m.op in ("=", "=~")})
    now = time.time()
    author = args.author or os.environ.get("USER") or getpass.getuser()
    doc = {"matchers": matchers, "startsAt": iso(now), "endsAt": iso(now + args.duration),
           "createdBy": author, "comment": args.comment}
    print(call(base, "POST", "/api/v2/silences" + ("?force=1" if args.force else ""), doc, auth)["silenceID"])
    return 0


@through_api
def silence_expire(args: argparse.Namespace, base: str, auth: Auth) -> int:
    for sid in args.ids:
        call(base, "DELETE", f"/api/v2/silence/{sid}", auth=auth)
    return 0


@through_api
def silence_list(args: argparse.Namespace, base: str, auth: Auth) -> int:
    found = call(base, "GET", "/api/v2/silences", auth=auth) or []
    print(silence_table([s for s in found if args.expired or s["status"]["state"] != "expired"]))
    return 0


def silence_table(silences: List[Dict[str, Any]]) -> str:
    if not silences:
        return "no silences"
    ops = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
    rows = [("ID", "STATE", "ENDS", "CREATED BY", "MATCHERS", "COMMENT")]
    for s in silences:
        matchers = " ".join(f'{m["name"]}{ops[(m["isRegex"], m.get("isEqual", True))]}"{m["value"]}"' for m in s["matchers"])
        rows.append((s["id"], s["status"]["state"], s["endsAt"], s["createdBy"], matchers, s["comment"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)


@through_api
def maintenance(args: argparse.Namespace, base: str, auth: Auth) -> int:
    """A maintenance window: a silence of the whole host (or --target's alerts) that also turns
    /healthz to 503 "maintenance" so a load balancer drains the box; --end finishes it early."""
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
    doc = maintenance_silence(args.duration, args.target or "", args.comment or "", time.time())
    sid = call(base, "POST", "/api/v2/silences?maintenance=1", doc, auth)["silenceID"]
    what = f"target {args.target}'s alerts are" if args.target else "every alert is silenced and /healthz answers 503;"
    print(f"maintenance {sid}: {what} silenced until {doc['endsAt']} (end early: llm-agent maintenance --end)")
    return 0


STAGES = ("rule pending", "rule firing")


@through_api
def drill(args: argparse.Namespace, base: str, auth: Auth) -> int:
    """Start a fire drill on the running agent and print each stage as it is reached: the rule
    pending, then firing (after its `for`), then each channel's delivery (after grouping and the
    outbox), in seconds after injection. Exit 0 once every channel delivered it."""
    query = f"kind={quote(args.kind)}" + (f"&channel={quote(args.channel)}" if args.channel else "")
    started = call(base, "POST", f"/api/v1/drill?{query}", auth=auth)
    print(f"drill {started['id']}: {args.kind} injected (every text says DRILL; reports, SLOs and the verdict "
          f"ignore it)", flush=True)
    shown: set = set()
    deadline = time.monotonic() + args.wait
    doc = started
    while time.monotonic() < deadline:
        doc = call(base, "GET", f"/api/v1/drill/{started['id']}", auth=auth)
        for stage in STAGES:
            if stage in doc["stages"] and stage not in shown:
                shown.add(stage)
                print(f"  {doc['stages'][stage]:7.1f}s  {stage}", flush=True)
        for channel, seconds in sorted(doc["delivered"].items(), key=lambda x: x[1]):
            if channel not in shown:
                shown.add(channel)
                print(f"  {seconds:7.1f}s  delivered to {channel}", flush=True)
        if doc["ended"]:
            break
        time.sleep(0.5)
    outcome = doc.get("outcome") or f"still running after {args.wait:g}s"
    print(f"drill {started['id']}: {outcome}")
    return 0 if outcome == "delivered" else 1
