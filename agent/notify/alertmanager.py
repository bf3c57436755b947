"""Alertmanager's /api/v2/alerts, sent to every listed replica (they gossip and deduplicate).
Firing alerts carry endsAt a few resend intervals ahead and are re-sent periodically, as
Prometheus does, so Alertmanager resolves them by itself if the agent dies. Each alert carries
the external labels (`Hostname` = the agent's hostname, as dcgm-exporter names it, plus
[alerting] external_labels) where it has no such label of its own, as Prometheus adds its
external_labels: a fleet's LlmTargetDown from two hosts are two alerts, not one."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Dict, List, Optional

from .base import AlertDoc, Channel, NotifyError, iso, post_json

if TYPE_CHECKING:  # requests is imported only when a channel is configured
    import requests

log = logging.getLogger(__name__)


def alert_json(alert: AlertDoc, now: float, resend: float, external: Optional[Dict[str, str]] = None) -> dict:
    ends = alert.ends_at if alert.status == "resolved" else now + 4 * resend
    return {"labels": {**(external or {}), **alert.labels}, "annotations": alert.annotations,
            "startsAt": iso(alert.starts_at), "endsAt": iso(ends), "generatorURL": ""}


class AlertmanagerNotifier:
    max_batch = 64
    min_interval = 0.0

    def __init__(self, channel: Channel, session: "requests.Session", resend: float = 60.0, clock=None):
        self.channel = channel
        self.session = session
        self.resend = resend
        self.clock = clock or time.time

    def send(self, batch: List[AlertDoc], group: object = None) -> None:  # Alertmanager groups for itself
        now = self.clock()
        external = self.channel.options.get("external_labels", {})
        body = [alert_json(a, now, self.resend, external) for a in batch]
        errors = []
        for i, base in enumerate(self.channel.urls):
            try:
                post_json(self.session, base.rstrip("/") + "/api/v2/alerts", body, self.channel.timeout,
                          self.channel.secrets())
            except NotifyError as e:
                errors.append((i, e))
                log.warning("alertmanager %s replica %d: %s", self.channel.name, i + 1, e)
        if len(errors) == len(self.channel.urls):  # delivered when any replica accepted (they gossip)
            retryable = any(e.retryable for _, e in errors)
            raise NotifyError(f"every replica failed; first: {errors[0][1]}", retryable,
                              max((e.retry_after or 0 for _, e in errors), default=None) or None)
