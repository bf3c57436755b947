"""/api/v1/perf: the performance book over HTTP, for `llm-agent bench` and `llm-agent baseline`.

GET  /api/v1/perf                      every target: environment, last run, baseline, comparison, quality
POST /api/v1/perf/bench?target=NAME    benchmark NAME at its next idle moment (202)
POST /api/v1/perf/baseline?target=NAME[&last=N]   the last N completed runs become the baseline

Writes are protected as the Alertmanager API's are (never cross-site; basic auth, or loopback
and [exporter] api_write_from).
"""

from __future__ import annotations

import json
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from ..perf.book import PerfBook, compare

Reply = Tuple[int, bytes, str]
JSON = "application/json"


def _reply(code: int, doc: object) -> Reply:
    return code, json.dumps(doc, indent=1).encode() + b"\n", JSON


class PerfAPI:
    def __init__(self, book: PerfBook, refuse_write: Callable[[str, str, Dict[str, str]], Optional[Reply]],
                 tolerance: Callable[[], float]):
        self.book = book  # the API asks the book; a target's benchmark thread takes the request from it
        self.refuse_write = refuse_write
        self.tolerance = tolerance

    def handle(self, method: str, target: str, client: str, headers: Optional[Dict[str, str]] = None) -> Reply:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        name = (query.get("target") or [""])[0]
        known = set(self.book.scheduled()) | set(self.book.servers())
        if name and name not in known:  # never a book for a name a client made up
            return _reply(404, {"error": f"no target {name[:100]!r} with benchmarks here (known: "
                                         f"{', '.join(sorted(known)) or 'none'})"})
        if method == "POST":
            refusal = self.refuse_write(client, method, headers or {})
            if refusal:
                return refusal
            if parts.path == "/api/v1/perf/bench":
                schedule = self.book.schedule(name)
                if schedule is None:
                    return _reply(404, {"error": f"no target {name!r} with benchmarks here (known: "
                                                 f"{', '.join(self.book.scheduled()) or 'none'})"})
                bench_enabled, idle_for = schedule
                if not bench_enabled:
                    return _reply(409, {"error": "benchmarks are off: [bench] enabled = false"})
                self.book.request_run(name)
                return _reply(202, {"status": "queued", "target": name, "idle_for": idle_for})
            if parts.path == "/api/v1/perf/baseline":
                try:
                    last = int((query.get("last") or ["0"])[0])
                    base = self.book.record_baseline(name, last)
                except ValueError as e:
                    return _reply(400, {"error": str(e)})
                return _reply(200, {"target": name, "figures": base.figures, "runs": base.runs,
                                    "environment": base.environment.__dict__})
            return _reply(404, {"error": f"not found: {parts.path}"})
        if method not in ("GET", "HEAD"):
            return _reply(405, {"error": "use GET or POST"})
        if parts.path != "/api/v1/perf":
            return _reply(404, {"error": f"not found: {parts.path}"})
        names = [name] if name else sorted(known)
        return _reply(200, {"targets": {n: self.summary(n) for n in names}})

    def summary(self, server: str) -> dict:
        env = self.book.environment(server)
        last = self.book.last_run(server)
        completed = self.book.last_run(server, completed=True)
        base = self.book.baseline(server, env)
        quality = self.book.last_quality(server)
        return {
            "environment": env.__dict__,
            "last_run": last,
            "last_completed": completed,
            "baseline": None if base is None else {"figures": base.figures, "recorded_at": base.recorded_at,
                                                   "runs": base.runs, "how": base.how},
            "comparison": [c.__dict__ for c in compare(completed["figures"], base, self.tolerance())] if completed else [],
            "last_change": self.book.last_change(server),
            "quality": quality,
            "quality_baseline": self.book.quality_baseline(server),
            "runs": len(self.book.runs(server)),
        }
