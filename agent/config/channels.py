"""Every kind of [[notify]] channel, declared once, as Alertmanager declares its receivers: the
settings it needs, what of the [[notify]] table its notifier takes as options, what it can do
(group alerts itself, receive reports, is a pager), and where its notifier is. The schema, the
config's checks, the wiring (alerting.channels_from), the router and the dispatcher all read
this table; a new channel is its notifier's module (agent/notify/<type>.py), its row here, and
its docs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Tuple


def _none(settings: Any, external_labels: Mapping[str, str]) -> Dict[str, object]:
    return {}


def _email(d: Any, external_labels: Mapping[str, str]) -> Dict[str, object]:
    return {"smarthost": d.smarthost, "from": d.from_, "to": list(d.to), "auth_username": d.auth_username,
            "require_tls": d.require_tls, "tls_ca_file": d.tls_ca_file, "headers": dict(d.headers), "subject": d.subject}


def _opsgenie(d: Any, external_labels: Mapping[str, str]) -> Dict[str, object]:
    return {"region": d.region, "priorities": dict(d.priorities)}


def _alertmanager(d: Any, external_labels: Mapping[str, str]) -> Dict[str, object]:
    return {"external_labels": dict(external_labels)}


@dataclass(frozen=True)
class ChannelKind:
    type: str
    notifier: str  # "module:Class" under agent.notify, imported when a channel of this kind is built
    needs: Tuple[str, ...]  # [[notify]] keys a channel of this kind must set
    options: Callable[[Any, Mapping[str, str]], Dict[str, object]] = _none  # (settings, external labels) -> options
    groups: bool = True  # grouped by the agent (group_by ...); False: one row per alert, the receiver groups
    reports: bool = False  # takes [[reports]] (chat and webhooks; a pager is for incidents)
    http: bool = True  # its notifier posts over HTTP (a requests session); False: it brings its own transport


KINDS: Tuple[ChannelKind, ...] = (
    ChannelKind("slack", "slack:SlackNotifier", ("url",), reports=True),
    ChannelKind("webhook", "webhook:WebhookNotifier", ("url",), reports=True),
    ChannelKind("pagerduty", "pagerduty:PagerDutyNotifier", ("routing_key",)),
    ChannelKind("alertmanager", "alertmanager:AlertmanagerNotifier", ("urls",), _alertmanager, groups=False),
    ChannelKind("email", "email:EmailNotifier", ("smarthost", "from", "to"), _email, http=False),
    ChannelKind("teams", "teams:TeamsNotifier", ("url",)),
    ChannelKind("opsgenie", "opsgenie:OpsgenieNotifier", ("api_key",), _opsgenie),
)
BY_TYPE: Dict[str, ChannelKind] = {k.type: k for k in KINDS}
TYPES = tuple(BY_TYPE)


def kind_of(channel_type: str) -> ChannelKind:
    return BY_TYPE[channel_type]
