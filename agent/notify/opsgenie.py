"""Opsgenie's Alert API v2 (per alert that changed in a group message, or with
one_incident_per_group one alert for the whole group): a firing alert is created (POST /v2/alerts) with a stable `alias`
(its dedup key: Opsgenie keeps one open alert per alias, so a repeat only counts up), a resolve
closes it (POST /v2/alerts/{alias}/close?identifierType=alias). Priority from severity
(critical P1, warning P3, info P5 unless `priorities` says otherwise); US or EU endpoint
(`region`), or `url`. Authorization: GenieKey with an API integration's key.

Opsgenie answers 202 with a requestId (processing is asynchronous), 400/422 for an invalid
request, 401/403 for a bad key, 404 for an unknown alert on close, 429 when rate limited, 5xx
to retry. A close of an alert Opsgenie no longer has (404) is done: there is nothing to close."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional
from urllib.parse import quote

from .base import AlertDoc, Channel, HttpNotifier, NotifyError, post_json
from .grouping import Message, incident_docs

if TYPE_CHECKING:  # requests is imported only when a channel is configured
    import requests

ENDPOINTS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}
PRIORITIES = {"critical": "P1", "warning": "P3", "info": "P5"}
MAX_MESSAGE, MAX_ALIAS, MAX_DESCRIPTION, MAX_DETAIL = 130, 512, 15000, 8000


def alias(alert: AlertDoc) -> str:
    return f"llm-agent-{alert.fingerprint}"[:MAX_ALIAS]


def create(alert: AlertDoc, hostname: str, priorities: Dict[str, str]) -> dict:
    name = alert.labels.get("alertname", "alert")
    message = alert.marker + f"{name}: {alert.annotations.get('summary') or name}"
    description = alert.annotations.get("description", "")
    runbook = alert.annotations.get("runbook_url") or alert.annotations.get("runbook", "")
    if runbook:
        description += f"\n\nRunbook: {runbook}"
    severity = alert.labels.get("severity", "warning")
    return {"message": message[:MAX_MESSAGE], "alias": alias(alert), "description": description[:MAX_DESCRIPTION],
            "tags": sorted({severity, name, "llm-agent"}), "priority": priorities.get(severity, "P3"),
            "source": hostname, "entity": alert.labels.get("server") or alert.labels.get("gpu") or hostname,
            "details": {k: v[:MAX_DETAIL] for k, v in alert.labels.items()}}


class OpsgenieNotifier(HttpNotifier):
    def __init__(self, channel: Channel, session: "requests.Session", resend: float = 60.0):
        super().__init__(channel, session, resend)
        self.base = (channel.urls[0] if channel.urls else ENDPOINTS[channel.options.get("region", "us")]).rstrip("/")
        self.priorities = {**PRIORITIES, **channel.options.get("priorities", {})}

    def send(self, batch: List[AlertDoc], group: Optional[Message] = None) -> None:
        headers = {"Authorization": f"GenieKey {self.channel.password}"}
        for alert in incident_docs(batch, group, self.channel.one_incident_per_group):
            if alert.status == "resolved":
                url = f"{self.base}/v2/alerts/{quote(alias(alert), safe='')}/close?identifierType=alias"
                body = {"source": self.channel.hostname, "user": "llm-agent", "note": "resolved"}
                try:
                    post_json(self.session, url, body, self.channel.timeout, self.channel.secrets(), headers)
                except NotifyError as e:
                    if e.status != 404:  # Opsgenie no longer has it: nothing left to close
                        raise
            else:
                post_json(self.session, self.base + "/v2/alerts", create(alert, self.channel.hostname, self.priorities),
                          self.channel.timeout, self.channel.secrets(), headers)
