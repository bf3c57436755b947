"""The HTTP endpoint: /metrics from bytes rendered once per cycle, /healthz, and a landing page.

A scrape never touches NVML, HTTP targets or /proc: it copies bytes out of the current
`Exposition`, so scrapes cost microseconds, two scrapers cannot disturb llama-server, and a
slow source cannot slow a scrape. Worker threads are bounded; a slow client is cut off by
the socket timeout; anything malformed gets a 4xx.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs

from .expfmt import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, render_both
from .model import Snapshot
from .websecurity import BasicAuth, TLSContext

log = logging.getLogger(__name__)


class Exposition:
    """One snapshot rendered in both formats; gzip variants made on first request."""

    def __init__(self, snapshot: Optional[Snapshot]):
        self.snapshot = snapshot
        families = snapshot.families if snapshot else ()
        text, openmetrics = render_both(families)
        self.bodies: Dict[str, bytes] = {"text": text, "openmetrics": openmetrics}
        self._gzipped: Dict[str, bytes] = {}
        self._lock = threading.Lock()

    def body(self, fmt: str, gzipped: bool) -> bytes:
        if not gzipped:
            return self.bodies[fmt]
        with self._lock:
            if fmt not in self._gzipped:
                self._gzipped[fmt] = gzip.compress(self.bodies[fmt], compresslevel=6, mtime=0)
            return self._gzipped[fmt]


def negotiate(accept: str) -> str:
    """'openmetrics' when the Accept header prefers it over text, else 'text'."""
    best, best_q = "text", 0.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        fmt = "openmetrics" if media == "application/openmetrics-text" else "text" if media in ("text/plain", "*/*", "text/*") else None
        if fmt and q > best_q:
            best, best_q = fmt, q
    return best


def accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0].lower() in ("gzip", "*"):
            return not any(f.replace(" ", "") in ("q=0", "q=0.0") for f in fields[1:])
    return False


LANDING = b"""<!doctype html><html><head><title>llm-agent</title></head><body>
<h1>llm-agent</h1><ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/api/v1/alerts">/api/v1/alerts</a></li></ul>
</body></html>
"""


class ExporterStats:
    """Request counts by (path, code), read into the agent's self-metrics."""

    def __init__(self) -> None:
        self.requests: Dict[Tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def count(self, path: str, code: int) -> None:
        with self._lock:
            key = (path, str(code))
            self.requests[key] = self.requests.get(key, 0) + 1

    def copy(self) -> Dict[Tuple[str, str], int]:
        with self._lock:
            return dict(self.requests)


class _Handler(BaseHTTPRequestHandler):
    server_version = "llm-agent"
    # one request per connection: an idle keep-alive client cannot pin one of the few workers
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        log.debug("exporter: %s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, content_type: str, extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        path = self.path.split("?", 1)[0]
        self.server.stats.count(path if path in ("/metrics", "/healthz", "/api/v1/alerts", "/") else "other", code)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        auth = self.server.auth
        if auth is not None and path != "/healthz" and not auth.check(self.headers.get("Authorization")):
            self.server.auth_failures += 1
            self._send(401, b"unauthorized\n", "text/plain; charset=utf-8", {"WWW-Authenticate": 'Basic realm="llm-agent"'})
            return
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            query = parse_qs(self.path.split("?", 1)[1]) if "?" in self.path else {}
            code, doc = self.server.health(query.get("target", [""])[0])
            self._send(code, json.dumps(doc, indent=1).encode() + b"\n", "application/json")
        elif path == "/api/v1/alerts":
            self._send(200, json.dumps(self.server.api_alerts()).encode(), "application/json")
        elif path == "/":
            self._send(200, LANDING, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET

    def _refuse(self) -> None:
        self._send(405, b"method not allowed: use GET\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _metrics(self) -> None:
        expo = self.server.exposition
        fmt = negotiate(self.headers.get("Accept", ""))
        zipped = accepts_gzip(self.headers.get("Accept-Encoding", ""))
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding, Accept"} if zipped else {"Vary": "Accept-Encoding, Accept"}
        ctype = CONTENT_TYPE_OPENMETRICS if fmt == "openmetrics" else CONTENT_TYPE_TEXT
        self._send(200, expo.body(fmt, zipped), ctype, headers)


class ExporterError(Exception):
    """The endpoint could not start (port in use, bad address); the message says what to change."""


class Exporter(HTTPServer):
    """The HTTP server, with a bounded pool of worker threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: a burst of scrapers waits in the kernel, not refused

    def __init__(self, host: str, port: int, max_threads: int = 8, request_timeout: float = 10.0,
                 health: Optional[Callable[[str], Tuple[int, dict]]] = None, config_source: str = "agent.toml",
                 max_connections: int = 128, tls: Optional[TLSContext] = None, auth: Optional[BasicAuth] = None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.exposition = Exposition(None)
        self.stats = ExporterStats()
        self.health: Callable[[str], Tuple[int, dict]] = health or (lambda target="": (200, {"status": "ok"}))
        self.api_alerts: Callable[[], dict] = lambda: {"status": "success", "data": {"alerts": []}}
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="exporter")
        # connections being served or waiting for a worker; past this a client gets 503 at once
        self._slots = threading.BoundedSemaphore(max(max_connections, max_threads))
        self.rejected = 0
        self.tls = tls
        self.auth = auth
        self.auth_failures = 0
        self.tls_errors = 0
        self.request_timeout = request_timeout
        handler = type("Handler", (_Handler,), {"timeout": request_timeout})
        try:
            super().__init__((host, port), handler)
        except OSError as e:
            where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            if e.errno == errno.EADDRINUSE:
                raise ExporterError(f"cannot listen on {where}: the port is already in use; "
                                    f"set [exporter] listen in {config_source} to a free port") from None
            raise ExporterError(f"cannot listen on {where}: {e.strerror}; check [exporter] listen in {config_source}") from None
        self._thread: Optional[threading.Thread] = None

    def publish(self, snapshot: Snapshot) -> None:
        """Render `snapshot` once and serve it from now on (an atomic reference swap)."""
        self.exposition = Exposition(snapshot)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self._pool.submit(self._work, request, client_address)

    def _work(self, request, client_address) -> None:
        try:
            if self.tls is not None:  # the handshake happens here, in a worker, never in the accept loop
                request.settimeout(self.request_timeout)
                try:
                    request = self.tls.context().wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.tls_errors += 1
                    log.debug("exporter: TLS handshake with %s failed: %s", client_address, e)
                    return
            self.finish_request(request, client_address)
        except Exception:  # a broken client must not kill the worker
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.debug("exporter: error serving %s", client_address, exc_info=True)

    def start(self) -> "Exporter":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="exporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._pool.shutdown(wait=False)

    @property
    def port(self) -> int:
        return self.server_address[1]
