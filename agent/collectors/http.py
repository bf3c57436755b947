"""Bounded HTTP GETs for collectors: a hard deadline and a size cap on every body.

`requests`' timeout bounds each socket read, not the whole response, so a server that
trickles bytes forever would hold a collector hostage; here the body is read in chunks
against one deadline and one byte budget.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import requests
import urllib3

CHUNK = 64 * 1024


class FetchError(Exception):
    """A GET that produced no usable body. `reason` is a short label for metrics:
    refused, timeout, too_large, http_<status>, invalid."""

    def __init__(self, reason: str, message: str, status: int = 0, body: bytes = b""):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.body = body


@dataclass
class Response:
    status: int
    body: bytes
    duration: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise FetchError("invalid", f"invalid JSON: {e}") from None


def fetch(session: requests.Session, url: str, timeout: float, max_bytes: int,
          headers: Optional[Dict[str, str]] = None, ok_statuses: tuple = (200,),
          clock: Callable[[], float] = time.monotonic) -> Response:
    """GET `url`; raise FetchError unless the status is in `ok_statuses` and the whole body
    (at most `max_bytes`) arrived within `timeout` seconds. The URL is never in a message
    (it may carry credentials); callers name the target instead."""
    start = clock()
    deadline = start + timeout
    try:
        resp = session.get(url, timeout=(min(timeout, 2.0), timeout), stream=True, headers=headers)
    except requests.exceptions.Timeout:
        raise FetchError("timeout", f"no answer within {timeout:g}s") from None
    except requests.exceptions.ConnectionError as e:
        text = str(e)
        reason = "refused" if "refused" in text.lower() else "connect"
        raise FetchError(reason, "connection refused" if reason == "refused" else "cannot connect") from None
    except requests.exceptions.RequestException as e:
        raise FetchError("invalid", f"request failed: {type(e).__name__}") from None
    chunks, size = [], 0
    try:
        # read1 returns what has arrived (urllib3 2): a trickling server meets the deadline
        # check on every few bytes instead of hiding behind a 64 KiB read
        while True:
            chunk = resp.raw.read1(CHUNK, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise FetchError("too_large", f"response body over the {max_bytes} byte limit")
            if clock() > deadline:
                raise FetchError("timeout", f"body not complete within {timeout:g}s")
            chunks.append(chunk)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        reason = "timeout" if "timed out" in str(e).lower() else "invalid"
        raise FetchError(reason, f"body read failed: {type(e).__name__}") from None
    finally:
        resp.close()
    body = b"".join(chunks)
    if resp.status_code not in ok_statuses:
        raise FetchError(f"http_{resp.status_code}", f"HTTP {resp.status_code}", resp.status_code, body[:4096])
    return Response(resp.status_code, body, clock() - start)


def error_message(body: bytes) -> str:
    """The message of a llama-server/OpenAI style error body ({"error": {"message": ...}})."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message", ""))[:200]
        return str(err)[:200]
    return ""
