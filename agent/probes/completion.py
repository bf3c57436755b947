"""A streamed completion probe: does the model actually answer, and how fast?

One short request (temperature 0, fixed seed) to llama-server's /completion or an OpenAI
/v1/chat/completions, read as server-sent events, timing the first token (TTFT) and the gap
between tokens (TPOT). `parse_event()` is pure and tested on captured streams; `run_probe()`
does the I/O against one deadline.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..collectors import wire
from ..collectors.http import FetchError, HttpClient, streamed
from ..collectors.llamacpp import parse_models
from ..collectors.ollama import parse_ps


# A streamed answer's bounds: one event line (llama.cpp's carry a token, the last its timings),
# and the whole answer (4,096 tokens, the most a probe or benchmark asks for, at ~400 bytes an
# event is under 2 MiB). A server past either is broken or hostile, and must not grow memory.
MAX_LINE = 1 << 20
MAX_ANSWER = 16 << 20


@dataclass
class ProbeSpec:
    url: str
    api: str = "completion"  # completion (llama-server) | chat (OpenAI-compatible) | ollama (/api/chat)
    prompt: str = "Reply with the single word OK."
    max_tokens: int = 8
    seed: int = 42
    timeout: float = 10.0
    model: str = ""
    api_key: str = field(default="", repr=False)
    only_loaded: bool = True  # Ollama, llama.cpp routers: never probe (and so load) a model not loaded
    ignore_eos: bool = False  # generate exactly max_tokens (a benchmark's fixed length; llama.cpp, vLLM)
    cancel: Optional[threading.Event] = field(default=None, repr=False, compare=False)  # set: hang up (a benchmark yields)


@dataclass
class ProbeResult:
    success: bool
    error: str = ""  # timeout | http_<status> | empty | broken_stream | refused | connect | skipped
    ttft: Optional[float] = None
    tpot: Optional[float] = None
    duration: float = 0.0
    tokens: int = 0
    text: str = ""
    detail: str = ""
    prompt_tokens: Optional[int] = None  # as the server counted them, where it says


def request_body(spec: ProbeSpec) -> Tuple[str, dict]:
    """(path, JSON body) for the probe."""
    if spec.api == "ollama":
        return "/api/chat", {"model": spec.model, "messages": [{"role": "user", "content": spec.prompt}], "stream": True,
                             "options": {"temperature": 0, "seed": spec.seed, "num_predict": spec.max_tokens}}
    if spec.api == "chat":
        body = {"messages": [{"role": "user", "content": spec.prompt}], "max_tokens": spec.max_tokens,
                "temperature": 0, "seed": spec.seed, "stream": True, "stream_options": {"include_usage": True}}
        if spec.model:
            body["model"] = spec.model
        if spec.ignore_eos:
            body["ignore_eos"] = True
        return "/v1/chat/completions", body
    body = {"prompt": spec.prompt, "n_predict": spec.max_tokens, "temperature": 0, "seed": spec.seed, "stream": True,
            "cache_prompt": False}
    if spec.ignore_eos:
        body["ignore_eos"] = True
    return "/completion", body


def parse_event(line: str) -> Tuple[str, bool, Optional[int]]:
    """One SSE line -> (text piece, end of stream, tokens the server says it generated).
    Raises ValueError on a malformed event. llama-server: data: {"content": "...", "stop":
    false}, the last one with "tokens_predicted"; OpenAI: data: {"choices": [{"delta":
    {"content": "..."}}]}, a "usage" chunk, then data: [DONE]. A server may merge several
    tokens into one event (llama-server holds back incomplete UTF-8), so the count it
    reports wins over the number of events."""
    if not line.startswith("data:"):
        return "", False, None
    data = line[5:].strip()
    if data == "[DONE]":
        return "", True, None
    event = json.loads(data)
    if not isinstance(event, dict):
        raise ValueError("event is not a JSON object")
    if "error" in event:
        raise ValueError(f"error event: {str(event['error'])[:200]}")
    usage = event.get("usage") or {}
    if "choices" in event:
        choices = event["choices"] or [{}]
        delta = choices[0].get("delta") or {}
        return delta.get("content") or choices[0].get("text") or "", False, usage.get("completion_tokens")
    reported = event.get("tokens_predicted") if event.get("stop") else None
    return event.get("content") or "", bool(event.get("stop")), reported


def prompt_tokens_of(line: str) -> Optional[int]:
    """The prompt's token count where a stream event states it: llama-server's final event
    (tokens_evaluated), an OpenAI usage chunk (usage.prompt_tokens), Ollama's last line
    (prompt_eval_count); None elsewhere."""
    data = line[5:].strip() if line.startswith("data:") else line
    if not data.startswith("{"):
        return None
    try:
        event = json.loads(data)
    except ValueError:
        return None
    usage = event.get("usage") if isinstance(event, dict) else None
    for value in (event.get("tokens_evaluated"), event.get("prompt_eval_count"),
                  usage.get("prompt_tokens") if isinstance(usage, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def parse_ollama_line(line: str) -> Tuple[str, bool, Optional[int], Dict[str, float]]:
    """One line of Ollama's /api/chat stream (newline-delimited JSON) -> (text, done, tokens
    generated, the server's timings in seconds). The last line ("done": true) carries
    load_duration, prompt_eval_duration, eval_count and eval_duration, in nanoseconds."""
    if not line:
        return "", False, None, {}
    event = json.loads(line)
    if not isinstance(event, dict):
        raise ValueError("line is not a JSON object")
    if "error" in event:
        raise ValueError(f"error: {str(event['error'])[:200]}")
    message = event.get("message")
    text = (message.get("content") or "") if isinstance(message, dict) else ""
    if not event.get("done"):
        return text, False, None, {}
    timings = {k: event[k] / 1e9 for k in ("load_duration", "prompt_eval_duration", "eval_duration", "total_duration")
               if isinstance(event.get(k), (int, float))}
    count = event.get("eval_count")
    return text, True, count if isinstance(count, int) else None, timings


def loaded_models(spec: ProbeSpec) -> List[str]:
    """The models the server has loaded: Ollama's GET /api/ps, a llama.cpp router's GET /models
    ("loaded" ones only); [] when none is or the list cannot be read."""
    client = HttpClient(spec.url, _headers(spec))
    try:
        body = client.get("/api/ps" if spec.api == "ollama" else "/models", spec.timeout, 1 << 20).json()
        if spec.api == "ollama":
            return [m.name for m in parse_ps(body)]
        return [m for m, state in sorted(parse_models(body).items()) if state == "loaded"]
    except (FetchError, ValueError):
        return []
    finally:
        client.close()


def _headers(spec: ProbeSpec, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A probe's request headers: its User-Agent, its key if it has one, and `extra`."""
    headers = {**(extra or {}), "User-Agent": "llm-agent-probe"}
    if spec.api_key:
        headers["Authorization"] = f"Bearer {spec.api_key}"
    return headers


def model_to_probe(spec: ProbeSpec) -> str:
    """The configured model if it is loaded (or loading it is allowed), else the first loaded
    one when none is configured; "" when there is nothing to probe without loading a model."""
    if spec.model and not spec.only_loaded:
        return spec.model
    loaded = loaded_models(spec)
    if spec.model:
        return spec.model if spec.model in loaded else ""
    return loaded[0] if loaded else ""


def run_probe(spec: ProbeSpec, clock: Callable[[], float] = time.monotonic) -> ProbeResult:
    """Send the probe and read its stream against `spec.timeout`."""
    result = _run(spec, clock)
    if spec.api_key and spec.api_key in result.detail:  # a server that echoes our Authorization header
        result.detail = result.detail.replace(spec.api_key, "<secret>")
    return result


class _Answer:
    """What a streamed answer has said so far: its tokens (and when each came), the counts and
    timings the server reported, whether its final event came."""

    def __init__(self, api: str, clock: Callable[[], float]):
        self.api, self.clock = api, clock
        self.token_times: List[float] = []
        self.pieces: List[str] = []
        self.reported: Optional[int] = None
        self.prompt_tokens: Optional[int] = None
        self.timings: Dict[str, float] = {}
        self.ended = False

    def feed(self, buffer: bytes) -> bytes:
        """Read the complete lines of `buffer` (ValueError: a broken stream); the rest is returned."""
        while b"\n" in buffer and not self.ended:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").strip()
            if self.api == "ollama":
                text, self.ended, count, self.timings = parse_ollama_line(line)
            else:
                text, self.ended, count = parse_event(line)
            self.reported = count if count is not None else self.reported
            if text:
                self.token_times.append(self.clock())
                self.pieces.append(text)
            if b"tokens_evaluated" in raw or b"prompt_tokens" in raw or b"prompt_eval_count" in raw:
                self.prompt_tokens = prompt_tokens_of(line)
        return buffer

    def result(self, start: float) -> ProbeResult:
        duration = self.clock() - start
        if not self.ended:
            return ProbeResult(False, "broken_stream", duration=duration, tokens=len(self.token_times),
                               detail="the stream ended without its final event")
        if not self.token_times:
            return ProbeResult(False, "empty", duration=duration, detail="no token in the answer")
        tokens = max(self.reported or 0, len(self.token_times))
        # time per output token after the first, over the tokens the server generated
        tpot = (self.token_times[-1] - self.token_times[0]) / (tokens - 1) if tokens > 1 else None
        ttft = self.token_times[0] - start
        if "prompt_eval_duration" in self.timings:  # Ollama's own: loading the model and reading the prompt
            ttft = self.timings.get("load_duration", 0.0) + self.timings["prompt_eval_duration"]
        if "eval_duration" in self.timings and self.reported:
            tpot = self.timings["eval_duration"] / self.reported
        return ProbeResult(True, ttft=ttft, tpot=tpot, duration=duration, tokens=tokens, text="".join(self.pieces),
                           prompt_tokens=self.prompt_tokens)


def _run(spec: ProbeSpec, clock: Callable[[], float]) -> ProbeResult:
    if spec.api == "ollama" and (spec.only_loaded or not spec.model):
        model = model_to_probe(spec)
        if not model:
            return ProbeResult(False, "skipped", detail=f"{spec.model or 'no model'} not loaded (the probe loads none)")
        spec = dataclasses.replace(spec, model=model)
    path, body = request_body(spec)
    headers = _headers(spec, {"Content-Type": "application/json", "Accept": "text/event-stream"})
    start = clock()
    answer = _Answer(spec.api, clock)
    try:
        with streamed(spec.url, "POST", path, headers, json.dumps(body).encode(), start + spec.timeout, clock) as (head, reader):
            if head.status == 200:
                return _stream(spec, head, reader, answer, start)
            detail = _first_bytes(head, reader, 300).decode("utf-8", "replace")
        return _not_ok(spec, head.status, detail, clock, start)  # its connection closed: the router's retry opens one
    except (socket.timeout, TimeoutError):  # wire.DeadlinePassed among them
        return ProbeResult(False, "timeout", duration=clock() - start, tokens=len(answer.token_times),
                           detail=f"no complete answer within {spec.timeout:g}s")
    except ConnectionRefusedError:
        return ProbeResult(False, "refused", duration=clock() - start, detail="connection refused")
    except (wire.Closed, wire.ProtocolError) as e:  # it may quote the server: run_probe redacts our key
        return ProbeResult(False, "broken_stream", duration=clock() - start, tokens=len(answer.token_times),
                           detail="the server closed the connection" if isinstance(e, wire.Closed) else str(e)[:200])
    except OSError as e:
        kind = "broken_stream" if answer.token_times else "connect"
        return ProbeResult(False, kind, duration=clock() - start, tokens=len(answer.token_times), detail=type(e).__name__)
    except ValueError as e:  # a header that would split the request (the config refuses one)
        return ProbeResult(False, "connect", duration=clock() - start, detail=f"invalid request: {e}")


def _stream(spec: ProbeSpec, head: wire.Head, reader: wire.Reader, answer: _Answer, start: float) -> ProbeResult:
    """Read the streamed answer until its final event, the deadline or a user's request."""
    buffer = b""
    received = 0
    for chunk in reader.pieces(head):
        received += len(chunk)
        try:
            buffer = answer.feed(buffer + chunk)
            if len(buffer) > MAX_LINE or received > MAX_ANSWER:
                raise ValueError(f"a line over {MAX_LINE >> 20} MiB" if len(buffer) > MAX_LINE
                                 else f"the answer ran over {MAX_ANSWER >> 20} MiB")
        except ValueError as e:
            return ProbeResult(False, "broken_stream", duration=answer.clock() - start, tokens=len(answer.token_times),
                               detail=str(e)[:200])
        if answer.ended:
            break  # the final event: no need to wait for the server to close the stream
        if spec.cancel is not None and spec.cancel.is_set():
            return ProbeResult(False, "cancelled", duration=answer.clock() - start, tokens=len(answer.token_times),
                               detail="hung up: a user request arrived")
    return answer.result(start)


def _not_ok(spec: ProbeSpec, status: int, detail: str, clock: Callable[[], float], start: float) -> ProbeResult:
    """A refusal; a llama.cpp router's "model name is missing" is answered by probing a model it
    has loaded, through its chat API."""
    if status == 400 and "model name is missing" in detail:
        chat = dataclasses.replace(spec, api="chat")
        model = model_to_probe(chat)
        if not model:
            return ProbeResult(False, "skipped", detail=f"{spec.model or 'no model'} not loaded by the router "
                                                        "(the probe loads none)")
        return _run(dataclasses.replace(chat, model=model, only_loaded=False), clock)
    return ProbeResult(False, f"http_{status}", duration=clock() - start, detail=detail)


def _first_bytes(head: wire.Head, reader: wire.Reader, n: int) -> bytes:
    """Up to `n` bytes of a refusal's body: what came of it by the deadline, if it trickles."""
    out = b""
    try:
        for piece in reader.pieces(head):
            out += piece
            if len(out) >= n:
                break
    except (TimeoutError, socket.timeout, wire.Closed, wire.ProtocolError, OSError):
        pass
    return out[:n]

