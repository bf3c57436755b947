"""Talking to the agent that runs with this configuration, over its own port: `check` reads its
alerts and maintenance windows; `silence` and `maintenance` write silences through its
Alertmanager API v2 (the same requests amtool makes). Over loopback, so writes are accepted
without credentials unless basic auth is configured (then --user, and the password from
$LLM_AGENT_PASSWORD or a prompt)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any, Optional, Tuple


class ApiError(Exception):
    """The agent could not be reached, or refused; the message says which and why."""


def local_url(listen: Tuple[str, int], tls: bool = False) -> str:
    """The agent's base URL as seen from this host (a wildcard listen address is loopback)."""
    host, port = listen
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}"


def call(base: str, method: str, path: str, body: Any = None, auth: Optional[Tuple[str, str]] = None,
         timeout: float = 5.0, accept: Tuple[int, ...] = ()) -> Any:
    """One request; the JSON answer (None for an empty one). ApiError with the agent's reason;
    an error status in `accept` is an answer too (/healthz says 503 with its reasons)."""
    data = json.dumps(body).encode() if body is not None else None
    # a write says it is JSON even without a body: the agent refuses writes that are not (cross-site forms)
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None or method == "POST" else {})
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    context = None
    if base.startswith("https"):  # our own agent, on this host: its certificate is for other clients
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            raw = resp.read(8 << 20)
    except urllib.error.HTTPError as e:
        if e.code in accept:
            raw = e.read(8 << 20)
            try:
                return json.loads(raw)
            except ValueError:
                raise ApiError(f"{base}{path} did not answer JSON: is another program on that port?") from None
        if e.code == 401:
            raise ApiError("the agent asks for credentials: pass --user (password from $LLM_AGENT_PASSWORD)") from None
        detail = e.read(4096).decode("utf-8", "replace").strip()
        try:
            detail = str(json.loads(detail))
        except ValueError:
            pass
        raise ApiError(f"HTTP {e.code}: {detail}") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ApiError(f"no agent answers at {base}" if "refused" in str(reason) else str(reason)[:200]) from None
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        raise ApiError(f"{base}{path} did not answer JSON: is another program on that port?") from None
