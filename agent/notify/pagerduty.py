"""PagerDuty Events API v2: `trigger` then `resolve` with the same stable dedup_key per
alert (of a group message, the alerts that changed; with one_incident_per_group, one incident
for the whole group), severity mapped, summary under 1024 characters, payload under 512 KB. PagerDuty
answers 202 on success, 400 for an invalid event, 429 when rate limited, 5xx to retry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, List, Optional

from .base import AlertDoc, Channel, HttpNotifier, iso, post_json
from .grouping import Message, incident_docs

if TYPE_CHECKING:  # requests is imported only when a channel is configured
    import requests

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "warning": "warning", "info": "info", "error": "error"}
MAX_SUMMARY = 1024
MAX_BYTES = 512 * 1024


def dedup_key(alert: AlertDoc) -> str:
    return f"llm-agent/{alert.fingerprint}"


def payload(alert: AlertDoc, routing_key: str, hostname: str) -> dict:
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(alert)}
    name = alert.labels.get("alertname", "alert")
    summary = alert.marker + f"{name}: {alert.annotations.get('summary') or name}"
    event = {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key(alert),
        "client": "llm-agent",
        "payload": {
            "summary": summary[:MAX_SUMMARY], "source": alert.labels.get("Hostname") or hostname,
            "severity": SEVERITY.get(alert.labels.get("severity", ""), "warning"),
            "timestamp": iso(alert.starts_at), "component": alert.labels.get("server") or alert.labels.get("gpu", ""),
            "class": name, "group": hostname,
            "custom_details": {"labels": alert.labels, "annotations": alert.annotations, "value": alert.value},
        },
    }
    if len(json.dumps(event)) > MAX_BYTES:  # keep what identifies the alert, drop the bulky details
        event["payload"]["custom_details"] = {"labels": alert.labels,  # type: ignore[index]
                                              "note": "annotations dropped: over 512 KB"}
    return event


class PagerDutyNotifier(HttpNotifier):
    def __init__(self, channel: Channel, session: "requests.Session", resend: float = 60.0):
        super().__init__(channel, session, resend)
        self.url = channel.urls[0] if channel.urls else EVENTS_URL

    def send(self, batch: List[AlertDoc], group: Optional[Message] = None) -> None:
        for alert in incident_docs(batch, group, self.channel.one_incident_per_group):
            post_json(self.session, self.url, payload(alert, self.channel.routing_key, self.channel.hostname),
                      self.channel.timeout, self.channel.secrets())
