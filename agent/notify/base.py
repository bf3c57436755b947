"""What every channel shares: the notifier contract, the one status table, and redaction.

Contract (Alertmanager notify/): `send(batch)` returns None on success or raises
NotifyError(retryable, retry_after). Status table for every channel: 2xx delivered; 408,
429 and 5xx retried (honouring Retry-After); any other 4xx failed for good; connection
errors and timeouts retried. Messages never contain a URL, header or routing key.

Why notifiers use `requests` while targets and probes share `collectors/http.py`: notifiers talk
to public HTTPS services (Slack, PagerDuty, Opsgenie...) and want what requests brings, a CA
bundle, redirects, pooled sessions per host; a page or two a minute makes its cost irrelevant.
Targets are scraped every cycle, mostly over loopback, where requests cost 7 ms of CPU a cycle
(its per-call proxy-environment scan) against 0.1 ms for http.client with one deadline, and
~0.03 ms for the collectors' own GET (collectors/wire.py).
"""

from __future__ import annotations

import base64

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from ..timefmt import iso  # noqa: F401  (the channels' one time format)

# urllib3 logs each request line at DEBUG, and a webhook's path is its secret: never let it through
logging.getLogger("urllib3").setLevel(logging.WARNING)


class NotifyError(Exception):
    """A failed delivery. `retryable`: try again later; `retry_after`: the receiver's wish."""

    def __init__(self, message: str, retryable: bool, retry_after: Optional[float] = None, status: int = 0):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@dataclass
class AlertDoc:
    """One alert as channels see it (stored in the outbox as JSON)."""

    status: str  # firing | resolved
    labels: Dict[str, str]
    annotations: Dict[str, str]
    starts_at: float
    ends_at: float  # 0 while firing
    value: float
    fingerprint: str
    test: bool = False

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AlertDoc":
        return cls(**json.loads(text))

    @property
    def marker(self) -> str:
        """What a title starts with: "[TEST] " for `llm-agent test-alert`, "[DRILL] " for a fire
        drill's alert (`llm-agent drill`), else nothing."""
        return "[TEST] " if self.test else "[DRILL] " if self.labels.get("drill") == "true" else ""


def batch_marker(batch: Sequence[AlertDoc]) -> str:
    """The marker of a message of several alerts: TEST or DRILL when any of them is one."""
    return next((a.marker for a in batch if a.marker), "")


@dataclass
class Channel:
    """A configured destination."""

    name: str
    type: str
    urls: List[str] = field(default_factory=list, repr=False)
    routing_key: str = field(default="", repr=False)
    password: str = field(default="", repr=False)  # SMTP auth_password, Opsgenie's api_key
    options: Dict[str, Any] = field(default_factory=dict)  # the type's own settings (email's smarthost...)
    # Alertmanager's grouping (notify/grouping.py); alertmanager channels are not grouped here
    group_by: Tuple[str, ...] = ("alertname",)
    group_wait: float = 0.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0
    one_incident_per_group: bool = False  # PagerDuty, Opsgenie: one incident per group, not per alert
    severities: Sequence[str] = ()
    matchers: Sequence[Any] = ()
    send_resolved: bool = True
    timeout: float = 10.0
    max_age: float = 86400.0
    hostname: str = ""

    def secrets(self) -> List[str]:
        """Everything that could reveal a credential: whole URLs, their longer path segments
        and query values (a Slack hook's path is its key), passwords, the routing key, API keys."""
        out = [s for s in (self.routing_key, self.password) if s]
        for url in self.urls:
            parts = urlsplit(url)
            out.append(url)
            out.extend(seg for seg in parts.path.split("/") if len(seg) >= 8)
            out.extend(v for _, v in parse_qsl(parts.query) if len(v) >= 8)
            if parts.password:
                out.append(parts.password)
                out += credential_forms(unquote(parts.username or ""), unquote(parts.password))
        user = str(self.options.get("auth_username") or "")
        if user and self.password:
            out += credential_forms(user, self.password)  # SMTP AUTH sends them encoded too
        return sorted(set(out), key=len, reverse=True)  # longest first, so a URL goes before its parts


class HttpNotifier:
    """What every HTTP channel shares: its settings and a requests session (pooled per host).
    `max_batch`: notifications one send() takes; `min_interval`: seconds between sends."""

    max_batch = 1
    min_interval = 0.0

    def __init__(self, channel: Channel, session: Any, resend: float = 60.0):
        self.channel = channel
        self.session = session
        self.resend = resend  # Alertmanager's resend interval: what a receiver that expires alerts needs


def retry_after_seconds(value: Optional[str], now: float) -> Optional[float]:
    """Retry-After as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # memory cost: rare (a receiver's HTTP-date Retry-After), ~1 MiB spared

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def credential_forms(user: str, password: str) -> List[str]:
    """Our credentials in the encodings we send them: HTTP Basic (base64 of user:password) and
    SMTP AUTH PLAIN (base64 of NUL user NUL password): a receiver that echoes our request's
    headers must not put them into a log line or `test-alert` output."""
    return [base64.b64encode(f"{user}:{password}".encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode()]


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "<secret>")
    return text


def classify(status: int, body: str, retry_after: Optional[float]) -> None:
    """Apply the status table: return on 2xx, raise NotifyError otherwise."""
    if 200 <= status < 300:
        return
    detail = body.strip().replace("\n", " ")[:200]
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500:
        raise NotifyError(message, retryable=True, retry_after=retry_after, status=status)
    raise NotifyError(message, retryable=False, status=status)


def post_json(session: Any, url: str, payload: Any, timeout: float, secrets: Sequence[str],
              headers: Optional[Dict[str, str]] = None) -> Any:
    """POST JSON with a requests session and apply the status table; errors never carry the URL."""
    import requests  # start-up cost: an agent without channels never loads it (~8 MiB)

    try:
        resp = session.post(url, data=json.dumps(payload).encode(), timeout=timeout,
                            headers={"Content-Type": "application/json", "User-Agent": "llm-agent", **(headers or {})})
    except requests.exceptions.Timeout:
        raise NotifyError(f"no answer within {timeout:g}s", retryable=True) from None
    except requests.exceptions.ConnectionError as e:
        what = "connection refused" if "refused" in str(e).lower() else "cannot connect"
        raise NotifyError(what, retryable=True) from None
    except requests.exceptions.RequestException as e:
        raise NotifyError(f"request failed: {type(e).__name__}", retryable=True) from None
    try:
        classify(resp.status_code, redact(resp.text, secrets), retry_after_seconds(resp.headers.get("Retry-After"), time.time()))
    except NotifyError as e:
        raise NotifyError(redact(str(e), secrets), e.retryable, e.retry_after, e.status) from None
    return resp
