"""The HTTP endpoint: /metrics from bytes rendered once per cycle, /healthz, and a landing page.

A scrape never touches NVML, HTTP targets or /proc: it copies bytes out of the current
`Exposition`, so scrapes cost microseconds, two scrapers cannot disturb llama-server, and a
slow source cannot slow a scrape. Connections are read and written by one event loop, so idle
or slow clients hold no worker thread and a bounded buffer each; anything malformed gets a 4xx.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import queue
import re
import selectors
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple, Union
from urllib.parse import parse_qs

from .. import threads
from ..expfmt import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT
from ..expfmt.render import Renderer, Spans, render_one
from ..model import Snapshot
from ..timefmt import http_date
from . import console
from .scrapeclock import ScrapeClock
from .websecurity import BasicAuth, TLSContext
import resource

if TYPE_CHECKING:
    from .alertmanager_api import AlertmanagerAPI
    from .drill_api import DrillAPI
    from .perf_api import PerfAPI
    from .api import QueryAPI

log = logging.getLogger(__name__)


class Exposition:
    """One snapshot, rendered in the format a scrape asks for on the first such scrape (a
    cycle nobody scrapes renders nothing: Prometheus scrapes every 15-60 s, the agent cycles
    every 5 s); gzip variants made on first request."""

    def __init__(self, snapshot: Optional[Snapshot], renderer: Optional[Renderer] = None):
        self.snapshot = snapshot
        self._renderer = renderer
        self._bodies: Dict[str, bytes] = {}
        self._spans: Spans = []  # where each family's series are in the first body rendered
        self._gzipped: Dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def bodies(self) -> Dict[str, bytes]:
        """Both formats (tests, and what a scrape of each would get)."""
        return {fmt: self.body(fmt, False) for fmt in ("text", "openmetrics")}

    def ready(self, fmt: str, gzipped: bool) -> bool:
        """Whether a scrape for this format would be answered from bytes already made."""
        return fmt in (self._gzipped if gzipped else self._bodies)

    def body(self, fmt: str, gzipped: bool) -> bytes:
        with self._lock:
            plain = self._bodies.get(fmt)
            if plain is None:
                families = self.snapshot.families if self.snapshot else ()
                if self._renderer is None:
                    plain = self._bodies[fmt] = render_one(families, fmt)
                else:  # the other format's body, if rendered, holds the series lines already
                    first = next(((body, self._spans) for body in self._bodies.values()), None)
                    plain, spans = self._renderer.render(families, fmt, first)
                    self._bodies[fmt] = plain
                    self._spans = self._spans or spans
            if not gzipped:
                return plain
            if fmt not in self._gzipped:
                # level 1: a quarter of level 6's CPU (0.19 against 0.73 ms for a 120 kB body, once per
                # scrape and cycle) for 11% more bytes, on a link to a scraper that is mostly a LAN
                self._gzipped[fmt] = gzip.compress(plain, compresslevel=1, mtime=0)
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


def scrape_format(request: Request) -> Tuple[str, bool]:
    """The format a /metrics request asks for, and whether gzipped."""
    return negotiate(request.headers.get("accept", "")), accepts_gzip(request.headers.get("accept-encoding", ""))


def _scrape_answer(expo: Exposition, fmt: str, zipped: bool) -> Answer:
    extra = {"Vary": "Accept-Encoding, Accept"}
    if zipped:
        extra["Content-Encoding"] = "gzip"
    ctype = CONTENT_TYPE_OPENMETRICS if fmt == "openmetrics" else CONTENT_TYPE_TEXT
    return 200, expo.body(fmt, zipped), ctype, extra


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
        self.auth_failures = 0  # counted by the worker threads, under the lock
        self._lock = threading.Lock()

    def count(self, path: str, code: int) -> None:
        with self._lock:
            key = (path, str(code))
            self.requests[key] = self.requests.get(key, 0) + 1
            if code == 401:
                self.auth_failures += 1

    def copy(self) -> Dict[Tuple[str, str], int]:
        with self._lock:
            return dict(self.requests)


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 411: "Length Required", 413: "Content Too Large", 422: "Unprocessable Entity",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
# A body larger than this (the last one rendered) is left to its scrape's worker: rendered in the
# cycle's thread, a 32-target host's 6 MB bodies came out of the cycle's malloc arena, mixed with
# its parse, and held ~15 MiB more resident (bench_scaling.py); the default host's is ~0.2 MB
RENDER_AHEAD_MAX = 1 << 20
MAX_HEAD = 16 * 1024  # a request head larger than this is refused: memory per connection stays bounded
MAX_BODY = 1 << 20  # a POSTed query form larger than this is refused (Prometheus' forms are a few KB)
_LENGTH = re.compile(rb"\r?\ncontent-length:[ \t]*([^\r\n]*)", re.IGNORECASE)
PLAIN = "text/plain; charset=utf-8"
# request counts by path: a bounded set, the rest is "other"
COUNTED_PATHS = ("/metrics", "/healthz", "/api/v1/alerts", "/", "/api/v1/query", "/api/v1/query_range",
                 "/api/v1/series", "/api/v1/labels", "/api/v2/silences", "/api/v2/alerts")


@dataclass
class Request:
    method: str
    target: str
    headers: Dict[str, str]  # names lower-cased
    client: str = ""  # the peer's address
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def parse_head(head: bytes) -> Request:
    """The request line and headers of one HTTP/1.x request head; ValueError if malformed."""
    lines = head.decode("iso-8859-1").split("\r\n") if b"\r\n" in head else head.decode("iso-8859-1").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise ValueError("not an HTTP/1.x request line")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("malformed header line")
        headers[name.lower()] = value.strip()
    return Request(parts[0], parts[1], headers)


def _body_length(head: bytes) -> Optional[int]:
    """The Content-Length of a request head (0 when absent); None if it is not a number."""
    m = _LENGTH.search(head)
    if m is None:
        return 0
    text = m.group(1).strip()
    return int(text) if text.isdigit() and len(text) < 16 else None


def response(code: int, body: bytes, content_type: str, extra: Optional[Dict[str, str]] = None,
             head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {code} {REASONS.get(code, '')}", "Server: llm-agent",
             f"Date: {http_date()}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


def _tls_wants(e: BaseException) -> int:
    """The selector event a TLS socket waits for (ssl.SSLWantReadError, SSLWantWriteError), else
    0. ssl is looked up, not imported: an agent that serves no TLS never loads it (nor OpenSSL's
    ~4 MiB), and then no error can be one of its."""
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(e, ssl.SSLWantReadError):
        return selectors.EVENT_READ
    if ssl is not None and isinstance(e, ssl.SSLWantWriteError):
        return selectors.EVENT_WRITE
    return 0


def _tls_error(e: BaseException) -> bool:
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(e, ssl.SSLError)


class _Conn:
    """One client connection, owned by the event loop thread."""

    __slots__ = ("sock", "addr", "buf", "out", "state", "deadline", "since", "linger")

    def __init__(self, sock: socket.socket, addr, state: str, deadline: float, now: float):
        self.sock, self.addr, self.state, self.deadline, self.since = sock, addr, state, deadline, now
        self.buf = bytearray()
        self.out = memoryview(b"")
        self.linger = False  # after an error reply to unread input: drain before closing, or a reset eats the reply


class ExporterError(Exception):
    """The endpoint could not start (port in use, bad address); the message says what to change."""


class Exporter:
    """The HTTP server. One event-loop thread accepts connections, reads request heads and
    writes responses without blocking, so an idle or slow client holds no worker and costs
    a bounded buffer; a small worker pool builds responses (basic auth's bcrypt runs there,
    never in the loop). At `max_connections` the connection that has been idle longest is
    dropped to admit a new one: a scrape is answered whatever idle clients hold."""

    def __init__(self, host: str, port: int, max_threads: int = 8, request_timeout: float = 10.0,
                 health: Optional[Callable[[str], Tuple[int, dict]]] = None, config_source: str = "agent.toml",
                 max_connections: int = 1024, tls: Optional[TLSContext] = None, auth: Optional[BasicAuth] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.exposition = Exposition(None)
        self._renderer = Renderer()
        self.scrapes = ScrapeClock()  # the event loop notes each scrape; render_ahead reads it
        self._clock = clock  # the scrapes' and publishes' times
        self._scrapes_lock = threading.Lock()
        self._published_at: Optional[float] = None
        self._interval = 0.0  # between the last two publishes: a cycle
        self.rendered_ahead = 0  # bodies rendered by render_ahead for a scrape due before the next publish
        self.answered_by_loop = 0  # scrapes answered from those bytes without a worker
        self.stats = ExporterStats()
        self.endpoints = Endpoints(health) if health is not None else Endpoints()  # the daemon's: serve()
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="exporter",
                                        initializer=threads.name_os_thread)
        # the APIs (queries, silences, benchmarks) have their own workers and a bounded queue: a
        # request waiting there holds no worker, and /metrics and /healthz never wait behind one
        self._api_pool = ThreadPoolExecutor(max_workers=API_WORKERS, thread_name_prefix="exporter-api",
                                            initializer=threads.name_os_thread)
        self._api_waiting = 0  # API requests queued or running
        self._api_lock = threading.Lock()
        self.api_refused = 0  # API requests refused because its queue was full
        self.max_connections = max(max_connections, 1)
        self.request_timeout = request_timeout
        self.tls = tls
        self.auth = auth
        self.rejected = 0  # connections refused (503) or dropped to make room (the event loop's alone)
        self.tls_errors = 0  # the event loop's alone
        _raise_fd_limit(self.max_connections + 64)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(128)  # a burst of scrapers waits in the kernel, not refused
        except OSError as e:
            self._listener.close()
            where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            if e.errno == errno.EADDRINUSE:
                raise ExporterError(f"cannot listen on {where}: the port is already in use; "
                                    f"set [exporter] listen in {config_source} to a free port") from None
            raise ExporterError(f"cannot listen on {where}: {e.strerror}; check [exporter] listen in {config_source}") from None
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._done: "queue.SimpleQueue[Tuple[_Conn, bytes]]" = queue.SimpleQueue()
        self._conns: Dict[int, _Conn] = {}
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def auth_failures(self) -> int:
        return self.stats.auth_failures

    @property
    def port(self) -> int:
        return self.server_address[1]

    def publish(self, snapshot: Snapshot) -> None:
        """Serve `snapshot` from now on (an atomic reference swap); rendered on its first scrape,
        or by `render_ahead`."""
        self.exposition = Exposition(snapshot, self._renderer)
        now = self._clock()
        self._interval, self._published_at = (now - self._published_at if self._published_at is not None else 0.0), now

    def render_ahead(self) -> None:
        """Render the published snapshot in the formats a scraper will ask for before the next
        publish (scrapeclock.py): called by the cycle's thread once its own work is done, its
        caches warm, where a scrape's worker would render it cold seconds later."""
        expo = self.exposition
        if self._interval <= 0 or self._published_at is None or self._renderer.last_size > RENDER_AHEAD_MAX:
            return
        with self._scrapes_lock:
            due = self.scrapes.due(self._published_at, self._interval)
        for fmt, zipped in sorted(due):
            try:
                expo.body(fmt, zipped)
            except Exception as e:  # the cycle goes on; the scrape renders it, and answers 500 if it fails too
                log.debug("exporter: rendering ahead failed: %s: %s", type(e).__name__, e, exc_info=True)
                return
            self.rendered_ahead += 1

    def start(self) -> "Exporter":
        self._thread = threads.daemon(self._loop, "exporter")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        self.server_close()
        self._pool.shutdown(wait=False)
        self._api_pool.shutdown(wait=False)

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for s in (self._listener, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the event loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        sel = self._selector
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stopping.is_set():
            try:
                self._turn(sel)
            except Exception as e:  # the loop is the endpoint: it must outlive any one bad turn
                log.error("exporter: event loop error (%s: %s); going on", type(e).__name__, e,
                          exc_info=log.isEnabledFor(logging.DEBUG))
                time.sleep(0.05)

    def _turn(self, sel: selectors.BaseSelector) -> None:
        for key, events in sel.select(timeout=self._until_next_deadline()):
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            else:
                self._ready(key.data, events)
        self._collect_done()
        self._expire(time.monotonic())

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then back to the others
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors, say: drop the oldest idle one, try later
                log.warning("exporter: accept failed: %s", e)
                self._evict_idle()
                return
            sock.setblocking(False)
            if len(self._conns) >= self.max_connections and not self._evict_idle():
                self.rejected += 1
                try:
                    sock.send(response(503, b"too many connections\n", PLAIN))
                except OSError:
                    pass
                sock.close()
                continue
            now = time.monotonic()
            if self.tls is not None:
                try:
                    sock = self.tls.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except OSError as e:  # ssl.SSLError among them
                    self.tls_errors += 1
                    log.debug("exporter: TLS setup for %s failed: %s", addr, e)
                    sock.close()
                    continue
                conn = _Conn(sock, addr, "handshake", now + self.request_timeout, now)
            else:
                conn = _Conn(sock, addr, "read", now + self.request_timeout, now)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict_idle(self) -> bool:
        """Close the connection that has waited longest for a request head; False if none."""
        idle = [c for c in self._conns.values() if c.state in ("read", "handshake")]
        if not idle:
            return False
        self.rejected += 1
        self._close(min(idle, key=lambda c: c.since))
        return True

    def _ready(self, conn: _Conn, events: int) -> None:
        try:
            if conn.state == "handshake":
                self._handshake(conn)
            elif conn.state == "read":
                self._read(conn)
            elif conn.state == "write":
                self._write(conn)
            elif conn.state == "linger":
                while conn.sock.recv(65536):
                    pass
                self._close(conn)
        except (BlockingIOError, InterruptedError):
            pass
        except (OSError, ValueError) as e:  # reset by the peer, a TLS alert: nothing more to say to it
            wants = _tls_wants(e)
            if wants:
                self._selector.modify(conn.sock, wants, conn)
                return
            if conn.state == "handshake" and _tls_error(e):
                self.tls_errors += 1
            log.debug("exporter: connection from %s: %s", conn.addr, e)
            self._close(conn)

    def _handshake(self, conn: _Conn) -> None:
        conn.sock.do_handshake()  # type: ignore[attr-defined]  # an SSLSocket: raises SSLWant*Error until done
        conn.state = "read"
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        while True:
            chunk = conn.sock.recv(4096)
            if not chunk:
                self._close(conn)
                return
            conn.buf += chunk
            end = conn.buf.find(b"\r\n\r\n")
            end = end + 4 if end >= 0 else (conn.buf.find(b"\n\n") + 2 if b"\n\n" in conn.buf else -1)
            if end > 0:
                length = _body_length(bytes(conn.buf[:end]))
                if length is None or length > MAX_BODY:
                    conn.linger = True
                    self._reply(conn, response(413, b"request body too large (or an unreadable Content-Length)\n", PLAIN)
                                if length else response(400, b"bad request: invalid Content-Length\n", PLAIN))
                    return
                if len(conn.buf) >= end + length:
                    self._dispatch(conn, bytes(conn.buf[:end]), bytes(conn.buf[end:end + length]))
                    return
            elif len(conn.buf) > MAX_HEAD:
                conn.linger = True
                self._reply(conn, response(431, b"request head too large\n", PLAIN))
                return
            if not (self.tls is not None and conn.sock.pending()):  # type: ignore[attr-defined]
                return  # wait for more

    def _dispatch(self, conn: _Conn, head: bytes, body: bytes = b"") -> None:
        try:
            request = parse_head(head)
            request.body = body
            request.client = str(conn.addr[0]) if isinstance(conn.addr, tuple) else str(conn.addr)
        except ValueError as e:
            conn.linger = True
            self._reply(conn, response(400, f"bad request: {e}\n".encode(), PLAIN))
            return
        if request.path == "/metrics" and request.method == "GET" and self._metrics_from_loop(conn, request):
            return
        lane = self._pool
        if is_api(request.path):
            with self._api_lock:
                full = self._api_waiting >= API_QUEUE
                if not full:
                    self._api_waiting += 1
            if full:  # answered here, by the loop: a full queue costs no worker
                self.api_refused += 1
                self.stats.count("other", 503)
                self._reply(conn, response(503, json.dumps({"status": "error", "errorType": "unavailable", "error":
                                                            f"{API_QUEUE} API requests are already waiting; try again"}
                                                           ).encode(), "application/json", {"Retry-After": "1"}))
                return
            lane = self._api_pool
        conn.state = "wait"
        conn.buf = bytearray()
        self._selector.unregister(conn.sock)  # nothing to read while a worker answers; re-registered to write
        lane.submit(self._work, conn, request, lane is self._api_pool)

    def _metrics_from_loop(self, conn: _Conn, request: Request) -> bool:
        """Note the scrape; answer it here when its body is made already (rendered ahead):
        copying bytes needs no worker. Not with basic auth, whose bcrypt runs in a worker."""
        fmt = scrape_format(request)
        # a scraper is its address and its User-Agent: Prometheus and vmagent on one host are two
        scraper = f"{request.client} {request.headers.get('user-agent', '')[:100]}"
        with self._scrapes_lock:
            self.scrapes.scraped(scraper, self._clock(), fmt)
        expo = self.exposition
        if self.auth is not None or not expo.ready(*fmt):
            return False
        self.answered_by_loop += 1
        self.stats.count("/metrics", 200)
        self._reply(conn, response(*_scrape_answer(expo, *fmt)))
        return True

    def _work(self, conn: _Conn, request: Request, api: bool = False) -> None:
        try:
            out = self.handle(request)
        except Exception as e:  # a handler bug must not kill the worker or leave the client hanging
            log.debug("exporter: error answering %s: %s", conn.addr, e, exc_info=True)
            out = response(500, b"internal error\n", PLAIN)
        finally:
            if api:
                with self._api_lock:
                    self._api_waiting -= 1
        self._done.put((conn, out))
        self._wake()

    def _collect_done(self) -> None:
        while True:
            try:
                conn, out = self._done.get_nowait()
            except queue.Empty:
                return
            if self._conns.get(conn.sock.fileno() if conn.sock.fileno() >= 0 else -1) is conn:
                self._reply(conn, out)

    def _reply(self, conn: _Conn, out: bytes) -> None:
        waiting = conn.state == "wait"
        conn.out, conn.state = memoryview(out), "write"
        conn.deadline = time.monotonic() + self.request_timeout  # a slow reader gets this long for the body
        if waiting:
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
        else:
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        try:
            self._write(conn)
        except (BlockingIOError, InterruptedError):
            pass  # the loop writes the rest when the socket can take it
        except OSError as e:
            if _tls_wants(e):
                return  # as above: TLS needs the socket ready first
            log.debug("exporter: writing to %s: %s", conn.addr, e)
            self._close(conn)

    def _write(self, conn: _Conn) -> None:
        while len(conn.out):
            sent = conn.sock.send(conn.out[:262144])
            conn.out = conn.out[sent:]
        if conn.linger and self.tls is None:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.state, conn.deadline = "linger", time.monotonic() + 1.0
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        self._close(conn)

    def _until_next_deadline(self) -> Optional[float]:
        """How long the loop may sleep: until the first connection's deadline, or until a socket or
        a worker wakes it when none is open. (A 0.25 s tick cost an idle agent 3 ms of CPU per 5 s
        cycle: tests/bench/bench_realtime.py.)"""
        deadlines = [c.deadline for c in self._conns.values() if c.state != "wait"]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic()) + 0.005  # past it, so _expire sees it due

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline < now and c.state != "wait"]:
            log.debug("exporter: %s timed out (%s)", conn.addr, conn.state)
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0 and self._conns.get(fd) is conn:
            del self._conns[fd]
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        try:
            conn.sock.close()
        except OSError:
            pass

    # -- requests ----------------------------------------------------------------------------

    def handle(self, request: Request) -> bytes:
        """The whole response to one request (runs in a worker thread), by the route table."""
        head_only = request.method == "HEAD"
        path = request.path
        counted = path if path in COUNTED_PATHS else "other"

        def reply(code: int, body: bytes, ctype: str, extra: Optional[Dict[str, str]] = None) -> bytes:
            self.stats.count(counted, code)
            return response(code, body, ctype, extra, head_only)

        route = route_of(path)
        if route is None:
            return reply(404, b"not found: try /metrics\n", PLAIN)
        if request.method not in route.methods:
            allow = ", ".join(route.methods)
            return reply(405, f"method not allowed: use {allow}\n".encode(), PLAIN, {"Allow": allow})
        if self.auth is not None and not route.open and not self.auth.check(request.headers.get("authorization"),
                                                                           request.client):
            return reply(401, b"unauthorized\n", PLAIN, {"WWW-Authenticate": 'Basic realm="llm-agent"'})
        answer = getattr(self, route.answer)(request)
        if answer is None:  # an endpoint this agent does not serve (no history: no query API)
            return reply(404, b"not found: try /metrics\n", PLAIN)
        return reply(*answer)

    # -- the endpoints: each (code, body, content type[, headers]) or None when not served ----------

    def _metrics(self, request: Request) -> Answer:
        return _scrape_answer(self.exposition, *scrape_format(request))

    def _healthz(self, request: Request) -> Answer:
        query = parse_qs(request.target.split("?", 1)[1]) if "?" in request.target else {}
        code, doc = self.endpoints.health(query.get("target", [""])[0])
        return code, json.dumps(doc, indent=1).encode() + b"\n", "application/json", None

    def _alerts(self, request: Request) -> Answer:
        return 200, json.dumps(self.endpoints.alerts()).encode(), "application/json", None

    def _console_state(self, request: Request) -> Optional[Answer]:
        if self.endpoints.console is None:
            return None
        return 200, json.dumps(self.endpoints.console()).encode(), "application/json", None

    def _perf(self, request: Request) -> Optional[Answer]:
        return _command_api(self.endpoints.perf_api, request)

    def _drill(self, request: Request) -> Optional[Answer]:
        return _command_api(self.endpoints.drill_api, request)

    def _alertmanager(self, request: Request) -> Optional[Answer]:
        api = self.endpoints.alertmanager_api
        if api is None:
            return None
        code, body, ctype = api.handle(request.method, request.target, request.body, request.client, request.headers)
        return code, body, ctype, None

    def _query(self, request: Request) -> Optional[Answer]:
        api = self.endpoints.query_api
        if api is None:
            return None
        code, body, ctype = api.handle(request.method, request.target, request.headers.get("content-type", ""),
                                       request.body)
        return code, body, ctype, None

    def _page(self, request: Request) -> Answer:
        page = console.asset(request.path)
        if page is None or self.endpoints.console is None:
            return 200, LANDING, "text/html; charset=utf-8", None
        zipped = accepts_gzip(request.headers.get("accept-encoding", ""))
        extra = dict(console.HEADERS, Vary="Accept-Encoding", **({"Content-Encoding": "gzip"} if zipped else {}))
        return 200, _gzip_once(request.path, page) if zipped else page, console.FILES[request.path][1], extra


Answer = Tuple[int, bytes, str, Optional[Dict[str, str]]]
GET = ("GET", "HEAD")


@dataclass(frozen=True)
class Route:
    path: str
    methods: Tuple[str, ...]
    answer: str  # the Exporter's method that answers it
    prefix: bool = False  # every path under `path`
    api: bool = False  # the API lane (exporter.is_api): its own workers and queue
    open: bool = False  # no basic auth: /healthz, for load balancers


# The endpoint, one row a route: exact paths first, then prefixes, longest first.
def _command_api(api: Optional[Union["PerfAPI", "DrillAPI"]], request: Request) -> Optional[Answer]:
    """An API the commands call (bench, baseline, drill): the method, target, client and headers."""
    if api is None:
        return None
    code, body, ctype = api.handle(request.method, request.target, request.client, request.headers)
    return code, body, ctype, None


ROUTES: Tuple[Route, ...] = (
    Route("/metrics", GET, "_metrics"),
    Route("/healthz", GET, "_healthz", open=True),
    Route("/api/v1/alerts", GET, "_alerts"),
    Route("/api/v1/console", GET, "_console_state"),
    *(Route(page, GET, "_page") for page in console.FILES),
    Route("/api/v1/perf", GET + ("POST",), "_perf", prefix=True, api=True),
    Route("/api/v1/drill", GET + ("POST",), "_drill", prefix=True, api=True),
    Route("/api/v2/", GET + ("POST", "DELETE"), "_alertmanager", prefix=True, api=True),
    Route("/api/v1/", GET + ("POST",), "_query", prefix=True, api=True),
)
_EXACT = {r.path: r for r in ROUTES if not r.prefix}
_PREFIXES = sorted((r for r in ROUTES if r.prefix), key=lambda r: -len(r.path))


def route_of(path: str) -> Optional[Route]:
    found = _EXACT.get(path)
    if found is not None:
        return found
    return next((r for r in _PREFIXES if path.startswith(r.path)), None)


@dataclass
class Endpoints:
    """What the endpoint answers besides /metrics, handed in by the daemon."""

    health: Callable[[str], Tuple[int, dict]] = field(default=lambda target="": (200, {"status": "ok"}))
    alerts: Callable[[], dict] = field(default=lambda: {"status": "success", "data": {"alerts": []}})
    console: Optional[Callable[[], dict]] = None  # the console page's state (serve/console.py)
    query_api: Optional["QueryAPI"] = None  # Prometheus' query API over the history file
    alertmanager_api: Optional["AlertmanagerAPI"] = None  # silences and alerts, as Alertmanager's API v2
    perf_api: Optional["PerfAPI"] = None  # benchmarks and baselines (llm-agent bench, baseline)
    drill_api: Optional["DrillAPI"] = None  # fire drills (llm-agent drill)


API_WORKERS = 2  # queries are CPU in this process: two at once, the cycle comes first
API_QUEUE = 16  # API requests queued or running; one more is refused with 503 at once


def is_api(path: str) -> bool:
    """The requests of the API lane (the route table says: the query API, Alertmanager's API,
    benchmarks). Not /api/v1/alerts or /api/v1/console: memory reads, answered like a scrape."""
    route = route_of(path)
    return route is not None and route.api


_GZIPPED: Dict[str, bytes] = {}


def _gzip_once(path: str, body: bytes) -> bytes:
    """The console's static files, gzipped the first time they are asked for."""
    if path not in _GZIPPED:
        _GZIPPED[path] = gzip.compress(body, compresslevel=9, mtime=0)
    return _GZIPPED[path]


def _raise_fd_limit(wanted: int) -> None:
    """Room for `wanted` sockets: raise the soft file limit toward the hard one if needed."""
    try:

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass
