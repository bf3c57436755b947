"""The collectors' HTTP/1.1 client (collectors/wire.py, collectors/http.py) against servers that
answer with scripted bytes: every way of ending a body, interim answers, a server that drops a
kept-alive connection, and the hostile ones (a head or body too large, garbage, bytes past the
answer, random bytes)."""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from typing import Callable, List

import pytest

from agent.collectors.http import FetchError, HttpClient
from agent.collectors.wire import ProtocolError, parse_head, request_bytes

Handler = Callable[[socket.socket, int], None]  # (connection, its number from 0)


class ScriptedServer:
    """Accepts connections and hands each to `handler`; records every request it read."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext = None):
        self.handler = handler
        self.tls = tls
        self.requests: List[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, n)
        except OSError:
            pass
        finally:
            conn.close()

    def read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return False
            data += chunk
        self.requests.append(data)
        return True

    def close(self) -> None:
        self.sock.close()


def answering(server_answers: List[bytes], close_after: bool = False) -> Callable[[ScriptedServer], Handler]:
    """A handler that answers each request on a connection with the next of `server_answers`."""
    def make(srv: ScriptedServer) -> Handler:
        def handle(conn: socket.socket, n: int) -> None:
            for answer in server_answers:
                if not srv.read_request(conn):
                    return
                conn.sendall(answer)
            if not close_after:
                srv.read_request(conn)  # hold the connection open until the client goes
        return handle
    return make


@pytest.fixture
def serve():
    servers = []

    def start(make: Callable[[ScriptedServer], Handler], tls=None) -> ScriptedServer:
        srv = ScriptedServer(lambda c, n: None, tls)
        srv.handler = make(srv)
        servers.append(srv)
        return srv
    yield start
    for s in servers:
        s.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_a_request_names_the_host_and_asks_for_no_compression(serve):
    srv = serve(answering([ok(b"up 1\n")]))
    client = HttpClient(srv.url + "/prefix/", {"Authorization": "Bearer k"})
    assert client.get("/metrics", 2, 1 << 20).body == b"up 1\n"
    request = srv.requests[0].decode()
    assert request.startswith("GET /prefix/metrics HTTP/1.1\r\n")
    port = srv.url.rsplit(":", 1)[1]
    assert f"\r\nHost: 127.0.0.1:{port}\r\n" in request and "Accept-Encoding: identity" in request
    assert "User-Agent: llm-agent" in request and "Authorization: Bearer k" in request
    client.close()


def test_one_connection_carries_every_request_of_a_target(serve):
    srv = serve(answering([ok(b"a"), ok(b"bb"), ok(b"")]))
    client = HttpClient(srv.url)
    assert [client.get("/x", 2, 100).body for _ in range(3)] == [b"a", b"bb", b""]
    assert srv.connections == 1
    client.close()


def test_chunked_body_with_extensions_and_trailers(serve):
    body = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n")
    srv = serve(answering([body, ok(b"next")]))
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"hello world"
    assert client.get("/", 2, 100).body == b"next"  # the trailers were read: the connection is in step
    assert srv.connections == 1
    client.close()


def test_a_body_that_ends_when_the_server_closes(serve):
    srv = serve(answering([b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nup 1\nup 2\n"], close_after=True))
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"up 1\nup 2\n"
    assert client._sock is None  # not reused
    client.close()


def test_interim_answers_are_skipped(serve):
    srv = serve(answering([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"x")]))
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"x"
    client.close()


def test_a_kept_alive_connection_the_server_dropped_is_replaced_without_an_error(serve):
    def make(srv: ScriptedServer) -> Handler:
        def handle(conn: socket.socket, n: int) -> None:
            srv.read_request(conn)
            conn.sendall(ok(b"first" if n == 0 else b"again"))
            if n == 0:
                return  # closes the connection: an idle keep-alive timeout on the server's side
            srv.read_request(conn)
        return handle
    srv = serve(make)
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"first"
    import time
    time.sleep(0.1)  # the close has arrived
    assert client.get("/", 2, 100).body == b"again"
    assert srv.connections == 2
    client.close()


def test_a_close_as_the_request_goes_out_is_retried_once_on_a_new_connection(serve):
    def make(srv: ScriptedServer) -> Handler:
        def handle(conn: socket.socket, n: int) -> None:
            srv.read_request(conn)
            if n == 0:
                conn.sendall(ok(b"first"))
                srv.read_request(conn)  # reads the second request, then closes without an answer
                return
            conn.sendall(ok(b"retried"))
            srv.read_request(conn)
        return handle
    srv = serve(make)
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"first"
    assert client.get("/", 2, 100).body == b"retried"
    client.close()


def test_a_fresh_connection_closed_without_an_answer_is_an_error_not_a_loop(serve):
    srv = serve(answering([], close_after=True))
    with pytest.raises(FetchError) as e:
        HttpClient(srv.url).get("/", 2, 100)
    assert e.value.reason == "connect"
    assert srv.connections == 1


@pytest.mark.parametrize("answer, reason", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "too_large"),  # refused before reading
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"40\r\n" + b"x" * 64 + b"\r\n") * 2, "too_large"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 200, "too_large"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"y" * 70000 + b"\r\n\r\n", "invalid"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "invalid"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "invalid"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "invalid"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "invalid"),
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\n\r\nloading", "http_503"),
])
def test_hostile_or_broken_answers_fail_with_their_reason(serve, answer, reason):
    srv = serve(answering([answer], close_after=True))
    with pytest.raises(FetchError) as e:
        HttpClient(srv.url).get("/", 2, 100)
    assert e.value.reason == reason


def test_bytes_past_the_answer_mean_the_connection_is_not_reused(serve):
    srv = serve(answering([ok(b"a") + b"HTTP/1.1 200 OK\r\n", ok(b"b")]))
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"a"
    assert client._sock is None
    client.close()


def test_a_header_that_would_split_the_request_is_refused_without_echoing_it():
    with pytest.raises(FetchError) as e:  # the config refuses one first; a code path that slips one in fails alone
        HttpClient("http://127.0.0.1:1", {"Authorization": "Bearer s3cret\r\nX-Injected: 1"}).get("/", 1, 100)
    assert e.value.reason == "invalid" and "Authorization" in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(ValueError):
        request_bytes("/a b", "h", {})


def test_a_server_echoing_the_key_in_a_broken_answer_never_gets_it_into_the_error(serve):
    answers = [b"Authorization: Bearer s3cret-key\r\n\r\n", b"HTTP/1.1 200 OK\r\nBearer s3cret-key\r\n\r\n"]

    def make(srv: ScriptedServer) -> Handler:
        def handle(conn: socket.socket, n: int) -> None:
            if srv.read_request(conn):
                conn.sendall(answers[n])
        return handle
    srv = serve(make)
    for _ in answers:
        with pytest.raises(FetchError) as e:
            HttpClient(srv.url, {"Authorization": "Bearer s3cret-key"}).get("/", 2, 100)
        assert e.value.reason == "invalid" and "s3cret" not in str(e.value) and "<secret>" in str(e.value)


def test_host_header_brackets_ipv6_and_leaves_out_the_default_port():
    assert HttpClient("http://[::1]:8080")._host_header == "[::1]:8080"
    assert HttpClient("http://example.com")._host_header == "example.com"
    assert HttpClient("https://example.com:443/x")._host_header == "example.com"


def test_parse_head_length_rules():
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3").length == 3  # repeated, equal
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked")
    assert head.chunked and head.length is None  # chunked wins (RFC 9112 6.3)
    assert parse_head(b"HTTP/1.1 204 No Content").length == 0
    assert not parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0").keep_alive
    assert not parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0").keep_alive
    assert parse_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0").keep_alive
    assert parse_head(b"HTTP/1.1 200\nContent-Length: 0").status == 200  # bare LF, no reason phrase
    for bad in (b"HTTP/2 200 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 200 OK\r\nno colon here",
                b"HTTP/1.1 200 OK\r\nContent-Length: -1", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999"):
        with pytest.raises(ProtocolError):
            parse_head(bad)


def test_random_answers_only_ever_raise_fetch_error(serve):
    rng = random.Random(11)
    pieces = [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 404 x\r\n", b"Content-Length: 4\r\n", b"Transfer-Encoding: chunked\r\n",
              b"\r\n", b"4\r\n", b"abcd", b"0\r\n\r\n", b"\n", b"\x00\xff", b"Connection: close\r\n", b"HTTP/1.1 100 C\r\n\r\n"]
    answers = [b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12))) for _ in range(300)]

    def make(srv: ScriptedServer) -> Handler:
        def handle(conn: socket.socket, n: int) -> None:  # one answer a connection, then closed
            if srv.read_request(conn):
                conn.sendall(answers[n])
        return handle
    srv = serve(make)
    client = HttpClient(srv.url)
    outcomes = set()
    for _ in answers:
        try:
            client.get("/", 2, 1000)
            outcomes.add("ok")
        except FetchError as e:
            outcomes.add(e.reason)
    assert outcomes <= {"ok", "invalid", "connect", "too_large", "http_404"}
    assert {"ok", "invalid"} <= outcomes
    client.close()


def test_https_target_verified_against_the_trusted_cas(serve, tmp_path, monkeypatch):
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki / "server.crt", pki / "server.key")
    srv = serve(answering([ok(b"secure"), ok(b"again")]), tls=tls)
    with pytest.raises(FetchError) as e:  # a CA nobody trusts: refused, never read
        HttpClient(srv.url).get("/", 2, 100)
    assert e.value.reason == "connect"
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    client = HttpClient(srv.url)
    assert client.get("/", 2, 100).body == b"secure"
    assert client.get("/", 2, 100).body == b"again"
    client.close()


def _streaming(sent_first: threading.Event, read_first: threading.Event, posted: List[bytes]):
    """A handler that reads a POST (head and Content-Length body), answers chunked, and sends
    half of its first chunk, waiting for the client to have read that half before the rest."""
    def make(srv: ScriptedServer) -> Handler:
        def handle(conn: socket.socket, n: int) -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += conn.recv(4096)
            posted.append(data[:len(head) + 4] + body)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            sent_first.set()
            read_first.wait(5)
            conn.sendall(b"lo\r\n6\r\n world\r\n0\r\n\r\n")
        return handle
    return make


def _read_streamed(url: str, read_first: threading.Event) -> List[bytes]:
    from agent.collectors.http import streamed

    pieces = []
    with streamed(url + "/v1/", "POST", "/completion", {"Content-Type": "application/json"}, b'{"n": 1}',
                  time.monotonic() + 10, time.monotonic) as (head, reader):
        assert head.status == 200 and head.chunked
        for piece in reader.pieces(head):
            pieces.append(piece)
            read_first.set()
    return pieces


def test_a_streamed_post_yields_each_piece_as_it_arrives(serve):
    """A probe times its first token by the first bytes: the reader hands them over before their
    chunk is complete (the server sends the rest only once the client has read them)."""
    sent_first, read_first, posted = threading.Event(), threading.Event(), []
    srv = serve(_streaming(sent_first, read_first, posted))
    started = time.monotonic()
    assert _read_streamed(srv.url, read_first) == [b"hel", b"lo", b" world"]
    assert time.monotonic() - started < 4, "the first half waited for the rest of its chunk"
    assert posted[0].startswith(b"POST /v1/completion HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 8\r\n" in posted[0] and posted[0].endswith(b'\r\n\r\n{"n": 1}')


def test_a_streamed_post_over_https(serve, tmp_path, monkeypatch):
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki / "server.crt", pki / "server.key")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    read_first = threading.Event()
    srv = serve(_streaming(threading.Event(), read_first, []), tls=tls)
    assert b"".join(_read_streamed(srv.url, read_first)) == b"hello world"


def test_post_request_bytes_carry_their_length_and_body():
    out = request_bytes("/p", "h:1", {"Content-Type": "application/json"}, "POST", b"{}")
    assert out == (b"POST /p HTTP/1.1\r\nHost: h:1\r\nAccept-Encoding: identity\r\nContent-Length: 2\r\n"
                   b"Content-Type: application/json\r\n\r\n{}")
    assert b"Content-Length" not in request_bytes("/p", "h", {})
