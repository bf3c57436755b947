"""Value parsers for configuration fields: durations, sizes, listen addresses, URLs, secrets.

Each parser takes the raw TOML value and returns the typed value or raises `ValueError`
with a message that says what was expected; config.py adds the key path and file:line.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable, Dict, Optional, Sequence, Tuple
from urllib.parse import urlsplit

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# the longest duration: Go's (Prometheus' durations are int64 nanoseconds, ~292 years), which is
# also the longest a thread may be asked to wait (threading.TIMEOUT_MAX): a longer timeout
# validated and then raised OverflowError in the cycle's first wait
MAX_DURATION = threading.TIMEOUT_MAX
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
               "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SECRET_REF = re.compile(r"\$\{([^}]*)\}")


def parse_duration(value: Any) -> float:
    """'500ms', '5s', '1m30s', '2h' -> seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration string such as \"5s\", got {value!r}")
    text = value.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"invalid duration {value!r}: use a number and a unit (ms, s, m, h, d), e.g. \"5s\"")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("empty duration: use e.g. \"5s\"")
    if total > MAX_DURATION:
        raise ValueError(f"duration out of range: at most {int(MAX_DURATION // 86400)}d (~292 years)")
    return total


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest duration string that parses back to them."""
    if seconds < 1 and seconds * 1000 == int(seconds * 1000):
        return f"{int(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_size(value: Any) -> int:
    """'8MiB', '10MB', 1048576 -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as \"8MiB\", got {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit (KiB, MiB, GiB, KB, MB, GB), e.g. \"8MiB\"")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_listen(value: Any) -> Tuple[str, int]:
    """'0.0.0.0:9400', ':9400', '[::1]:9400' -> (host, port); '' host means all addresses."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"expected \"host:port\" such as \"0.0.0.0:9400\", got {value!r}")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit():
        raise ValueError(f"invalid port {port_text!r} in {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return host or "0.0.0.0", port


def without_password(url: str) -> str:
    """`url` with the password of its user part (user:password@) replaced by ***."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:***@{host}{slash}{path}"


def parse_url(value: Any) -> str:
    """An http(s) URL with a host; the trailing slash is dropped. Errors never show a password."""
    if not isinstance(value, str):
        raise ValueError(f"expected a URL string, got {value!r}")
    shown = without_password(value)
    try:
        parts = urlsplit(value)
        port_error = None
        try:
            _ = parts.port  # raises on a bad port
        except ValueError as e:
            port_error = str(e)
    except ValueError:  # urlsplit itself refuses some hosts (a bad IPv6 literal)
        raise ValueError(f"invalid URL {shown!r}: expected http://host:port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {shown!r}: expected http://host:port")
    if port_error:
        raise ValueError(f"invalid URL {shown!r}: {port_error}")
    return value.rstrip("/")


def expand_secrets(value: str, environ: Optional[Dict[str, str]] = None) -> str:
    """Replace ``${VAR}`` with the environment variable and ``${file:/path}`` with a file's
    first line. The error names the variable or file, never a value."""
    env = os.environ if environ is None else environ

    def sub(m: "re.Match[str]") -> str:
        ref = m.group(1)
        if ref.startswith("file:"):
            path = ref[5:]
            try:
                with open(path, encoding="utf-8") as f:
                    return f.readline().strip()
            except OSError as e:
                raise ValueError(f"cannot read secret file {path}: {e.strerror}") from None
        if ref not in env:
            raise ValueError(f"environment variable {ref} is not set")
        return env[ref]

    return _SECRET_REF.sub(sub, value)


def url_path(value: Any) -> str:
    """A path such as /metrics: it starts with '/' and is printable ASCII (percent-encode the rest)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{value!r} must be printable ASCII without spaces (percent-encode other characters)")
    return value


def header_value(value: Any) -> str:
    """A string that can go in an HTTP header (an api_key sent as `Authorization: Bearer`)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("it goes in an HTTP header, so it must be plain ASCII (or Latin-1)") from None
    if any(c in value for c in "\r\n\0"):
        raise ValueError("it goes in an HTTP header, so it must not contain a line break")
    return value


def one_of(choices: Sequence[str]) -> Callable[[Any], str]:
    """A parser accepting exactly one of `choices`."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    return parse


def typed(kind: Any, low: Optional[float] = None, high: Optional[float] = None) -> Callable[[Any], Any]:
    """A parser accepting a value of `kind` (a type or a tuple; bool is not a number here),
    optionally in range."""
    name = kind.__name__ if isinstance(kind, type) else "number"

    def parse(value: Any) -> Any:
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise ValueError(f"expected {name}, got {type(value).__name__} {value!r}")
        if low is not None and value < low or high is not None and value > high:
            raise ValueError(f"{value!r} is out of range {low}-{high}" if high is not None else f"{value!r} is below {low}")
        return value

    return parse


def str_list(value: Any) -> list:
    """A list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return list(value)


def str_table(value: Any) -> dict:
    """A table of string values (extra labels)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"expected a table of strings, got {value!r}")
    return dict(value)


def positive(parse: Callable[[Any], float]) -> Callable[[Any], float]:
    """Wrap a numeric parser so that zero and negatives are refused."""

    def check(value: Any) -> float:
        result = parse(value)
        if result <= 0:
            raise ValueError(f"must be greater than zero, got {value!r}")
        return result

    return check


def at_least(minimum: float, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a parser so that values under `minimum` (seconds, bytes) are refused."""

    def check(value: Any) -> Any:
        result = parse(value)
        if result < minimum:
            shown = format_duration(minimum) if parse is parse_duration else f"{int(minimum) >> 20} MiB"
            raise ValueError(f"must be at least {shown}, got {value!r}")
        return result

    return check
