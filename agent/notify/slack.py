"""Slack incoming webhooks: one message per alert group (a group of one reads as before: one
alert, its summary and description), text plus blocks, coloured by the worst severity firing
and green when all resolved; a group lists each alert with its summary and runbook, firing and
resolved counted. Slack answers 200 "ok", 400 invalid_payload, 403/404/410 for a
revoked hook or archived channel, 429 with Retry-After; it allows about one message a
second per hook, which the dispatcher enforces (`min_interval`)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .base import AlertDoc, HttpNotifier, batch_marker, post_json
from .grouping import Message

COLOURS = {"critical": "#d63232", "warning": "#e8a317", "info": "#439fe0"}


def esc(text: str) -> str:
    """Slack's mrkdwn escaping (its docs: "Escaping text"): &, < and > as entities. Everything a
    message carries is escaped, label values and annotations alike: a target's model name such as
    `<!channel> <https://evil.example|click here>` would otherwise ping the whole channel behind
    a disguised link. The agent's own links are made after escaping (`link`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """`<url|label>` for an http(s) URL that cannot break out of it; "" for anything else."""
    if not url.startswith(("https://", "http://")) or any(c in url for c in "<>| \t\r\n"):
        return ""
    return f"<{url.replace('&', '&amp;')}|{esc(label)}>"
RESOLVED = "#2eb886"


MAX_LISTED = 20  # Slack allows 50 blocks a message: beyond this many alerts, "and N more"
RANK = {"critical": 0, "warning": 1, "info": 2}


def payload(alert: AlertDoc, hostname: str) -> dict:
    name = alert.labels.get("alertname", "alert")
    severity = alert.labels.get("severity", "warning")
    status = "RESOLVED" if alert.status == "resolved" else severity.upper()
    summary = alert.annotations.get("summary") or name
    prefix = alert.marker
    text = esc(f"{prefix}[{status}] {name}: {summary}")
    details = esc(alert.annotations.get("description", ""))
    labels = esc(", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity")))
    blocks: List[Dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]
    if details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": details[:2900]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": f"{labels or '-'} · host {esc(hostname)}"[:2900]}]})
    return {"text": text[:3000], "attachments": [{"color": RESOLVED if alert.status == "resolved" else COLOURS.get(severity, "#888888"),
                                                  "blocks": blocks}]}


def group_payload(alerts: List[AlertDoc], hostname: str, group_labels: Dict[str, str]) -> dict:
    """One message for a group of several alerts."""
    firing = [a for a in alerts if a.status == "firing"]
    worst = min((a.labels.get("severity", "warning") for a in firing), key=lambda s: RANK.get(s, 3), default="")
    names = sorted({a.labels.get("alertname", "alert") for a in alerts})
    what = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items())) or ", ".join(names)
    prefix = batch_marker(alerts)
    text = esc(f"{prefix}[{'FIRING:' + str(len(firing)) if firing else 'RESOLVED'}] {what}: {len(firing)} firing, "
               f"{len(alerts) - len(firing)} resolved")
    blocks: List[Dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]
    for a in alerts[:MAX_LISTED]:
        state = "RESOLVED" if a.status == "resolved" else a.labels.get("severity", "warning").upper()
        where = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in ("alertname", "severity")
                          and k not in group_labels)
        line = f"*{esc(f'[{state}] ' + a.labels.get('alertname', 'alert'))}*{esc(' (' + where + ')') if where else ''}: " \
               f"{esc(a.annotations.get('summary') or '')}"
        runbook = link(a.annotations.get("runbook_url") or a.annotations.get("runbook", ""), "runbook")
        if runbook:
            line += " " + runbook
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:2900]}})
    if len(alerts) > MAX_LISTED:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {len(alerts) - MAX_LISTED} more"}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"host {esc(hostname)}"}]})
    return {"text": text[:3000], "attachments": [{"color": COLOURS.get(worst, "#888888") if firing else RESOLVED,
                                                  "blocks": blocks}]}


class SlackNotifier(HttpNotifier):
    min_interval = 1.0

    def send(self, batch: List[AlertDoc], group: Optional[Message] = None) -> None:
        body = payload(batch[0], self.channel.hostname) if len(batch) == 1 else \
            group_payload(batch, self.channel.hostname, group.labels if group else {})
        post_json(self.session, self.channel.urls[0], body, self.channel.timeout, self.channel.secrets())
