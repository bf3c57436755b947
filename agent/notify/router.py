"""Route state changes to channels (by severity, label matchers, send_resolved) and put
them in the outbox. Alertmanager channels also get every firing alert again each resend
interval, as Prometheus does, so Alertmanager's view never expires while it fires."""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from ..rules.engine import Alert, Notification
from ..rules.history import matches
from ..rules.parser import parse_matcher
from .base import AlertDoc, Channel
from .outbox import Outbox


def alert_doc(alert: Alert, status: str, t: float, test: bool = False) -> AlertDoc:
    return AlertDoc(status=status, labels=dict(alert.labels), annotations=dict(alert.annotations),
                    starts_at=alert.active_at, ends_at=t if status == "resolved" else 0.0, value=alert.value,
                    fingerprint=alert.fingerprint, test=test)


class Router:
    def __init__(self, channels: List[Channel], outbox: Outbox, resend: float = 60.0):
        self.outbox = outbox
        self._last_resend: Dict[Tuple[str, str], float] = {}  # kept across reloads: a reload re-sends nothing
        self.configure(channels, resend)

    def configure(self, channels: List[Channel], resend: float = 60.0) -> None:
        self.channels = channels
        self.resend = resend
        self.matchers = {c.name: tuple(parse_matcher(m) for m in c.matchers) for c in channels}
        names = {c.name for c in channels}
        self._last_resend = {k: v for k, v in self._last_resend.items() if k[0] in names}

    def wants(self, channel: Channel, alert: Alert, status: str) -> bool:
        if status == "resolved" and not channel.send_resolved:
            return False
        if channel.severities and alert.labels.get("severity") not in channel.severities:
            return False
        return matches(self.matchers[channel.name], alert.labels)

    def route(self, notifications: Iterable[Notification]) -> int:
        queued = 0
        for n in notifications:
            doc = alert_doc(n.alert, n.status, n.at)
            for channel in self.channels:
                if self.wants(channel, n.alert, n.status):
                    self.outbox.enqueue(channel.name, doc.fingerprint, n.status, doc.to_json(), n.at, doc.starts_at)
                    self._last_resend[(channel.name, doc.fingerprint)] = n.at
                    queued += 1
        return queued

    def resend_firing(self, alerts: Iterable[Alert], t: float) -> None:
        """Re-send firing, announced alerts to Alertmanager channels every `resend` seconds."""
        for channel in self.channels:
            if channel.type != "alertmanager":
                continue
            for alert in alerts:
                if alert.state != "firing" or alert.inhibited or not alert.last_sent:
                    continue
                key = (channel.name, alert.fingerprint)
                if t - self._last_resend.get(key, 0.0) >= self.resend and self.wants(channel, alert, "firing"):
                    doc = alert_doc(alert, "firing", t)
                    self.outbox.enqueue(channel.name, doc.fingerprint, "firing", doc.to_json(), t, doc.starts_at)
                    self._last_resend[key] = t
