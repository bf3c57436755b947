"""Small local HTTP servers for the failure cases no real server shows on demand: a malformed
or huge /metrics body, a server that accepts and never answers, one that trickles bytes, and
replays of captured bodies."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Tuple

Route = Callable[[BaseHTTPRequestHandler], Tuple[int, bytes, str]]


def static(body: bytes, status: int = 200, ctype: str = "text/plain") -> Route:
    return lambda _h: (status, body, ctype)


class RouteServer:
    """Serves `routes` (path -> function returning status, body, content type)."""

    def __init__(self, routes: Dict[str, Route]):
        self.routes = routes
        self.hits: Dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                route = outer.routes.get(path)
                if route is None:
                    status, body, ctype = 404, b"not found", "text/plain"
                else:
                    status, body, ctype = route(self)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # the body is read first (handler.body), then routed as a GET is
                self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "RouteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts TCP connections and never answers (a hung target). With `trickle`, sends a
    valid response header and then one body byte per second, forever."""

    def __init__(self, trickle: bool = False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.trickle = trickle
        self.conns = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
            while not self._stop.is_set():
                conn.sendall(b"#")
                time.sleep(0.2)
        except OSError:
            pass

    def __enter__(self) -> "SilentServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()
