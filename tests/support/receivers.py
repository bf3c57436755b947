"""Local HTTP receivers that behave as Slack's incoming webhooks and PagerDuty's Events API v2
document (status codes, bodies, Retry-After), since neither can be reached from here; and a
webhook receiver that de-duplicates by the alert's fingerprint and status, as a receiver that
honours dedup keys does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

# mode -> (status, body, headers) per the services' documentation
SLACK = {
    "ok": (200, "ok", {}),
    "invalid_payload": (400, "invalid_payload", {}),
    "revoked": (403, "action_prohibited", {}),
    "archived": (410, "channel_is_archived", {}),
    "rate_limited": (429, "rate_limited", {"Retry-After": "30"}),
    "server_error": (500, "internal_error", {}),
    "unavailable": (503, "service_unavailable", {}),
}
PAGERDUTY = {
    "ok": (202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": "{dedup_key}"}), {}),
    "invalid_payload": (400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                         "errors": ["'routing_key' is invalid"]}), {}),
    "rate_limited": (429, json.dumps({"status": "throttle event", "message": "Requests for this service are arriving too quickly"}),
                     {"Retry-After": "30"}),
    "server_error": (500, "", {}),
    "unavailable": (502, "", {}),
}


class Receiver:
    """Records every POST; answers as `mode` says (see SLACK / PAGERDUTY); mode "hang" never answers."""

    def __init__(self, table: Dict[str, Tuple[int, str, Dict[str, str]]], mode: str = "ok"):
        self.table = table
        self.mode = mode
        self.requests: List[dict] = []
        self.unique: Dict[Tuple[str, str], dict] = {}
        self.accepted: List[dict] = []  # bodies answered with 2xx
        self.release = threading.Event()
        self.delay = 0.0  # seconds each answer takes (a slow receiver)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.mode == "hang":
                    outer.release.wait(30)
                    return
                if outer.delay:
                    outer.release.wait(outer.delay)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"raw": body.decode(errors="replace")}
                outer.requests.append({"path": self.path, "body": doc, "headers": dict(self.headers)})
                status, text, headers = outer.table[outer.mode]
                if status < 300:
                    outer.accepted.append(doc)
                    outer._dedup(doc)
                text = text.replace("{dedup_key}", doc.get("dedup_key", "") if isinstance(doc, dict) else "")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _dedup(self, doc) -> None:
        if not isinstance(doc, dict):
            return
        if doc.get("version") == "4":  # Alertmanager webhook: one entry per alert
            for a in doc.get("alerts", []):
                self.unique[(a["fingerprint"], a["status"])] = a
        elif "dedup_key" in doc:  # PagerDuty
            self.unique[(doc["dedup_key"], doc["event_action"])] = doc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def alerts(self, status: Optional[str] = None, accepted_only: bool = True) -> List[dict]:
        """Every alert in every webhook POST this receiver accepted (or got), duplicates included."""
        bodies = self.accepted if accepted_only else [r["body"] for r in self.requests]
        out = [a for b in bodies if isinstance(b, dict) and b.get("version") == "4" for a in b["alerts"]]
        return [a for a in out if status is None or a["status"] == status]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


WEBHOOK = {"ok": (200, "", {}), "unavailable": (503, "down for maintenance", {})}
