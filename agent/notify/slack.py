"""Slack incoming webhooks: one message per alert, text plus blocks, coloured by severity
and green when resolved. Slack answers 200 "ok", 400 invalid_payload, 403/404/410 for a
revoked hook or archived channel, 429 with Retry-After; it allows about one message a
second per hook, which the dispatcher enforces (`min_interval`)."""

from __future__ import annotations

from typing import Any, Dict, List

from .base import AlertDoc, HttpNotifier, post_json

COLOURS = {"critical": "#d63232", "warning": "#e8a317", "info": "#439fe0"}
RESOLVED = "#2eb886"


def payload(alert: AlertDoc, hostname: str) -> dict:
    name = alert.labels.get("alertname", "alert")
    severity = alert.labels.get("severity", "warning")
    status = "RESOLVED" if alert.status == "resolved" else severity.upper()
    summary = alert.annotations.get("summary") or name
    prefix = "[TEST] " if alert.test else ""
    text = f"{prefix}[{status}] {name}: {summary}"
    details = alert.annotations.get("description", "")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity"))
    blocks: List[Dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]
    if details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": details[:2900]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{labels or '-'} · host {hostname}"[:2900]}]})
    return {"text": text[:3000], "attachments": [{"color": RESOLVED if alert.status == "resolved" else COLOURS.get(severity, "#888888"),
                                                  "blocks": blocks}]}


class SlackNotifier(HttpNotifier):
    min_interval = 1.0

    def send(self, batch: List[AlertDoc]) -> None:
        for alert in batch:
            post_json(self.session, self.channel.urls[0], payload(alert, self.channel.hostname), self.channel.timeout,
                      self.channel.secrets())
