"""A local server that answers as Ollama's API documentation says, from the bodies in
tests/fixtures/ollama (no real Ollama can be installed here): /api/version, /api/ps, and
/api/chat streamed as newline-delimited JSON, one line per token."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Optional

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ollama"


class FakeOllama:
    def __init__(self, loaded: bool = True, token_delay: float = 0.01):
        self.loaded = loaded
        self.token_delay = token_delay
        self.chats: List[dict] = []  # the bodies POSTed to /api/chat
        self.ps_body: Optional[bytes] = None  # a test's own /api/ps answer (a hostile one, say)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, body: bytes, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/api/version":
                    self._json((FIXTURES / "version.json").read_bytes())
                elif self.path == "/api/ps":
                    self._json(outer.ps_body or (FIXTURES / ("ps.json" if outer.loaded else "ps_empty.json")).read_bytes())
                elif self.path == "/":
                    self._json(b"Ollama is running")
                else:
                    self._json(b'{"error":"not found"}', 404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path != "/api/chat":
                    self._json(b'{"error":"not found"}', 404)
                    return
                outer.chats.append(body)
                if not body.get("model"):
                    self._json(b'{"error":"model is required"}', 400)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in (FIXTURES / "chat_stream.ndjson").read_bytes().splitlines():
                    line = line.replace(b"llama3.2:3b", body["model"].encode()) + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    time.sleep(outer.token_delay)
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
