"""Bounded HTTP for collectors and probes: GETs on one kept-alive connection per target, a
probe's streamed request on one of its own (`streamed`), a hard deadline on every answer and a
size cap on every collector's body.

Built on a socket and `wire` rather than requests or http.client: a cycle makes a dozen small
loopback requests, and requests' per-call machinery (proxy environment scans, adapters,
hooks) cost more CPU than everything else in the cycle together (profiled: ~1.5 ms of 3.3 ms
per llama-server target); http.client still cost 4x what `wire` does (its docstring has the
figures). Every receive is bounded by what is left of one deadline, so a server that
trickles bytes meets the deadline, not a per-read timeout.
"""

from __future__ import annotations

import json
import select
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

from . import wire
from .wire import DeadlinePassed

__all__ = ["DeadlinePassed", "FetchError", "HttpClient", "Response", "streamed"]


class FetchError(Exception):
    """A GET that produced no usable body. `reason` is a short label for metrics:
    refused, connect, timeout, too_large, http_<status>, invalid."""

    def __init__(self, reason: str, message: str, status: int = 0, body: bytes = b""):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.body = body


@dataclass
class Response:
    status: int
    body: bytes
    duration: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise FetchError("invalid", f"invalid JSON: {e}") from None


class HttpClient:
    """GETs against one base URL over a reused connection. Not for concurrent use: each
    collector owns its client, and the runner never runs one collector twice at once.
    A header that would split a request (the config refuses one) fails each get as invalid."""

    def __init__(self, base_url: str, headers: Optional[Dict[str, str]] = None,
                 clock: Callable[[], float] = time.monotonic):
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"User-Agent": "llm-agent", **(headers or {})}
        self.secrets = credentials(self.headers.get("Authorization", ""))  # ours, as sent: never echoed back
        self.clock = clock
        self._host_header = host_header(self.host, self.port, self.https)
        self._requests: Dict[str, bytes] = {}  # path -> the request's bytes
        self._sock: Optional[socket.socket] = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def get(self, path: str, timeout: float, max_bytes: int, ok_statuses: Tuple[int, ...] = (200,)) -> Response:
        """GET `path`; raise FetchError unless the status is in `ok_statuses` and the whole
        body (at most `max_bytes`) arrived within `timeout` seconds. Messages never carry
        the URL or headers (they may hold credentials); callers name the target."""
        start = self.clock()
        try:
            status, body = self._exchange(path, start + timeout, max_bytes)
        except (wire.DeadlinePassed, socket.timeout):
            self.close()
            raise FetchError("timeout", f"no complete answer within {timeout:g}s") from None
        except wire.TooLarge:
            self.close()
            raise FetchError("too_large", f"response body over the {max_bytes} byte limit") from None
        except wire.ProtocolError as e:  # it quotes the server's bytes, which may echo our key
            self.close()
            said = redact_bytes(str(e).encode("utf-8", "replace"), self.secrets).decode("utf-8", "replace")
            raise FetchError("invalid", f"invalid answer: {said}") from None
        except wire.Closed:
            self.close()
            raise FetchError("connect", "request failed: the server closed the connection") from None
        except ConnectionRefusedError:
            self.close()
            raise FetchError("refused", "connection refused") from None
        except OSError as e:  # before ValueError: a TLS certificate error is both
            self.close()
            raise FetchError("connect", f"request failed: {type(e).__name__}") from None
        except ValueError as e:  # a path that would split the request
            self.close()
            raise FetchError("invalid", f"invalid request: {e}") from None
        if status != 200:  # error bodies end up in logs and `check`: never with our own credentials
            body = redact_bytes(body, self.secrets)
        if status not in ok_statuses:
            raise FetchError(f"http_{status}", f"HTTP {status}", status, body[:4096])
        return Response(status, body, self.clock() - start)

    def _request(self, path: str) -> bytes:
        request = self._requests.get(path)
        if request is None:
            if len(self._requests) > 64:  # paths with a model name in them: bounded
                self._requests.clear()
            request = self._requests[path] = wire.request_bytes(self.prefix + path, self._host_header, self.headers)
        return request

    def _exchange(self, path: str, deadline: float, max_bytes: int) -> Tuple[int, bytes]:
        request = self._request(path)
        for attempt in (0, 1):
            reused = self._sock is not None and not _closed_by_peer(self._sock)
            if not reused or self._sock is None:
                self.close()
                self._sock = _connect(self.https, self.host, self.port, deadline - self.clock())
            try:
                head, body, reusable = wire.exchange(self._sock, request, deadline, self.clock, max_bytes)
                break
            except wire.Closed as e:
                # the server dropped our idle kept-alive connection as we sent: once more, afresh
                self.close()
                if attempt or not reused or e.answered:
                    raise
        if not reusable:
            self.close()
        return head.status, body


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle kept-alive connection with something to read has been closed by the server (or
    holds bytes nobody asked for): either way it must not carry the next request."""
    try:
        watch = select.poll()  # not select(): no limit on the descriptor's number
        watch.register(sock, select.POLLIN)
        return bool(watch.poll(0))
    except (OSError, ValueError):  # closed under us
        return True


def _connect(https: bool, host: str, port: int, timeout: float) -> socket.socket:
    if timeout <= 0:
        raise DeadlinePassed()
    # an ASCII name goes as bytes: a str is passed through the idna codec, whose first use imports
    # stringprep and unicodedata (0.3 MiB resident for the life of the daemon)
    sock = socket.create_connection((host.encode() if host.isascii() else host, port), timeout)  # type: ignore[arg-type]
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the request goes in one write anyway
        if https:
            import ssl  # memory cost: only an https target loads OpenSSL (~4 MiB of RSS)

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def host_header(host: str, port: int, https: bool) -> str:
    """The Host header for a target: its port only when it is not the scheme's own."""
    host = f"[{host}]" if ":" in host else host
    return host if port == (443 if https else 80) else f"{host}:{port}"


@contextmanager
def streamed(url: str, method: str, path: str, headers: Dict[str, str], body: Optional[bytes], deadline: float,
             clock: Callable[[], float]) -> Iterator[Tuple[wire.Head, wire.Reader]]:
    """One request on a connection of its own, closed afterwards, its answer's head read and its
    body left to be read as it arrives (`reader.pieces(head)`), every read bounded by what is
    left of one `deadline`: a probe's streamed completion. Raises what `wire.exchange` raises,
    and ValueError for a header that would split the request."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if https else 80)
    request = wire.request_bytes(parts.path.rstrip("/") + path, host_header(host, port, https), headers, method, body)
    sock = _connect(https, host, port, deadline - clock())
    try:
        wire.send(sock, request, deadline, clock)
        reader = wire.Reader(sock, deadline, clock)
        yield reader.head(), reader
    finally:
        sock.close()


def credentials(authorization: str) -> List[str]:
    """What of an Authorization header must never be repeated: the header and its token."""
    if not authorization:
        return []
    token = authorization.split(" ", 1)[-1]
    return [authorization, token] if len(token) >= 4 else [authorization]


def redact_bytes(body: bytes, secrets: List[str]) -> bytes:
    """`body` with every secret replaced by <secret> (a target that echoes our request headers)."""
    for secret in secrets:
        if secret and secret.encode() in body:
            body = body.replace(secret.encode(), b"<secret>")
    return body


def error_message(body: bytes) -> str:
    """The message of a llama-server/OpenAI style error body ({"error": {"message": ...}})."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message", ""))[:200]
        return str(err)[:200]
    return ""
