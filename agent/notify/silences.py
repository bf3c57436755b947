"""Silences, as Alertmanager keeps them: matchers, a start, an end, who and why. An active
silence mutes the firing and resolved notifications of every alert it matches; the alert
still shows (state "suppressed", `silencedBy`) and, if it still fires when the silence ends,
is announced then.

Maintenance is a silence the agent made for `llm-agent maintenance`: the whole host (every
alert) or one target (`server="NAME"`). While one is active `/healthz` answers 503 with the
reason "maintenance", so a load balancer drains the box, and `check` shows a banner.

Silences live in the state database (table `silences`) and in memory; a write the disk refuses
is kept in memory and retried each cycle (`sync`), like the outbox. Expired silences are kept
for RETENTION (Alertmanager's default) so `amtool silence query --expired` shows them.

`parse_postable` reads Alertmanager API v2's postableSilence and raises ValueError with the
reason for anything it would refuse.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import regex
from ..labels import Matcher
from ..labels import matches
from ..store import Store
from ..timefmt import iso, parse_rfc3339

log = logging.getLogger(__name__)

RETENTION = 120 * 3600.0  # expired silences are kept this long (Alertmanager's --data.retention)
MAX_SILENCES = 10_000  # a runaway script cannot grow the database without bound
MAINTENANCE_AUTHOR = "llm-agent maintenance"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OPS = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: Tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float
    # "maintenance": a window made by `llm-agent maintenance` on the host itself (it drains the box:
    # /healthz 503). Set by the API only for a request that may (its `?maintenance=1`, from loopback
    # or with credentials), never from `createdBy`, which any client can write
    kind: str = ""

    def state(self, now: float) -> str:
        """pending, active or expired (Alertmanager's silenceStatus)."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    @property
    def maintenance(self) -> bool:
        return self.kind == "maintenance"

    @property
    def target(self) -> str:
        """A maintenance silence's target ("" for the whole host)."""
        return next((m.value for m in self.matchers if m.label == "server" and m.op == "="), "")

    def to_api(self, now: float) -> Dict[str, Any]:
        """Alertmanager API v2's gettableSilence."""
        return {"id": self.id, "status": {"state": self.state(now)}, "updatedAt": iso(self.updated_at),
                "matchers": [{"name": m.label, "value": m.value, "isRegex": m.op in ("=~", "!~"),
                              "isEqual": m.op in ("=", "=~")} for m in self.matchers],
                "startsAt": iso(self.starts_at), "endsAt": iso(self.ends_at), "createdBy": self.created_by,
                "comment": self.comment}


def _matcher(doc: Any, i: int) -> Matcher:
    if not isinstance(doc, dict):
        raise ValueError(f"matchers[{i}]: expected an object with name, value, isRegex")
    name, value, is_regex, is_equal = doc.get("name"), doc.get("value"), doc.get("isRegex"), doc.get("isEqual", True)
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        raise ValueError(f"matchers[{i}]: invalid label name {name!r}")
    if not isinstance(value, str) or not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise ValueError(f"matchers[{i}] ({name}): value must be a string, isRegex and isEqual booleans")
    op = _OPS[(is_regex, is_equal)]
    if is_regex:
        try:
            regex.check(value)
        except regex.RegexError as e:
            raise ValueError(f"matchers[{i}] ({name}): {e}") from None
    return Matcher(name, op, value)


def parse_postable(doc: Any, now: float) -> Tuple[Optional[str], Silence]:
    """(the id to update or None, the silence) from a postableSilence; ValueError says why not."""
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object (a postableSilence)")
    raw = doc.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise ValueError("matchers: at least one matcher is required")
    if len(raw) > 64:
        raise ValueError("matchers: at most 64")
    found = tuple(_matcher(m, i) for i, m in enumerate(raw))
    if all(matches([m], {}) for m in found):
        raise ValueError("at least one matcher must not match the empty string (it would silence every alert)")
    starts, ends = parse_rfc3339(doc.get("startsAt")), parse_rfc3339(doc.get("endsAt"))
    if starts is None or ends is None:
        raise ValueError("startsAt and endsAt must be RFC 3339 times")
    if ends <= starts:
        raise ValueError("endsAt must be after startsAt")
    if ends <= now:
        raise ValueError("endsAt is in the past: the silence would never be active")
    created_by, comment = doc.get("createdBy"), doc.get("comment")
    if not isinstance(created_by, str) or not created_by.strip():
        raise ValueError("createdBy is required")
    if not isinstance(comment, str) or not comment.strip():
        raise ValueError("comment is required")
    if len(created_by) > 256 or len(comment) > 4096:
        raise ValueError("createdBy (256) or comment (4096 characters) too long")
    sid = doc.get("id")
    if sid is not None and (not isinstance(sid, str) or len(sid) > 64):
        raise ValueError("id must be a silence's id")
    return (sid or None), Silence("", found, max(starts, now), ends, created_by.strip(),
                                  comment.strip(), now)


@dataclass
class _Held:
    """What the database has not yet taken (a full disk)."""

    unsaved: Dict[str, Silence] = field(default_factory=dict)
    undeleted: set = field(default_factory=set)


class Silences:
    """The silences, shared by the engine (each cycle) and the API (worker threads)."""

    def __init__(self, store: Store, clock: Callable[[], float]):
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._held = _Held()
        self.by_id: Dict[str, Silence] = {}
        self._version = 0  # bumped by every change: the active-silence cache is for one version
        self._active: Optional[Tuple[float, int, List[Silence]]] = None
        with store.lock:
            rows = store.db.execute("SELECT id, doc FROM silences").fetchall()
        for sid, doc in rows:
            try:
                self.by_id[sid] = _from_row(sid, json.loads(doc))
            except (ValueError, TypeError, KeyError) as e:
                log.error("silences: skipped an unreadable silence %s in %s: %s", sid, store.path, e)

    # -- writing -----------------------------------------------------------------------------------

    def add(self, silence: Silence, update_id: Optional[str] = None) -> str:
        """Create a silence, or update the one called `update_id` (KeyError: no such silence;
        an expired one cannot be changed: a new one is made, as Alertmanager does)."""
        now = self.clock()
        with self._lock:
            old = self.by_id.get(update_id) if update_id else None
            if update_id and old is None:
                raise KeyError(update_id)
            if old is not None and old.state(now) != "expired":
                new = replace(silence, id=old.id, updated_at=now)
            else:
                if sum(1 for s in self.by_id.values() if s.state(now) != "expired") >= MAX_SILENCES:
                    raise ValueError(f"too many silences (at most {MAX_SILENCES} not expired)")
                import uuid  # memory cost: a silence is new rarely; the module stays out of the agent's RSS

                new = replace(silence, id=str(uuid.uuid4()), updated_at=now)
            self.by_id[new.id] = new
            self._version += 1
            self._save([new])
        return new.id

    def expire(self, sid: str) -> Silence:
        """End a silence now (KeyError: unknown). A pending one ends before it began."""
        now = self.clock()
        with self._lock:
            old = self.by_id[sid]
            if old.state(now) == "expired":
                return old
            new = replace(old, starts_at=min(old.starts_at, now), ends_at=now, updated_at=now)
            self.by_id[sid] = new
            self._version += 1
            self._save([new])
        return new

    def _save(self, silences: List[Silence]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO silences (id, doc) VALUES (?, ?)",
                           [(s.id, json.dumps(_to_row(s))) for s in silences])

        if self.store.write("silences", work):
            for s in silences:
                self._held.unsaved.pop(s.id, None)
        else:
            self._held.unsaved.update((s.id, s) for s in silences)

    def sync(self) -> None:
        """Each cycle: save what the disk refused, and forget silences expired for RETENTION."""
        now = self.clock()
        with self._lock:
            old = [sid for sid, s in self.by_id.items() if now - s.ends_at > RETENTION]
            for sid in old:
                del self.by_id[sid]
                self._held.unsaved.pop(sid, None)
            self._version += bool(old)
            self._held.undeleted.update(old)
            if self._held.unsaved:
                self._save(list(self._held.unsaved.values()))
            if self._held.undeleted:
                ids = sorted(self._held.undeleted)

                def work(db: sqlite3.Connection) -> None:
                    db.executemany("DELETE FROM silences WHERE id=?", [(i,) for i in ids])

                if self.store.write("silences", work):
                    self._held.undeleted.clear()
            if not self._held.unsaved and not self._held.undeleted:
                self.store.recovered("silences")

    # -- reading -----------------------------------------------------------------------------------

    def all(self) -> List[Silence]:
        with self._lock:
            return sorted(self.by_id.values(), key=lambda s: (s.ends_at, s.id))

    def get(self, sid: str) -> Optional[Silence]:
        with self._lock:
            return self.by_id.get(sid)

    def active(self, now: Optional[float] = None) -> List[Silence]:
        """Active at `now`; remembered for that moment until the next write, since the engine asks
        once per firing alert each cycle (a storm of 500 alerts must not sort the silences 500 times)."""
        t = self.clock() if now is None else now
        with self._lock:
            cached = self._active
            if cached is not None and cached[0] == t and cached[1] == self._version:
                return cached[2]
            found = [s for s in self.by_id.values() if s.state(t) == "active"]
            self._active = (t, self._version, found)
            return found

    def silencing(self, labels: Dict[str, str], now: float) -> Tuple[str, ...]:
        """The ids of the active silences that match `labels`."""
        return tuple(s.id for s in self.active(now) if matches(s.matchers, labels))

    def maintenance(self, now: Optional[float] = None) -> List[Silence]:
        """Active maintenance windows (whole host first)."""
        return sorted((s for s in self.active(now) if s.maintenance), key=lambda s: (s.target != "", s.target))

    def counts(self, now: float) -> Dict[str, int]:
        out = {"active": 0, "pending": 0, "expired": 0}
        for s in self.all():
            out[s.state(now)] += 1
        return out


def _to_row(s: Silence) -> Dict[str, Any]:
    return {"matchers": [[m.label, m.op, m.value] for m in s.matchers], "starts_at": s.starts_at,
            "ends_at": s.ends_at, "created_by": s.created_by, "comment": s.comment, "updated_at": s.updated_at,
            "kind": s.kind}


def _from_row(sid: str, doc: Dict[str, Any]) -> Silence:
    # a row from before `kind`: its maintenance windows were the ones `llm-agent maintenance` made
    kind = str(doc["kind"]) if "kind" in doc else ("maintenance" if doc["created_by"] == MAINTENANCE_AUTHOR else "")
    return Silence(sid, tuple(Matcher(str(a), str(op), str(b)) for a, op, b in doc["matchers"]),
                   float(doc["starts_at"]), float(doc["ends_at"]), str(doc["created_by"]), str(doc["comment"]),
                   float(doc["updated_at"]), kind)


def covers_host(matchers: Sequence[Matcher], rules: Sequence[Dict[str, str]]) -> bool:
    """Whether a silence's matchers match every alert rule of the host (each rule's alertname,
    severity and static labels; labels a rule does not set read as empty): `alertname=~".+"` or
    `severity=~"critical|warning|info"` silence the whole host, `server="a"` does not."""
    return bool(rules) and all(matches(matchers, labels) for labels in rules)


def maintenance_silence(duration: float, target: str, comment: str, now: float) -> Dict[str, Any]:
    """The postableSilence `llm-agent maintenance` sends: every alert of the host, or one target's."""
    matcher = {"name": "server", "value": target, "isRegex": False, "isEqual": True} if target else \
        {"name": "alertname", "value": ".+", "isRegex": True, "isEqual": True}
    return {"matchers": [matcher], "startsAt": iso(now), "endsAt": iso(now + duration),
            "createdBy": MAINTENANCE_AUTHOR, "comment": comment or "maintenance"}
