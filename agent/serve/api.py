"""Prometheus' HTTP query API over the history file, so that Grafana's Prometheus data source
and `promtool query` can point at the agent of a box with no Prometheus.

Parameters are read as Prometheus reads them (GET query string or a POSTed form; times as
Unix seconds or RFC 3339; a step as seconds or a duration) and answered in its JSON, errors
included (`bad_data` 400, `execution` 422, `timeout` 503). Every read runs under the query
budget (samples or series, and a deadline: tsdb/query.py); at most two run at once, in the
exporter's own lane for them, so /metrics and /healthz never wait behind a query.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import datetime
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote

from .. import __version__
from ..timefmt import parse_duration
from ..tsdb.query import Querier, QueryError
from ..tsdb.index import AlertEvent

log = logging.getLogger(__name__)

MIN_TIME, MAX_TIME = -9.2e12, 9.2e12  # Prometheus' min and max query times, in seconds
QUERY_SLOTS = 2
JSON = "application/json"
Answer = Tuple[int, bytes, str]


def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_time(text: str, name: str) -> float:
    value = _number(text)
    if value is not None:
        return value
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    raise QueryError("bad_data", f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp")


def parse_step(text: str, name: str) -> float:
    value = _number(text)
    if value is not None:
        return value
    try:
        return parse_duration(text)
    except ValueError:
        raise QueryError("bad_data", f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid duration") from None


def _since(text: str, now: float) -> float:
    """An alert history bound: a time, or a duration back from now ("7d")."""
    try:
        return now - parse_duration(text)
    except ValueError:
        return parse_time(text, "since")


def _event(e: AlertEvent) -> dict:
    return {"time": round(e.at, 3), "state": e.state, "labels": e.labels, "annotations": e.annotations,
            "value": None if math.isnan(e.value) else e.value, "fingerprint": e.fingerprint}


class QueryAPI:
    def __init__(self, querier: Querier, clock: Callable[[], float] = time.time,
                 metadata: Optional[Callable[[], Dict[str, List[dict]]]] = None):
        self.querier = querier
        self.clock = clock
        self.metadata = metadata or (lambda: {})
        self._slots = threading.BoundedSemaphore(QUERY_SLOTS)

    def handle(self, method: str, target: str, content_type: str, body: bytes) -> Answer:
        path, _, query = target.partition("?")
        params = parse_qs(query, keep_blank_values=True)
        if method == "POST" and content_type.split(";")[0].strip() == "application/x-www-form-urlencoded":
            for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        try:
            return self._route(path, params)
        except QueryError as e:
            code = {"bad_data": 400, "execution": 422, "timeout": 503, "unavailable": 503}.get(e.kind, 500)
            return code, json.dumps({"status": "error", "errorType": e.kind, "error": str(e)}).encode(), JSON
        except (RecursionError, MemoryError) as e:  # a query nested or sized to exhaust the process
            return 422, json.dumps({"status": "error", "errorType": "execution",
                                    "error": f"query too large to evaluate ({type(e).__name__})"}).encode(), JSON
        except Exception as e:  # a bug: said as Prometheus says an internal error, logged with its traceback
            log.error("query API: %s failed: %s: %s", path, type(e).__name__, e, exc_info=True)
            return 500, json.dumps({"status": "error", "errorType": "internal",
                                    "error": f"{type(e).__name__}: {e}"}).encode(), JSON

    def _route(self, path: str, params: Dict[str, List[str]]) -> Answer:
        now = self.clock()

        def one(name: str, default: Optional[str] = None) -> str:
            values = params.get(name)
            if not values or values[-1] == "":
                if default is None:
                    raise QueryError("bad_data", f"invalid parameter \"{name}\": missing")
                return default
            return values[-1]

        start = parse_time(one("start", str(MIN_TIME)), "start")
        end = parse_time(one("end", str(MAX_TIME)), "end")
        if path == "/api/v1/query":
            t = parse_time(one("time", repr(now)), "time")
            return self._run(lambda: self.querier.instant(one("query"), t))
        if path == "/api/v1/query_range":
            text = one("query")
            start, end = parse_time(one("start"), "start"), parse_time(one("end"), "end")
            step = parse_step(one("step"), "step")
            return self._run(lambda: self.querier.range(text, start, end, step))
        if path == "/api/v1/series":
            if not params.get("match[]"):
                raise QueryError("bad_data", "no match[] parameter provided")
            return self._run(lambda: (self.querier.series(params["match[]"], start, end), []))
        if path == "/api/v1/labels":
            return self._run(lambda: (self.querier.label_names(params.get("match[]", []), start, end), []))
        if path.startswith("/api/v1/label/") and path.endswith("/values"):
            name = unquote(path[len("/api/v1/label/"):-len("/values")])
            return self._run(lambda: (self.querier.label_values(name, params.get("match[]", []), start, end), []))
        if path == "/api/v1/status/buildinfo":
            return _ok({"version": __version__, "revision": "", "branch": "", "buildUser": "llm-agent",
                        "buildDate": "", "goVersion": "python"})
        if path == "/api/v1/metadata":
            return _ok(self.metadata())
        if path == "/api/v1/query_exemplars":
            return _ok([])
        if path == "/api/v1/alerts/history":
            since = _since(one("since", "7d"), now)
            until = parse_time(one("until", repr(now)), "until")
            events = self.querier.store.reader().alert_events(since, until)
            return _ok([_event(e) for e in events])
        return 404, json.dumps({"status": "error", "errorType": "not_found",
                                "error": f"unknown API endpoint {path}"}).encode(), JSON

    def _run(self, query: Callable[[], Tuple[object, List[str]]]) -> Answer:
        if not self._slots.acquire(timeout=self.querier.timeout):
            raise QueryError("unavailable", f"{QUERY_SLOTS} queries are already running; try again")
        try:
            data, warnings = query()
        finally:
            self._slots.release()
        return _ok(data, warnings)


def _ok(data: object, warnings: Optional[List[str]] = None) -> Answer:
    doc: Dict[str, object] = {"status": "success", "data": data}
    if warnings:
        doc["warnings"] = warnings
    return 200, json.dumps(doc, separators=(",", ":")).encode(), JSON
