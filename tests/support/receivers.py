"""Local HTTP receivers that behave as Slack's incoming webhooks, PagerDuty's Events API v2,
Microsoft Teams' Workflows webhooks and Opsgenie's Alert API v2 document (status codes, bodies,
Retry-After and rate-limit headers), since none can be reached from here; and a
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

# A Workflows (Power Automate) HTTP trigger: 202 with no body; its documented error bodies
TEAMS = {
    "ok": (202, "", {}),
    "invalid_payload": (400, json.dumps({"error": {"code": "InvalidRequestContent", "message": "The input body for "
                                                    "trigger 'manual' of type 'Request' must be of type JSON"}}), {}),
    "gone": (404, json.dumps({"error": {"code": "WorkflowNotFound", "message": "The workflow could not be found."}}), {}),
    "rate_limited": (429, json.dumps({"error": {"code": "WorkflowTriggerIsThrottled", "message": "Rate limit reached"}}),
                     {"Retry-After": "30"}),
    "server_error": (500, "", {}),
    "unavailable": (502, json.dumps({"error": {"code": "BadGateway", "message": "Request failed"}}), {}),
}
_OG = '"took": 0.003, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"'
OPSGENIE = {
    "ok": (202, '{"result": "Request will be processed", ' + _OG + "}", {}),
    "invalid_payload": (422, '{"message": "Request body is not processable. Please check the errors.", '
                             '"errors": {"message": "Message can not be empty."}, ' + _OG + "}", {}),
    "unauthorized": (401, '{"message": "Could not authenticate", ' + _OG + "}", {}),
    "not_found": (404, '{"message": "Alert does not exist", ' + _OG + "}", {}),
    "rate_limited": (429, '{"message": "You are making too many requests! To avoid errors, we recommend you limit '
                          'requests.", ' + _OG + "}", {"X-RateLimit-State": "THROTTLED"}),
    "server_error": (500, '{"message": "Internal Server Error", ' + _OG + "}", {}),
    "unavailable": (503, "", {}),
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
                text = text.replace("{authorization}", self.headers.get("Authorization", ""))  # a receiver that echoes
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
