"""Generic webhooks in Alertmanager's webhook format (version 4), one POST per alert group, so
receivers written for Alertmanager work unchanged."""

from __future__ import annotations

from typing import Dict, List, Optional

from .base import AlertDoc, HttpNotifier, iso, post_json
from .grouping import Message, group_key


def common(dicts: List[Dict[str, str]]) -> Dict[str, str]:
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        out = {k: v for k, v in out.items() if d.get(k) == v}
    return out


def alert_json(alert: AlertDoc) -> dict:
    return {"status": alert.status, "labels": alert.labels, "annotations": alert.annotations,
            "startsAt": iso(alert.starts_at), "endsAt": iso(alert.ends_at), "generatorURL": "",
            "fingerprint": alert.fingerprint}


def payload(batch: List[AlertDoc], receiver: str, group: Optional[Message] = None) -> dict:
    """Alertmanager's webhook v4, the group's key and labels filled as Alertmanager fills them."""
    labels = common([a.labels for a in batch])
    group_labels = group.labels if group is not None else labels
    return {
        "version": "4", "groupKey": group.key if group is not None else group_key(labels),
        "truncatedAlerts": 0, "status": "firing" if any(a.status == "firing" for a in batch) else "resolved",
        "receiver": receiver, "groupLabels": group_labels, "commonLabels": labels,
        "commonAnnotations": common([a.annotations for a in batch]), "externalURL": "",
        "alerts": [alert_json(a) for a in batch],
    }


class WebhookNotifier(HttpNotifier):
    def send(self, batch: List[AlertDoc], group: Optional[Message] = None) -> None:
        post_json(self.session, self.channel.urls[0], payload(batch, self.channel.name, group), self.channel.timeout,
                  self.channel.secrets())
