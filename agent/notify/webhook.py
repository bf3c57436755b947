"""Generic webhooks in Alertmanager's webhook format (version 4), so receivers written for
Alertmanager work unchanged."""

from __future__ import annotations

from typing import Dict, List

from .base import AlertDoc, HttpNotifier, iso, post_json


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


def payload(batch: List[AlertDoc], receiver: str) -> dict:
    labels = common([a.labels for a in batch])
    return {
        "version": "4", "groupKey": "{}:" + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
        "truncatedAlerts": 0, "status": "firing" if any(a.status == "firing" for a in batch) else "resolved",
        "receiver": receiver, "groupLabels": {}, "commonLabels": labels,
        "commonAnnotations": common([a.annotations for a in batch]), "externalURL": "",
        "alerts": [alert_json(a) for a in batch],
    }


class WebhookNotifier(HttpNotifier):
    max_batch = 64

    def send(self, batch: List[AlertDoc]) -> None:
        post_json(self.session, self.channel.urls[0], payload(batch, self.channel.name), self.channel.timeout,
                  self.channel.secrets())
