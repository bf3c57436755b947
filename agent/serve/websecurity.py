"""TLS and basic auth for the exporter, with the semantics of Prometheus' web configuration:
a certificate and key (reloaded when the files change), an optional client CA that then must
sign every client's certificate, and users with bcrypt password hashes. /healthz stays open
so load balancers need no credentials."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple
import socket
import ipaddress

if TYPE_CHECKING:
    import ssl


class TLSContext:
    """An SSLContext rebuilt whenever the certificate, key or client CA file changes."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = ""):
        self.files = tuple(f for f in (cert_file, key_file, client_ca_file) if f)
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self._lock = threading.Lock()
        self._stamp: Optional[Tuple[float, ...]] = None
        self._context: Optional[ssl.SSLContext] = None
        self.context()  # fail at start-up, not at the first scrape, if the files are wrong

    def _mtimes(self) -> Tuple[float, ...]:
        return tuple(os.stat(f).st_mtime_ns for f in self.files)

    def context(self) -> ssl.SSLContext:
        import ssl  # memory cost: only an agent serving TLS loads OpenSSL (~4 MiB of RSS)

        stamp = self._mtimes()
        with self._lock:
            if stamp != self._stamp or self._context is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                ctx.load_cert_chain(self.cert_file, self.key_file)
                if self.client_ca_file:
                    ctx.load_verify_locations(self.client_ca_file)
                    ctx.verify_mode = ssl.CERT_REQUIRED
                self._context, self._stamp = ctx, stamp
            return self._context


KNOWN_CLIENTS = 256  # addresses that verified, kept (a host's scrapers and operators: a handful)
KNOWN_CLIENTS_FILE = "auth-clients.json"


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, with the CPU a flood can take bounded.

    - A verified pair is remembered by a keyed digest (never the password), so a scrape costs
      bcrypt once; a refused pair is remembered too, so repeating it costs no bcrypt.
    - An unknown user is checked against a dummy hash of the same cost: the answer takes as
      long as for a known user, and does not reveal which names exist.
    - A client that keeps failing is held off (no bcrypt for it) for a time that doubles, up
      to a minute; and bcrypt runs at most `bcrypt_per_second` times a second in all. The
      pairs already verified (Prometheus' own) keep working through any of it.
    - Clients whose address has verified before (kept in `state_dir/auth-clients.json`: addresses
      only, never a credential or a digest of one) have a bcrypt budget of their own: after a
      restart, a password spray from many addresses cannot lock out the Prometheus that scraped
      the agent yesterday while it waits to be verified again.
    """

    def __init__(self, users: Dict[str, str], clock: Callable[[], float] = time.monotonic,
                 bcrypt_per_second: float = 4.0):
        import bcrypt  # start-up cost: an agent without users never loads it
        import hashlib  # memory cost: nor OpenSSL, which hmac's sha256 loads
        import hmac  # memory cost: as hashlib

        self._bcrypt = bcrypt
        key = self._key = os.urandom(32)
        self._keyed = lambda text: hmac.new(key, text, hashlib.sha256).digest()
        self.users = {u: h.encode() for u, h in users.items()}
        self.clock = clock
        cost = max((int(h.split("$")[2]) for h in users.values() if h.count("$") >= 3 and h.split("$")[2].isdigit()),
                   default=10)
        self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=min(max(cost, 4), 31)))
        self._verified: Dict[bytes, str] = {}
        self._refused: "OrderedDict[bytes, None]" = OrderedDict()
        self._clients: Dict[str, Tuple[int, float]] = {}  # client -> (failures in a row, held until)
        self._rate = bcrypt_per_second
        self._tokens, self._tokens_at = bcrypt_per_second, clock()
        self._known_tokens, self._known_at = bcrypt_per_second, clock()  # the budget of known clients
        self.known: "OrderedDict[str, None]" = OrderedDict()  # addresses that have verified
        self._known_path = ""
        self._lock = threading.Lock()
        self.bcrypt_checks = 0  # how often bcrypt actually ran (the flood's real cost)
        self.throttled = 0  # checks refused without bcrypt: held-off clients, spent budget

    def check(self, header: Optional[str], client: str = "") -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        digest = self._keyed(f"{user}:{password}".encode())
        with self._lock:
            if self._verified.get(digest) == user:
                return True
            if digest in self._refused:
                self._fail(client)
                return False
            if not self._may_bcrypt(client):
                self.throttled += 1
                return False
            self.bcrypt_checks += 1
        hashed = self.users.get(user)
        ok = self._bcrypt.checkpw(password.encode(), hashed if hashed is not None else self._dummy) and hashed is not None
        with self._lock:
            if ok:
                if len(self._verified) > 1024:
                    self._verified.clear()
                self._verified[digest] = user
                self._clients.pop(client, None)
                self._remember(client)
            else:
                self._refused[digest] = None
                if len(self._refused) > 10_000:
                    self._refused.popitem(last=False)
                self._fail(client)
        return ok

    def _may_bcrypt(self, client: str) -> bool:
        now = self.clock()
        _, held_until = self._clients.get(client, (0, 0.0))
        if now < held_until:
            return False
        if client and client in self.known:  # its own budget: strangers cannot spend it
            self._known_tokens = min(self._rate, self._known_tokens + (now - self._known_at) * self._rate)
            self._known_at = now
            if self._known_tokens >= 1:
                self._known_tokens -= 1
                return True
        self._tokens = min(self._rate, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def remember_in(self, state_dir: str) -> None:
        """Keep the addresses that verified in `state_dir` (and read the ones kept before)."""
        self._known_path = os.path.join(state_dir, KNOWN_CLIENTS_FILE)
        try:
            with open(self._known_path, encoding="utf-8") as f:
                addresses = [str(a) for a in json.load(f)[-KNOWN_CLIENTS:]]
        except (OSError, ValueError, TypeError):
            return
        with self._lock:
            for address in addresses:
                self.known[address] = None

    def _remember(self, client: str) -> None:
        """Called under the lock when `client` verified."""
        if not client or client in self.known:
            return
        self.known[client] = None
        while len(self.known) > KNOWN_CLIENTS:
            self.known.popitem(last=False)
        if self._known_path:
            tmp = self._known_path + ".tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(list(self.known), f)
                os.replace(tmp, self._known_path)
            except OSError:  # a full disk: known in memory until the next restart
                pass

    def _fail(self, client: str) -> None:
        failures, _ = self._clients.get(client, (0, 0.0))
        failures += 1
        hold = 0.0 if failures < 3 else min(60.0, 0.5 * 2 ** (failures - 3))
        self._clients[client] = (failures, self.clock() + hold)
        if len(self._clients) > 10_000:  # many addresses: forget the oldest entries
            for key in list(self._clients)[:1000]:
                del self._clients[key]


WRITES = ("POST", "PUT", "DELETE", "PATCH")


def local_names() -> Tuple[str, ...]:
    """The names this host answers to without configuration: localhost, its hostname and FQDN."""

    hostname = socket.gethostname()
    return tuple(sorted(n for n in {"localhost", hostname.lower(), _fqdn(hostname).lower()} if n))


def _fqdn(hostname: str) -> str:
    """socket.getfqdn() for this host, with an ASCII name passed as bytes: a str goes through the
    idna codec, whose first use imports stringprep and unicodedata (0.3 MiB resident for good)."""
    if not hostname.isascii():
        return socket.getfqdn(hostname)
    try:
        name, aliases, _ = socket.gethostbyaddr(hostname.encode())  # type: ignore[arg-type]  # (bytes are accepted)
    except OSError:  # as getfqdn: a name that does not resolve is its own
        return hostname
    return next((n for n in [name] + aliases if "." in n), name)


def _host_of(value: str) -> str:
    """The name in a Host header or an Origin's authority, without the port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:

    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def cross_site_refusal(method: str, headers: Dict[str, str], allowed_hosts: Tuple[str, ...]) -> Optional[str]:
    """Why a write (a silence, a benchmark) must be refused as cross-site, or None.

    - Content-Type must be application/json (what amtool and Alertmanager's clients send): an
      HTML form cannot send it, and a page's fetch() with it needs a CORS preflight the agent
      never grants;
    - a browser's Origin must be the agent's own (its scheme, host and port as the request's
      Host says): a page served elsewhere is refused, whatever the network lets through;
    - Host must be a name the agent answers to (an IP literal, localhost, the host's own names,
      [exporter] allowed_hosts): a DNS-rebinding page's own domain is refused."""
    if method not in WRITES:
        return None
    host = _host_of(headers.get("host", ""))
    if host and not _is_ip(host) and host not in allowed_hosts:
        return f"Host {host!r} is not a name this agent answers to; add it to [exporter] allowed_hosts"
    origin = headers.get("origin")
    if origin is not None:
        authority = origin.split("://", 1)[1] if "://" in origin else ""
        if origin == "null" or authority.lower() != headers.get("host", "").strip().lower():
            return "cross-site write refused: the request's Origin is not this agent"
    if method != "DELETE" or headers.get("content-length", "0") not in ("", "0"):
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            return "writes take Content-Type: application/json"
    return None
