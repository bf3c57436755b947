"""Microsoft Teams through a Workflows (Power Automate) webhook: the "Post to a channel when a
webhook request is received" flow takes a message whose attachment is an Adaptive Card. One
card per alert group, alerts firing first, each with its summary, runbook and labels. The flow
answers 202 Accepted; 400 for a body it cannot read, 401/403/404 for a flow that is gone or
not allowed (not retried), 429 with Retry-After when throttled, 5xx to retry."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .base import AlertDoc, HttpNotifier, batch_marker, post_json
from .grouping import Message

MAX_ALERTS = 20  # a card is limited to about 28 KB: beyond this many alerts, "and N more"
COLOURS = {"critical": "Attention", "warning": "Warning", "info": "Accent"}
MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_[]()~<>#"})


def esc(text: str) -> str:
    """An Adaptive Card's TextBlock and FactSet render a CommonMark subset (bold, italic, lists,
    `[title](url)` links): its punctuation backslash-escaped, as CommonMark reads it, so text a
    target controls (a label `[click here](https://evil.example)`) shows as typed, never as a
    disguised link or a format. A list marker is escaped where a line starts with one."""
    return "\n".join(_line(line) for line in text.translate(MARKDOWN).split("\n"))


def _line(line: str) -> str:
    if line[:1] in ("-", "+"):
        return "\\" + line  # "- item": a list
    number, dot, rest = line.partition(".")
    if dot and number.isdigit() and len(number) <= 9:
        return number + "\\." + rest  # "1. item": an ordered list
    return line


def _alert_block(alert: AlertDoc) -> List[Dict[str, Any]]:
    name = alert.labels.get("alertname", "alert")
    severity = alert.labels.get("severity", "warning")
    resolved = alert.status == "resolved"
    title = esc(f"{alert.marker}{'RESOLVED' if resolved else severity.upper()}: {name}")
    blocks: List[Dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "wrap": True,
         "color": "Good" if resolved else COLOURS.get(severity, "Default")},
        {"type": "TextBlock", "text": esc(alert.annotations.get("summary") or name), "wrap": True}]
    if alert.annotations.get("description"):
        blocks.append({"type": "TextBlock", "text": esc(alert.annotations["description"][:2000]), "wrap": True,
                       "isSubtle": True})
    facts = [{"title": esc(k), "value": esc(v)} for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity")]
    if facts:
        blocks.append({"type": "FactSet", "facts": facts[:15]})
    runbook = alert.annotations.get("runbook_url") or alert.annotations.get("runbook", "")
    if runbook.startswith(("https://", "http://")):
        blocks.append({"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Runbook", "url": runbook}]})
    return blocks


def payload(batch: List[AlertDoc], hostname: str) -> dict:
    ordered = sorted(batch, key=lambda a: (a.status != "firing", a.labels.get("alertname", "")))
    firing = sum(1 for a in batch if a.status == "firing")
    test = batch_marker(batch)
    body: List[Dict[str, Any]] = [{"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
                                   "text": esc(f"{test}{firing} firing, {len(batch) - firing} resolved on {hostname}")}]
    for alert in ordered[:MAX_ALERTS]:
        body.append({"type": "Container", "separator": True, "items": _alert_block(alert)})
    if len(ordered) > MAX_ALERTS:
        body.append({"type": "TextBlock", "text": f"and {len(ordered) - MAX_ALERTS} more", "isSubtle": True})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "msteams": {"width": "Full"}, "body": body}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


class TeamsNotifier(HttpNotifier):
    min_interval = 1.0  # Workflows throttle a flow that is called too often

    def send(self, batch: List[AlertDoc], group: Optional[Message] = None) -> None:
        post_json(self.session, self.channel.urls[0], payload(batch, self.channel.hostname), self.channel.timeout,
                  self.channel.secrets())
