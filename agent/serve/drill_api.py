"""/api/v1/drill: fire drills over HTTP, for `llm-agent drill`.

POST /api/v1/drill?kind=KIND[&channel=NAME]   start one (202, its id); KIND: target-down, hang, xid
GET  /api/v1/drill/ID                          its stages so far, in seconds after injection

Starting one is a write, protected as the Alertmanager API's writes are (never cross-site;
basic auth, or loopback and [exporter] api_write_from): it makes the agent page.
"""

from __future__ import annotations

import json
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from ..drill import Drills

Reply = Tuple[int, bytes, str]


def _reply(code: int, doc: object) -> Reply:
    return code, json.dumps(doc, indent=1).encode() + b"\n", "application/json"


class DrillAPI:
    def __init__(self, drills: Drills, channels: Callable[[], List[str]],
                 refuse_write: Callable[[str, str, Dict[str, str]], Optional[Reply]]):
        self.drills = drills
        self.channels = channels
        self.refuse_write = refuse_write

    def handle(self, method: str, target: str, client: str, headers: Optional[Dict[str, str]] = None) -> Reply:
        parts = urlsplit(target)
        if method == "POST" and parts.path == "/api/v1/drill":
            refusal = self.refuse_write(client, method, headers or {})
            if refusal:
                return refusal
            query = parse_qs(parts.query)
            kind, channel = (query.get("kind") or ["target-down"])[0], (query.get("channel") or [""])[0]
            if channel and channel not in self.channels():
                return _reply(404, {"error": f"no channel {channel[:100]!r} (configured: "
                                             f"{', '.join(self.channels()) or 'none'})"})
            try:
                drill = self.drills.start(kind, channel)
            except ValueError as e:
                return _reply(400 if "kind" in str(e) else 429, {"error": str(e)})
            return _reply(202, drill.to_doc())
        if method not in ("GET", "HEAD"):
            return _reply(405, {"error": "POST /api/v1/drill to start one, GET /api/v1/drill/ID to follow it"})
        doc = self.drills.status(parts.path[len("/api/v1/drill/"):]) if parts.path.startswith("/api/v1/drill/") else None
        if doc is None:
            return _reply(404, {"error": "no such drill"})
        return _reply(200, doc)
