"""Alert groups per channel, with Alertmanager's semantics, so eight GPUs overheating at once
are one message, not eight.

A channel's alerts are grouped by the values of its `group_by` labels (`["..."]`: every label,
so each alert is its own group). A new group waits `group_wait` for more alerts and is then
sent whole; later changes (new alerts, resolves) are sent at most every `group_interval`; a
group whose alerts still fire, unchanged, is sent again after `repeat_interval`. Each message
lists the whole group: what fires now and what resolved since the last message, with which of
them changed (per-alert channels such as PagerDuty send only those).

The agent's defaults differ from Alertmanager's where a local agent's point is speed: a new
group waits 0 s (it still gathers every alert raised in the same evaluation cycle, which is
what a fault on eight GPUs does), changes wait at most 1 min, repeats come every 4 h.

Groups are kept in the state database (table `alert_groups`) at every change, so a group
waiting in group_wait or group_interval survives kill -9; a write the disk refuses is kept in
memory and retried (`sync`). The flush is the one place that turns group state into outbox
rows: one row per message, in order, delivered by the dispatcher like any other.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from ..digest import sha256_hex
from ..store import Store
from .base import AlertDoc

log = logging.getLogger(__name__)

EVERY_LABEL = "..."  # group_by = ["..."]: group by all labels (Alertmanager's spelling)


@dataclass(frozen=True)
class GroupSettings:
    group_by: Tuple[str, ...] = ("alertname",)
    group_wait: float = 0.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0


def group_labels(labels: Dict[str, str], group_by: Tuple[str, ...]) -> Dict[str, str]:
    if group_by == (EVERY_LABEL,):
        return dict(labels)
    return {k: labels[k] for k in group_by if k in labels}


def group_key(labels: Dict[str, str]) -> str:
    """Alertmanager's groupKey for a route without a path: `{}:{a="b",...}`."""
    return "{}:{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


@dataclass
class Group:
    channel: str
    key: str
    labels: Dict[str, str]
    alerts: Dict[str, AlertDoc] = field(default_factory=dict)  # by fingerprint: each alert's latest state
    changed: Set[str] = field(default_factory=set)  # fingerprints changed since the last message
    changed_at: float = 0.0  # first change not yet sent (0: none)
    flushed_at: float = 0.0  # last message (0: never sent)

    def to_json(self) -> str:
        return json.dumps({"labels": self.labels, "alerts": [json.loads(a.to_json()) for a in self.alerts.values()],
                           "changed": sorted(self.changed), "changed_at": self.changed_at, "flushed_at": self.flushed_at})

    @classmethod
    def from_json(cls, channel: str, key: str, text: str) -> "Group":
        doc = json.loads(text)
        alerts = {a["fingerprint"]: AlertDoc(**a) for a in doc["alerts"]}
        return cls(channel, key, dict(doc["labels"]), alerts, set(doc["changed"]), float(doc["changed_at"]),
                   float(doc["flushed_at"]))


@dataclass(frozen=True)
class Message:
    """What one flush sends: the group's key and labels, its alerts (firing first), and the
    fingerprints that changed since the previous message (all firing ones on a repeat)."""

    key: str
    labels: Dict[str, str]
    alerts: List[AlertDoc]
    changed: Tuple[str, ...]

    @property
    def status(self) -> str:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    def to_json(self) -> str:
        return json.dumps({"group_key": self.key, "group_labels": self.labels, "changed": list(self.changed),
                           "alerts": [json.loads(a.to_json()) for a in self.alerts]}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Message":
        """A row's payload: a group message, or (older rows, test alerts, reports) one alert."""
        doc = json.loads(text)
        if isinstance(doc, dict) and "group_key" in doc:
            return cls(str(doc["group_key"]), dict(doc["group_labels"]), [AlertDoc(**a) for a in doc["alerts"]],
                       tuple(doc["changed"]))
        alert = AlertDoc(**doc)
        return cls("", {}, [alert], (alert.fingerprint,))  # key "": not a group


SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def incident_docs(batch: List[AlertDoc], group: Optional[Message], one_per_group: bool) -> List[AlertDoc]:
    """What an incident channel (PagerDuty, Opsgenie) sends for a message: each alert that
    changed (its dedup key the alert's), or with `one_per_group` one incident for the whole
    group (its key the group's; open while any member fires)."""
    if group is None:
        return batch
    if not one_per_group:
        changed = set(group.changed)
        return [a for a in batch if a.fingerprint in changed]
    firing = [a for a in batch if a.status == "firing"]
    shown = firing or batch
    names = sorted({a.labels.get("alertname", "alert") for a in shown})
    severity = min((a.labels.get("severity", "warning") for a in shown), key=lambda x: SEVERITY_RANK.get(x, 9))
    summary = f"{len(firing)} firing: " + "; ".join(a.annotations.get("summary") or a.labels.get("alertname", "")
                                                   for a in firing[:5]) if firing else "all resolved"
    labels = {"alertname": ", ".join(names), "severity": severity, **group.labels}
    annotations = {"summary": summary, "description": "\n".join(
        f"[{a.status}] {a.labels.get('alertname', '')}: {a.annotations.get('summary', '')}" for a in batch)}
    starts = min(a.starts_at for a in batch)
    ends = 0.0 if firing else max(a.ends_at for a in batch)
    fingerprint = "group-" + sha256_hex(group.key, 16)
    return [AlertDoc("firing" if firing else "resolved", labels, annotations, starts, ends, float(len(firing)),
                     fingerprint, any(a.test for a in batch))]


class Grouper:
    """Every channel's groups; used from the evaluation cycle only (its own lock for readers)."""

    def __init__(self, store: Store):
        self.store = store
        self.groups: Dict[Tuple[str, str], Group] = {}
        self._member: Dict[Tuple[str, str], str] = {}  # (channel, fingerprint) -> its group's key
        self._unsaved: Set[Tuple[str, str]] = set()  # groups the disk refused (saved or deleted later)
        with store.lock:
            rows = store.db.execute("SELECT channel, key, doc FROM alert_groups").fetchall()
        for channel, key, doc in rows:
            try:
                self._index(Group.from_json(channel, key, doc))
            except (ValueError, TypeError, KeyError) as e:
                log.error("alert groups: skipped an unreadable group of %s in %s: %s", channel, store.path, e)

    def _index(self, group: Group) -> None:
        self.groups[(group.channel, group.key)] = group
        for fp in group.alerts:
            self._member[(group.channel, fp)] = group.key

    # -- changes ---------------------------------------------------------------------------------

    def add(self, channel: str, settings: GroupSettings, alert: AlertDoc, now: float) -> None:
        """An alert fired, fired again or resolved: into its group (the one it is in already,
        even if group_by changed since), marked changed."""
        key = self._member.get((channel, alert.fingerprint))
        if key is None:
            labels = group_labels(alert.labels, settings.group_by)
            key = group_key(labels)
            group = self.groups.get((channel, key))
            if group is None:
                group = self.groups[(channel, key)] = Group(channel, key, labels)
        group = self.groups[(channel, key)]
        group.alerts[alert.fingerprint] = alert
        group.changed.add(alert.fingerprint)
        group.changed_at = group.changed_at or now
        self._member[(channel, alert.fingerprint)] = key
        self._save([group])

    def forget_channel(self, channel: str) -> None:
        """A channel removed from the configuration: its groups go with it."""
        gone = [g for (c, _), g in self.groups.items() if c == channel]
        for g in gone:
            g.alerts.clear()
        self._drop(gone)

    # -- flushing --------------------------------------------------------------------------------

    def flush(self, channel: str, settings: GroupSettings, now: float, send_resolved: bool = True,
              firing_now: Optional[Set[str]] = None, held: Iterable[str] = (),
              silenced: Callable[[Dict[str, str]], bool] = lambda labels: False) -> List[Message]:
        """The messages `channel` is due now, oldest group first. `firing_now`: the
        fingerprints that still fire: a member that fires no more without a resolve (one of a
        removed rule) is sent resolved, as Alertmanager resolves it when it expires, unless a
        silence mutes it now (its resolve was muted); `held`: fingerprints silenced or
        inhibited now, left out of the message."""
        held = set(held)
        out = []
        for group in sorted((g for (c, _), g in self.groups.items() if c == channel), key=lambda g: g.key):
            if firing_now is not None:
                self._vanished(group, firing_now, silenced, now)
            if not group.alerts:
                self._drop([group])
                continue
            repeat = False
            if group.changed_at:
                due = group.changed_at + settings.group_wait if not group.flushed_at else \
                    group.flushed_at + settings.group_interval
            elif group.flushed_at and any(a.status == "firing" for a in group.alerts.values()):
                due, repeat = group.flushed_at + settings.repeat_interval, True
            else:
                continue
            if now < due:
                continue
            message = self._message(group, send_resolved, held, repeat)
            if message is not None:
                out.append(message)
            group.flushed_at, group.changed_at, group.changed = now, 0.0, set()
            for fp in [fp for fp, a in group.alerts.items() if a.status == "resolved"]:
                del group.alerts[fp]
                self._member.pop((channel, fp), None)
            if group.alerts:
                self._save([group])
            else:
                self._drop([group])
        return out

    def _vanished(self, group: Group, firing_now: Set[str], silenced: Callable[[Dict[str, str]], bool],
                  now: float) -> None:
        for fp, alert in list(group.alerts.items()):
            if alert.status != "firing" or fp in firing_now:
                continue
            if silenced(alert.labels):  # its resolve was muted: it leaves the group unannounced
                del group.alerts[fp]
                group.changed.discard(fp)
                self._member.pop((group.channel, fp), None)
                continue
            group.alerts[fp] = AlertDoc("resolved", alert.labels, alert.annotations, alert.starts_at, now,
                                        alert.value, fp, alert.test)
            group.changed.add(fp)
            group.changed_at = group.changed_at or now
        if not group.alerts:
            group.changed_at = 0.0

    @staticmethod
    def _message(group: Group, send_resolved: bool, held: Set[str], repeat: bool) -> Optional[Message]:
        alerts = [a for a in group.alerts.values() if a.fingerprint not in held and (a.status == "firing" or send_resolved)]
        if not any(a.status == "firing" for a in alerts) and not send_resolved:
            return None
        changed = {fp for fp in group.changed if fp not in held}
        if repeat:
            changed = {a.fingerprint for a in alerts if a.status == "firing"}
        if not alerts or not changed & {a.fingerprint for a in alerts}:
            return None  # nothing this channel shows changed (a resolve it does not send, a held alert)
        alerts.sort(key=lambda a: (a.status != "firing", a.starts_at, a.fingerprint))
        return Message(group.key, dict(group.labels), alerts, tuple(sorted(changed)))

    # -- persistence -----------------------------------------------------------------------------

    def _save(self, groups: List[Group]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO alert_groups (channel, key, doc) VALUES (?, ?, ?)",
                           [(g.channel, g.key, g.to_json()) for g in groups])

        ids = [(g.channel, g.key) for g in groups]
        if self.store.write("alert_groups", work):
            self._unsaved.difference_update(ids)
        else:
            self._unsaved.update(ids)

    def _drop(self, groups: List[Group]) -> None:
        for g in groups:
            self.groups.pop((g.channel, g.key), None)
            for fp in list(g.alerts):
                self._member.pop((g.channel, fp), None)

        def work(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM alert_groups WHERE channel=? AND key=?", [(g.channel, g.key) for g in groups])

        ids = [(g.channel, g.key) for g in groups]
        if self.store.write("alert_groups", work):
            self._unsaved.difference_update(ids)
        else:
            self._unsaved.update(ids)

    def sync(self) -> None:
        """Each cycle: write what the disk refused (the groups as they are now, or their removal)."""
        if not self._unsaved:
            return
        keep = [self.groups[i] for i in self._unsaved if i in self.groups]
        gone = [i for i in self._unsaved if i not in self.groups]

        def work(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO alert_groups (channel, key, doc) VALUES (?, ?, ?)",
                           [(g.channel, g.key, g.to_json()) for g in keep])
            db.executemany("DELETE FROM alert_groups WHERE channel=? AND key=?", gone)

        if self.store.write("alert_groups", work):
            self._unsaved.clear()
            self.store.recovered("alert_groups")

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for channel, _ in self.groups:
            out[channel] = out.get(channel, 0) + 1
        return out

