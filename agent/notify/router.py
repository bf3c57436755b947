"""Route state changes to channels (by severity and label matchers) and turn them into outbox
rows: for most channels through their alert groups (grouping.py: one message per group, at
group_wait / group_interval / repeat_interval), for Alertmanager channels one row per alert,
since Alertmanager groups for itself; those also get every firing alert again each resend
interval, as Prometheus sends them, so Alertmanager's view never expires while it fires, and
each resolve again for 15 minutes after (Prometheus' resolved retention): Alertmanager keeps a
firing alert whose resolve carries an endsAt still in its own future (its clock behind the
agent's), and a replica can lose one before it gossips."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from ..rules.engine import Alert, Notification
from ..config.channels import kind_of
from ..labels import matches
from ..promql.parser import parse_matcher
from .base import AlertDoc, Channel
from .grouping import Grouper, GroupSettings
from .outbox import Outbox

RESOLVED_RETENTION = 15 * 60.0  # how long a resolve is re-sent to Alertmanager, as Prometheus does


def alert_doc(alert: Alert, status: str, t: float, test: bool = False) -> AlertDoc:
    return AlertDoc(status=status, labels=dict(alert.labels), annotations=dict(alert.annotations),
                    starts_at=alert.active_at, ends_at=t if status == "resolved" else 0.0, value=alert.value,
                    fingerprint=alert.fingerprint, test=test)


def settings_of(channel: Channel) -> GroupSettings:
    return GroupSettings(tuple(channel.group_by), channel.group_wait, channel.group_interval, channel.repeat_interval)


class Router:
    def __init__(self, channels: List[Channel], outbox: Outbox, resend: float = 60.0,
                 grouper: Optional[Grouper] = None):
        self.outbox = outbox
        self.grouper = grouper if grouper is not None else Grouper(outbox.store)
        self._last_resend: Dict[Tuple[str, str], float] = {}  # kept across reloads: a reload re-sends nothing
        self._resolved: Dict[Tuple[str, str], AlertDoc] = {}  # resolves still re-sent, by (channel, alert)
        self.channels: List[Channel] = []
        self.configure(channels, resend)

    def configure(self, channels: List[Channel], resend: float = 60.0) -> None:
        names = {c.name for c in channels}
        for old in self.channels:
            if old.name not in names:
                self.grouper.forget_channel(old.name)
        self.channels = channels
        self.resend = resend
        self.matchers = {c.name: tuple(parse_matcher(m) for m in c.matchers) for c in channels}
        self._last_resend = {k: v for k, v in self._last_resend.items() if k[0] in names}
        resolving = {c.name for c in channels if not kind_of(c.type).groups and c.send_resolved}
        self._resolved = {k: v for k, v in self._resolved.items() if k[0] in resolving}  # (a channel made a group's)

    def selects(self, channel: Channel, alert: Alert) -> bool:
        """Whether the channel takes this alert at all (severity and matchers; a drill for one
        channel, that channel only)."""
        if alert.labels.get("drill_channel", channel.name) != channel.name:
            return False
        if channel.severities and alert.labels.get("severity") not in channel.severities:
            return False
        return matches(self.matchers[channel.name], alert.labels)

    def wants(self, channel: Channel, alert: Alert, status: str) -> bool:
        """Whether the channel is sent this alert in this state."""
        return (status != "resolved" or channel.send_resolved) and self.selects(channel, alert)

    def route(self, notifications: Iterable[Notification]) -> int:
        """Alertmanager channels: one outbox row per change. The others: into the alert's group
        (resolves too where send_resolved is false: the group must know the alert ended)."""
        queued = 0
        for n in notifications:
            doc = alert_doc(n.alert, n.status, n.at)
            for channel in self.channels:
                if not kind_of(channel.type).groups:
                    key = (channel.name, doc.fingerprint)
                    self._resolved.pop(key, None)
                    if self.wants(channel, n.alert, n.status):
                        self.outbox.enqueue(channel.name, doc.fingerprint, n.status, doc.to_json(), n.at, doc.starts_at)
                        self._last_resend[key] = n.at
                        if n.status == "resolved":
                            self._resolved[key] = doc
                        queued += 1
                elif self.selects(channel, n.alert):
                    self.grouper.add(channel.name, settings_of(channel), doc, n.at)
                    queued += 1
        return queued

    def flush(self, t: float, firing_now: Optional[Set[str]] = None, held: Iterable[str] = (),
              silenced: Callable[[Dict[str, str]], bool] = lambda labels: False) -> int:
        """Queue every group message due now: one outbox row each, its dedup key the group's."""
        held = set(held)
        queued = 0
        for channel in self.channels:
            if not kind_of(channel.type).groups:
                continue
            for message in self.grouper.flush(channel.name, settings_of(channel), t, channel.send_resolved,
                                              firing_now, held, silenced):
                # the episode is the flush time: a later message of the group never replaces a waiting one
                self.outbox.enqueue(channel.name, "group:" + message.key, message.status, message.to_json(), t, t)
                queued += 1
        return queued

    def resend_due(self, alerts: List[Alert], t: float) -> None:
        """Re-send to Alertmanager channels every `resend` seconds: firing, announced alerts while
        they fire, resolves (their endsAt unchanged) for RESOLVED_RETENTION after."""
        direct = [c for c in self.channels if not kind_of(c.type).groups]
        for channel in direct:
            for alert in alerts:
                if alert.state != "firing" or alert.inhibited or alert.silenced_by or not alert.last_sent:
                    continue
                key = (channel.name, alert.fingerprint)
                if t - self._last_resend.get(key, 0.0) >= self.resend and self.wants(channel, alert, "firing"):
                    doc = alert_doc(alert, "firing", t)
                    self.outbox.enqueue(channel.name, doc.fingerprint, "firing", doc.to_json(), t, doc.starts_at)
                    self._last_resend[key] = t
        for key, doc in list(self._resolved.items()):
            if t - doc.ends_at > RESOLVED_RETENTION:
                del self._resolved[key]
            elif t - self._last_resend.get(key, 0.0) >= self.resend:
                self.outbox.enqueue(key[0], doc.fingerprint, "resolved", doc.to_json(), t, doc.starts_at)
                self._last_resend[key] = t
        if len(self._last_resend) > len(alerts) * len(direct) + len(self._resolved):  # ended without a resolve
            live = {(c.name, a.fingerprint) for c in direct for a in alerts}
            self._last_resend = {k: v for k, v in self._last_resend.items() if k in live or k in self._resolved}
