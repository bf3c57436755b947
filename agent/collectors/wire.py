"""HTTP/1.1 on a socket for the collectors' GETs and the probes' streamed POSTs: the request's
bytes, a pure parser of the response head, and a reader that takes a response's body off a
socket against one deadline, whole or as it arrives.

Why not http.client: a scrape of llama-server's /health cost 46 us of CPU through it and 10 us
this way, /metrics 68 us against 16 (tests/bench: the same server, the same connection): its
headers go through the email package's parser, and its buffered file objects and response
objects are made afresh for each request. A cycle makes two such requests per target. What a
collector needs is narrow (GET, a kept-alive connection, Content-Length, chunked or
until-close bodies, a size cap, one deadline), and every path here is tested against hostile
servers (tests/unit/test_wire.py). The probes' needs (a POST, a body read as it streams) add
little, and http.client would bring the email package and OpenSSL into every agent's memory.
"""

from __future__ import annotations

import re
import socket
from typing import Callable, Dict, Iterator, List, Optional, Tuple

CHUNK = 64 * 1024
MAX_HEAD = 64 * 1024  # a status line and headers together (http.client: 100 headers of 64 KiB)
MAX_CHUNK_LINE = 4096
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client can read; the message says how."""


class TooLarge(Exception):
    """The body is over the caller's cap."""


class Closed(Exception):
    """The server closed the connection; `answered` says whether any byte of an answer came."""

    def __init__(self, answered: bool):
        super().__init__("connection closed")
        self.answered = answered


class DeadlinePassed(TimeoutError):
    """The whole answer did not arrive before the deadline (however the server trickled it)."""


class Head:
    """A parsed response head: what decides how the body is read and whether the
    connection may carry another request."""

    __slots__ = ("status", "length", "chunked", "keep_alive")

    def __init__(self, status: int, length: Optional[int], chunked: bool, keep_alive: bool):
        self.status = status
        self.length = length  # None: chunked, or read until the server closes
        self.chunked = chunked
        self.keep_alive = keep_alive


def request_bytes(target: str, host_header: str, headers: Dict[str, str], method: str = "GET",
                  body: Optional[bytes] = None) -> bytes:
    """A request's bytes (a GET's, or a POST's with its `body`). Raises ValueError for a target or
    header that would split the request (a CR or LF in a value): the message names the header,
    never its value, which may be a key."""
    if _BAD_TARGET.search(target):
        raise ValueError("the request path holds a space, a control or a non-ASCII character")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", "Accept-Encoding: identity"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if _BAD_VALUE.search(value) or not value.isascii():
            raise ValueError(f"header {name} holds a control or non-ASCII character")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


def parse_head(head: bytes) -> Head:
    """The status line and headers of one response (without the blank line that ends them).
    Raises ProtocolError for anything but HTTP/1.0 or 1.1 with a well-formed length."""
    status_line, _, rest = head.partition(b"\n")
    m = _STATUS.fullmatch(status_line)
    if m is None:
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    http10, status = m.group(1) == b"0", int(m.group(2))
    lengths: List[bytes] = []
    codings: List[bytes] = []
    connection: List[bytes] = []
    for line in rest.split(b"\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            if line.strip():
                raise ProtocolError(f"a header line without a colon: {line[:40]!r}")
            continue
        name = name.strip().lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",")]
        elif name == b"connection":
            connection += [c.strip().lower() for c in value.split(b",")]
    keep_alive = b"keep-alive" in connection if http10 else b"close" not in connection
    if codings:  # chunked wins over Content-Length (RFC 9112 6.3); any other coding is unreadable
        if codings[-1] != b"chunked" or any(c not in (b"chunked", b"identity") for c in codings):
            raise ProtocolError(f"transfer coding {b', '.join(codings).decode('latin-1')!r} is not supported")
        return Head(status, None, True, keep_alive)
    if status < 200 or status in (204, 304):
        return Head(status, 0, False, keep_alive)
    if not lengths:
        return Head(status, None, False, False)  # the body ends when the server closes
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
        raise ProtocolError(f"invalid Content-Length: {b', '.join(lengths)[:40]!r}")
    return Head(status, int(lengths[0]), False, keep_alive)


class Reader:
    """One response off a socket, every receive bounded by what is left of `deadline`."""

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float]):
        self.sock = sock
        self.deadline = deadline
        self.clock = clock
        self.buf = b""
        self.answered = False  # a byte of the answer came: a close now is not a stale connection

    def _receive(self) -> bytes:
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise DeadlinePassed()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(CHUNK)
        except socket.timeout:
            raise DeadlinePassed() from None
        except (ConnectionResetError, ConnectionAbortedError):
            raise Closed(self.answered) from None
        if data:
            self.answered = True
        return data

    def _fill(self) -> None:
        data = self._receive()
        if not data:
            raise Closed(self.answered)
        self.buf += data

    def head(self) -> Head:
        """The next final response's head; interim 1xx answers (100 Continue) are skipped."""
        while True:
            m = _HEAD_END.search(self.buf)
            while m is None and len(self.buf) <= MAX_HEAD:
                self._fill()
                m = _HEAD_END.search(self.buf)
            if m is None or m.start() > MAX_HEAD:
                raise ProtocolError(f"response head over {MAX_HEAD} bytes")
            head = parse_head(self.buf[:m.start()])
            self.buf = self.buf[m.end():]
            if head.status >= 200:
                return head
            if head.status == 101:
                raise ProtocolError("the server switched protocols")

    def body(self, head: Head, max_bytes: int) -> bytes:
        """The body `head` announced, at most `max_bytes` (TooLarge past it)."""
        if head.length is not None and head.length > max_bytes:
            raise TooLarge()
        parts: List[bytes] = []
        size = 0
        for piece in self.pieces(head):
            size += len(piece)
            if size > max_bytes:
                raise TooLarge()
            parts.append(piece)
        return b"".join(parts)

    def pieces(self, head: Head) -> Iterator[bytes]:
        """The body `head` announced, in pieces as they arrive (a streamed answer's events as the
        server sends them); the caller bounds the total."""
        if head.chunked:
            yield from self._chunked()
        elif head.length is None:
            yield from self._until_closed()
        else:
            yield from self._exactly(head.length)

    def _exactly(self, n: int) -> Iterator[bytes]:
        while n:
            if not self.buf:
                self.buf = self._receive()
                if not self.buf:
                    raise ProtocolError(f"the connection closed {n} bytes before the body's end")
            piece, self.buf = self.buf[:n], self.buf[n:]
            n -= len(piece)
            yield piece

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 1:]
                return line.rstrip(b"\r")
            if len(self.buf) > MAX_CHUNK_LINE:
                raise ProtocolError("a chunk-size line over 4096 bytes")
            self._fill()

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._line().split(b";", 1)[0].strip()
            if not line or len(line) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in line):
                raise ProtocolError(f"invalid chunk size {line[:20]!r}")
            n = int(line, 16)
            if n == 0:
                while self._line():  # trailers, up to the blank line that ends the message
                    if len(self.buf) > MAX_HEAD:
                        raise ProtocolError(f"trailers over {MAX_HEAD} bytes")
                return
            yield from self._exactly(n)
            if self._line():
                raise ProtocolError("a chunk longer than its size line said")

    def _until_closed(self) -> Iterator[bytes]:
        if self.buf:
            yield self.buf
            self.buf = b""
        while True:
            try:
                data = self._receive()
            except Closed:  # a reset after the body: what came is the body
                return
            if not data:
                return
            yield data


def exchange(sock: socket.socket, request: bytes, deadline: float, clock: Callable[[], float],
             max_bytes: int) -> Tuple[Head, bytes, bool]:
    """Send one GET on `sock` and read its answer: (head, body, whether the connection can
    carry another request). Raises Closed, DeadlinePassed, ProtocolError, TooLarge, OSError."""
    send(sock, request, deadline, clock)
    reader = Reader(sock, deadline, clock)
    head = reader.head()
    body = reader.body(head, max_bytes)
    # bytes past the answer mean the two sides disagree on where it ended: never reuse
    return head, body, head.keep_alive and not reader.buf


def send(sock: socket.socket, request: bytes, deadline: float, clock: Callable[[], float]) -> None:
    """Write a whole request before `deadline`. Raises Closed, DeadlinePassed, OSError."""
    remaining = deadline - clock()
    if remaining <= 0:
        raise DeadlinePassed()
    sock.settimeout(remaining)
    try:
        sock.sendall(request)
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        raise Closed(False) from None
    except socket.timeout:
        raise DeadlinePassed() from None
