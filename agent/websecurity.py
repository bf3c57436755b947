"""TLS and basic auth for the exporter, with the semantics of Prometheus' web configuration:
a certificate and key (reloaded when the files change), an optional client CA that then must
sign every client's certificate, and users with bcrypt password hashes. /healthz stays open
so load balancers need no credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl
import threading
from typing import Dict, Optional, Tuple


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


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes; a verified pair is remembered (by
    a keyed digest, never the password) so a scrape costs one bcrypt at most once."""

    def __init__(self, users: Dict[str, str]):
        import bcrypt  # a dependency; imported here so an agent without users never loads it

        self._bcrypt = bcrypt
        self.users = {u: h.encode() for u, h in users.items()}
        self._key = os.urandom(32)
        self._verified: Dict[bytes, str] = {}
        self._lock = threading.Lock()

    def check(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        digest = hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if self._verified.get(digest) == user:
                return True
        if not self._bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._verified) > 1024:
                self._verified.clear()
            self._verified[digest] = user
        return True
