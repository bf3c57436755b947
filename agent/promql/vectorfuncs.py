"""PromQL's functions of single values (math, trigonometry, dates) with Go's float semantics
(log(0) is -Inf, sqrt(-1) is NaN, never an exception), and the label functions with Go's
regexp template expansion ($1, ${name}, $$)."""

from __future__ import annotations

import datetime
import math
import re
from typing import Callable, Dict, List, Optional, Tuple

from .. import regex
from ..timefmt import days_in_month
from ..gotemplate.strconv import format_float

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _guard(f: Callable[[float], float], domain_error: Callable[[float], float]) -> Callable[[float], float]:
    """`f`, with Go's answers where Python raises: overflow is +-Inf, domain errors per `domain_error`."""
    def call(v: float) -> float:
        try:
            return f(v)
        except OverflowError:
            return math.inf
        except ValueError:
            return domain_error(v)
    return call


def _nan(v: float) -> float:
    return math.nan


def _log_domain(v: float) -> float:
    return -math.inf if v == 0 else math.nan


def _whole(f: Callable[[float], int]) -> Callable[[float], float]:
    return lambda v: v if not math.isfinite(v) else float(f(v))


def _sinh(v: float) -> float:
    try:
        return math.sinh(v)
    except OverflowError:
        return math.copysign(math.inf, v)


def _atanh(v: float) -> float:
    if v in (1.0, -1.0):
        return math.copysign(math.inf, v)
    return math.atanh(v) if -1 < v < 1 else math.nan


def _sgn(v: float) -> float:
    return -1.0 if v < 0 else 1.0 if v > 0 else v


MATH: Dict[str, Callable[[float], float]] = {
    "abs": abs, "ceil": _whole(math.ceil), "floor": _whole(math.floor),
    "exp": _guard(math.exp, _nan), "sqrt": _guard(math.sqrt, _nan),
    "ln": _guard(math.log, _log_domain), "log2": _guard(math.log2, _log_domain), "log10": _guard(math.log10, _log_domain),
    "sgn": _sgn, "acos": _guard(math.acos, _nan), "asin": _guard(math.asin, _nan), "atan": math.atan,
    "acosh": _guard(math.acosh, _nan), "asinh": math.asinh, "atanh": _atanh,
    "cos": _guard(math.cos, _nan), "sin": _guard(math.sin, _nan), "tan": _guard(math.tan, _nan),
    "cosh": _guard(math.cosh, _nan), "sinh": _sinh, "tanh": math.tanh,
    "deg": lambda v: v * 180 / math.pi, "rad": lambda v: v * math.pi / 180,
}


def go_floor(v: float) -> float:
    return v if not math.isfinite(v) else float(math.floor(v))


def round_to(v: float, to_nearest: float) -> float:
    """Prometheus' round(): floor(v / to_nearest + 0.5) * to_nearest, computed as Go does."""
    inverse = 1.0 / to_nearest if to_nearest != 0 else math.copysign(math.inf, to_nearest)
    try:
        return go_floor(v * inverse + 0.5) / inverse
    except ZeroDivisionError:
        return math.nan


def _date(v: float) -> Optional[datetime.datetime]:
    if not math.isfinite(v):
        return None
    try:
        return datetime.datetime.fromtimestamp(int(v), tz=datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def _days_in_month(d: datetime.datetime) -> int:
    return days_in_month(d.year, d.month)


DATE_PARTS: Dict[str, Callable[[datetime.datetime], int]] = {
    "day_of_month": lambda d: d.day, "day_of_week": lambda d: (d.weekday() + 1) % 7,
    "day_of_year": lambda d: d.timetuple().tm_yday, "days_in_month": _days_in_month,
    "hour": lambda d: d.hour, "minute": lambda d: d.minute, "month": lambda d: d.month, "year": lambda d: d.year,
}


def date_part(func: str, v: float) -> float:
    """hour(), month(), ... of a Unix time in UTC (NaN where Python's calendar ends: Go's goes further)."""
    d = _date(v)
    return math.nan if d is None else float(DATE_PARTS[func](d))


def format_value(v: float) -> str:
    """A sample value as Prometheus writes it (Go's strconv.FormatFloat(v, 'f', -1, 64)): the
    query API's values and count_values' label values."""
    text = repr(v)
    if "e" not in text and "n" not in text:  # the common case, a plain decimal (not nan, inf or 1e+16)
        return text[:-2] if text.endswith(".0") else text
    return format_float(v, "f", -1)


def expand(template: str, match, names: Dict[str, int]) -> str:
    """Go's Regexp.ExpandString: $1, ${1}, $name, ${name}; $$ is a dollar; a malformed $ stays."""
    out: List[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        rest = template[j + 1:]
        if rest.startswith("$"):
            out.append("$")
            i = j + 2
            continue
        brace = rest.startswith("{")
        body = rest[1:] if brace else rest
        k = 0
        while k < len(body) and (body[k].isalnum() or body[k] == "_"):
            k += 1
        name = body[:k]
        if not name or brace and (k >= len(body) or body[k] != "}"):
            out.append("$")
            i = j + 1
            continue
        i = j + 1 + k + (2 if brace else 0)
        group = int(name) if name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) < 9 else names.get(name)
        if group is not None and group <= match.re.groups:
            out.append(match.group(group) or "")


def label_replace(labels: Dict[str, str], dst: str, replacement: str, src: str, pattern: str) -> Dict[str, str]:
    value = _replaced(pattern, replacement, labels.get(src, ""))
    return labels if value is None else _set_label(labels, dst, value)


_REPLACED: Dict[Tuple[str, str, str], Optional[str]] = {}


def _replaced(pattern: str, replacement: str, source: str) -> Optional[str]:
    """The replacement for `source`, None if the pattern does not match; remembered (bounded),
    since a rule replaces the same label values every cycle."""
    key = (pattern, replacement, source)
    if key in _REPLACED:
        return _REPLACED[key]
    compiled = regex.whole(pattern)
    found = compiled.search(source)
    value = None if found is None else expand(replacement, found, compiled.groupindex)
    if len(_REPLACED) >= 50_000:
        _REPLACED.clear()  # churning label values: start over rather than grow
    _REPLACED[key] = value
    return value


def label_join(labels: Dict[str, str], dst: str, sep: str, sources: List[str]) -> Dict[str, str]:
    return _set_label(labels, dst, sep.join(labels.get(s, "") for s in sources))


def _set_label(labels: Dict[str, str], name: str, value: str) -> Dict[str, str]:
    """A copy with `name` set to `value`; an empty value removes the label (PromQL's rule)."""
    out = dict(labels)
    if value:
        out[name] = value
    else:
        out.pop(name, None)
    return out
