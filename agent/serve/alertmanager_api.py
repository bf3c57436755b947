"""Alertmanager's API v2 for silences and alerts on the agent's port, so `amtool
--alertmanager.url=http://host:9400 silence add|query|expire` and `amtool alert query` work
unchanged (tests drive it with the real amtool).

- GET/POST /api/v2/silences, GET/DELETE /api/v2/silence/{id}
- GET /api/v2/alerts (active, silenced, inhibited, unprocessed, filter, receiver), as of the
  last evaluation, with silences applied as of now (a new silence shows at once)
- GET /api/v2/status, /api/v2/receivers

Writes change what pages: a cross-site one (not JSON, a foreign Origin, a Host the agent does
not answer to: websecurity.py) is refused whoever sends it; with basic auth configured they
need it (the exporter checks that for every path); without, they are accepted only from
loopback or `[exporter] api_write_from` networks, else 403, counted by reason. Errors are
Alertmanager's: a JSON string saying why.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from .. import __version__, regex
from ..notify.silences import MAINTENANCE_AUTHOR, Silence, Silences, covers_host, parse_postable
from ..labels import Matcher
from ..labels import matches
from ..promql.parser import PromQLError, parse_matcher
from ..timefmt import iso
from .websecurity import WRITES, cross_site_refusal, local_names

JSON = "application/json"
_BRACED = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^,}]*?)\s*(?:,|$)')
Reply = Tuple[int, bytes, str]


def parse_filter(text: str) -> List[Matcher]:
    """One `filter` parameter: `name="value"` (any of = != =~ !~, quoted or not) or a braced
    list `{a="b",c=~"d"}`; PromQLError says what is wrong."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        inner, out, pos = text[1:-1], [], 0
        while pos < len(inner.rstrip()):
            m = _BRACED.match(inner, pos)
            if not m or m.end() == pos:
                raise PromQLError(f"invalid matcher list {text!r}")
            out.append(parse_matcher(f"{m.group(1)}{m.group(2)}{m.group(3)}"))
            pos = m.end()
        return out
    return [parse_matcher(text)]


def _address(client: str) -> Any:
    """The client's IP address (an IPv4-mapped IPv6 one as IPv4), or None."""
    try:
        addr = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return None
    return getattr(addr, "ipv4_mapped", None) or addr


def _loopback(client: str) -> bool:
    addr = _address(client)
    return addr is not None and addr.is_loopback


def _asked(query: Dict[str, List[str]], name: str) -> bool:
    """A write's opt-in (`?maintenance=1`, `?force=1`): off unless given."""
    return (query.get(name) or [""])[-1].lower() in ("1", "true", "yes")


def _allowed(networks: Sequence[str]) -> List[Any]:
    return [ipaddress.ip_network(n, strict=False) for n in networks]


class AlertmanagerAPI:
    def __init__(self, silences: Silences, alerts: Callable[[], List[Dict[str, Any]]], receivers: Callable[[], List[str]],
                 clock: Callable[[], float], hostname: str, auth_configured: bool = False,
                 write_from: Sequence[str] = (), config_text: Callable[[], str] = lambda: ""):
        self.silences = silences
        self.alerts = alerts  # the last evaluation's firing alerts (Alerting.api_v2_alerts)
        self.receivers = receivers
        self.clock = clock
        self.hostname = hostname
        self.auth_configured = auth_configured
        self.write_from = _allowed(write_from)
        self.config_text = config_text
        self.started = clock()
        self.refused: Dict[str, int] = {}  # writes refused, by reason
        self._lock = threading.Lock()
        self.allowed_hosts = local_names()  # with [exporter] allowed_hosts, by configure()
        self.rule_labels: Callable[[], List[Dict[str, str]]] = list  # each alert rule's own labels (covers_host)

    def configure(self, auth_configured: bool, write_from: Sequence[str], allowed_hosts: Sequence[str] = ()) -> None:
        self.auth_configured, self.write_from = auth_configured, _allowed(write_from)
        self.allowed_hosts = tuple(sorted(set(local_names()) | {h.lower() for h in allowed_hosts}))

    def handle(self, method: str, target: str, body: bytes, client: str,
               headers: Optional[Dict[str, str]] = None) -> Reply:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        if method in WRITES:
            refusal = self.refuse_write(client, method, headers or {})
            if refusal:
                return refusal
        try:
            if path == "/api/v2/silences":
                if method == "POST":
                    return self._post_silence(body, query, self.privileged(client))
                return self._only_get(method) or self._get_silences(query)
            if path.startswith("/api/v2/silence/"):
                sid = path[len("/api/v2/silence/"):]
                if method == "DELETE":
                    return self._delete_silence(sid)
                return self._only_get(method, "GET, DELETE") or self._get_silence(sid)
            if path == "/api/v2/alerts":
                if method == "POST":
                    return _error(400, "this agent makes its own alerts from its rules; it does not take pushed ones")
                return self._only_get(method) or self._get_alerts(query)
            if path == "/api/v2/status":
                return self._only_get(method) or _ok(self._status())
            if path == "/api/v2/receivers":
                return self._only_get(method) or _ok([{"name": n} for n in self.receivers()])
        except PromQLError as e:
            return _error(400, str(e))
        return _error(404, f"not found: {path}")

    # -- writes -------------------------------------------------------------------------------

    def refuse_write(self, client: str, method: str = "POST", headers: Optional[Dict[str, str]] = None) -> Optional[Reply]:
        """Why a write must be refused (a reply to send), or None: a cross-site request
        (websecurity.cross_site_refusal), whoever sends it; then, without basic auth, a client
        not on loopback or in [exporter] api_write_from."""
        cross = cross_site_refusal(method, headers or {}, self.allowed_hosts)
        if cross:
            with self._lock:
                self.refused["cross_site"] = self.refused.get("cross_site", 0) + 1
            return _error(403, cross)
        if self.auth_configured:
            return None  # the exporter let it through: it carried valid credentials
        addr = _address(client)
        if addr is not None and (addr.is_loopback or any(addr in net for net in self.write_from)):
            return None
        with self._lock:
            self.refused["not_allowed"] = self.refused.get("not_allowed", 0) + 1
        return _error(403, "writes are accepted from loopback only; list networks in [exporter] api_write_from "
                           "or configure basic_auth_users")

    def privileged(self, client: str) -> bool:
        """Who may drain the box or silence all of it: a client on this host (the `llm-agent`
        commands), or one that gave basic-auth credentials; not a network in api_write_from."""
        return self.auth_configured or _loopback(client)

    def _post_silence(self, body: bytes, query: Dict[str, List[str]], privileged: bool) -> Reply:
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return _error(400, f"the body is not JSON: {e}")
        maintenance, force = _asked(query, "maintenance"), _asked(query, "force")
        if (maintenance or force) and not privileged:
            return _error(403, "a maintenance window or a forced silence of the whole host is made on the host "
                               "itself (`llm-agent maintenance`, `llm-agent silence add --force`) or with credentials")
        try:
            update_id, silence = parse_postable(doc, self.clock())
            if silence.created_by == MAINTENANCE_AUTHOR and not maintenance:
                raise ValueError(f"createdBy {MAINTENANCE_AUTHOR!r} is reserved for `llm-agent maintenance`")
            if not maintenance and not force and covers_host(silence.matchers, self.rule_labels()):
                raise ValueError("it would silence every alert of this host; for a window use `llm-agent "
                                 "maintenance`, or `llm-agent silence add --force` on the host itself")
            if maintenance:
                silence = replace(silence, kind="maintenance")
            sid = self.silences.add(silence, update_id)
        except ValueError as e:
            return _error(400, f"silence invalid: {e}")
        except KeyError:
            return _error(404, "a silence with the specified ID was not found")
        return _ok({"silenceID": sid})

    def _delete_silence(self, sid: str) -> Reply:
        try:
            self.silences.expire(sid)
        except KeyError:
            return _error(404, "a silence with the specified ID was not found")
        return 200, b"", JSON

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def _only_get(method: str, allow: str = "GET") -> Optional[Reply]:
        return None if method in ("GET", "HEAD") else _error(405, f"method not allowed: use {allow}")

    def _get_silence(self, sid: str) -> Reply:
        found = self.silences.get(sid)
        if found is None:
            return _error(404, "a silence with the specified ID was not found")
        return _ok(found.to_api(self.clock()))

    def _get_silences(self, query: Dict[str, List[str]]) -> Reply:
        wanted = [m for f in query.get("filter", []) for m in parse_filter(f)]
        now = self.clock()
        order = {"active": 0, "pending": 1, "expired": 2}
        found = [s for s in self.silences.all() if all(_silence_has(s, m) for m in wanted)]
        found.sort(key=lambda s: (order[s.state(now)], s.ends_at if s.state(now) != "expired" else -s.ends_at))
        return _ok([s.to_api(now) for s in found])

    def _get_alerts(self, query: Dict[str, List[str]]) -> Reply:
        flags = {k: _flag(query, k) for k in ("active", "silenced", "inhibited", "unprocessed")}
        wanted = [m for f in query.get("filter", []) for m in parse_filter(f)]
        receiver = query.get("receiver", [""])[0]
        if receiver:
            try:
                regex.check(receiver)
            except regex.RegexError as e:
                raise PromQLError(f"receiver: {e}") from None
        now = self.clock()
        out = []
        for alert in self.alerts():
            labels = alert["labels"]
            if not matches(wanted, labels):
                continue
            receivers = alert["receivers"]
            if receiver and not any(regex.fullmatch(receiver, r) for r in receivers):
                continue
            silenced_by = list(self.silences.silencing(labels, now))
            inhibited_by = [alert["inhibited_by"]] if alert["inhibited_by"] else []
            suppressed = bool(silenced_by or inhibited_by)
            if (not suppressed and not flags["active"]) or (silenced_by and not flags["silenced"]) \
                    or (inhibited_by and not flags["inhibited"]):
                continue
            out.append({"labels": labels, "annotations": alert["annotations"], "startsAt": alert["startsAt"],
                        "updatedAt": alert["updatedAt"], "endsAt": alert["endsAt"], "fingerprint": alert["fingerprint"],
                        "generatorURL": "", "receivers": [{"name": r} for r in receivers],
                        "status": {"state": "suppressed" if suppressed else "active", "silencedBy": silenced_by,
                                   "inhibitedBy": inhibited_by}})
        return _ok(out)

    def _status(self) -> Dict[str, Any]:
        return {"cluster": {"name": self.hostname, "status": "disabled", "peers": []},
                "versionInfo": {"version": f"llm-agent {__version__}", "revision": "", "branch": "", "buildUser": "",
                                "buildDate": "", "goVersion": ""},
                "config": {"original": self.config_text()}, "uptime": iso(self.started)}


def _silence_has(silence: Silence, wanted: Matcher) -> bool:
    """Alertmanager's silence filter: the silence has a matcher on that label whose value the
    filter matches."""
    return any(m.label == wanted.label and matches([wanted], {m.label: m.value}) for m in silence.matchers)


def _flag(query: Dict[str, List[str]], name: str) -> bool:
    value = query.get(name, ["true"])[0].lower()
    if value not in ("true", "false", "1", "0", ""):
        raise PromQLError(f"{name}: expected true or false, got {value!r}")
    return value in ("true", "1", "")


def _ok(doc: Any) -> Reply:
    return 200, json.dumps(doc).encode(), JSON


def _error(code: int, message: str) -> Reply:
    return code, json.dumps(message).encode() + b"\n", JSON
