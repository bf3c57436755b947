"""A real Python inference-like server that gets stuck mid-stream, for stall tests.

Run as a script: `python stuck_server.py PORT`. It answers /health, serves vLLM-style
/metrics, and streams an OpenAI chat completion that sends two tokens and then hangs forever in
`stuck_in_decode()`, while /metrics keeps reporting one running request and a flat token count:
exactly what a wedged engine looks like from outside.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"running": 0, "tokens": 100}


def stuck_in_decode():
    """Where the engine hangs: the py-spy summary must name this function."""
    while True:
        time.sleep(0.05)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b'{"status":"ok"}')
        elif self.path == "/metrics":
            body = ("# TYPE vllm:num_requests_running gauge\n"
                    f'vllm:num_requests_running{{model_name="m"}} {STATE["running"]}\n'
                    "# TYPE vllm:generation_tokens_total counter\n"
                    f'vllm:generation_tokens_total{{model_name="m"}} {STATE["tokens"]}\n')
            self._send(200, body.encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, b"{}")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        STATE["running"] += 1
        for word in ("Hel", "lo"):
            event = {"choices": [{"delta": {"content": word}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            STATE["tokens"] += 1
        stuck_in_decode()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
