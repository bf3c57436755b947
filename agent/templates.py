"""The part of Prometheus' alert templating that rules use: `{{ $labels.x }}`, `{{ $value }}`,
pipelines through humanize, humanize1024, humanizeDuration, humanizePercentage, printf,
toUpper, toLower, title. Checked at load, so a rule never fails to render at 3 a.m.; the
same text works unchanged when the rule is exported to Prometheus."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, List, Union

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_PRINTF = re.compile(r'^printf\s+"((?:[^"\\]|\\.)*)"\s*(.*)$')


class TemplateError(ValueError):
    """A template outside the supported subset."""


def _fmt_g(v: float) -> str:
    return "%.4g" % v


_SMALL = ("m", "u", "n", "p", "f", "a", "z", "y")


def _scale_up(v: float, base: float, prefixes) -> str:
    """v divided by `base` while it is that large, with the matching prefix."""
    prefix = ""
    for p in prefixes:
        if abs(v) < base:
            break
        prefix, v = p, v / base
    return _fmt_g(v) + prefix


def _scale_down(v: float) -> str:
    """v multiplied by 1000 while it is below 1, with the matching prefix (m, u, n, ...)."""
    prefix = ""
    for p in _SMALL:
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _fmt_g(v) + prefix


def humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _fmt_g(v)
    if abs(v) >= 1:
        return _scale_up(v, 1000, ("k", "M", "G", "T", "P", "E", "Z", "Y"))
    return _scale_down(v)


def humanize1024(v: float) -> str:
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _fmt_g(v)
    return _scale_up(v, 1024, ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"))


def humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _fmt_g(v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        secs = int(abs(v))
        days, hours, minutes, seconds = secs // 86400, secs // 3600 % 24, secs // 60 % 60, secs % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_fmt_g(abs(v))}s"
    return _scale_down(v) + "s"


def humanize_percentage(v: float) -> str:
    return _fmt_g(v * 100) + "%"


def _to_float(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TemplateError(f"{x!r} is not a number") from None


FUNCTIONS: Dict[str, Callable[[object], str]] = {
    "humanize": lambda x: humanize(_to_float(x)),
    "humanize1024": lambda x: humanize1024(_to_float(x)),
    "humanizeDuration": lambda x: humanize_duration(_to_float(x)),
    "humanizePercentage": lambda x: humanize_percentage(_to_float(x)),
    "toUpper": lambda x: str(x).upper(),
    "toLower": lambda x: str(x).lower(),
    "title": lambda x: str(x).title(),
}


# Go's printf verbs this subset renders (%v as %s); flags, width and precision allowed
_VERB = re.compile(r"%([-+# 0]*\d*(?:\.\d+)?)([a-zA-Z%])")
_VERBS = "svdfFgGeExXo"
NUMBER, TEXT = "number", "text"  # what a pipeline stage yields, as far as load time can know


def _printf_arity(fmt: str) -> int:
    """How many arguments `fmt` consumes; TemplateError for verbs outside the subset."""
    n = 0
    for m in _VERB.finditer(fmt):
        verb = m.group(2)
        if verb == "%":
            continue
        if verb not in _VERBS:
            raise TemplateError(f"printf {fmt!r}: verb %{verb} is not supported (use one of %s %v %d %f %g %e %x)")
        n += 1
    return n


def _unescape(fmt: str) -> str:
    """A Go string literal's common escapes; anything else is kept as written."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}.get(m.group(1), m.group(0)), fmt)


def _go_printf(fmt: str, args: List[object]) -> str:
    py = _VERB.sub(lambda m: "%" + m.group(1) + ("s" if m.group(2) == "v" else m.group(2)), fmt)
    converted = [_to_float(a) if isinstance(a, str) and _wants_number(v) else a
                 for a, v in zip(args, [m.group(2) for m in _VERB.finditer(fmt) if m.group(2) != "%"])]
    try:
        return py % tuple(converted)
    except (TypeError, ValueError, OverflowError) as e:
        raise TemplateError(f"printf {fmt!r}: {e}") from None


def _wants_number(verb: str) -> bool:
    return verb in "dfFgGeExXo"


class _Term:
    """A pipeline's first value: $value, a label, or a quoted string."""

    def __init__(self, text: str):
        text = text.strip()
        self.kind, self.literal = TEXT, None
        if text == "$value":
            self.kind, self.get = NUMBER, (lambda labels, value: value)
            return
        m = re.fullmatch(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text) or re.fullmatch(r'index \$labels "([^"]+)"', text)
        if m:
            key = m.group(1)
            self.get = lambda labels, value: labels.get(key, "")
            return
        if re.fullmatch(r'"(?:[^"\\]|\\.)*"', text):
            literal = self.literal = text[1:-1]
            self.get = lambda labels, value: literal
            return
        raise TemplateError(f"unsupported template term {text!r}: use $value, $labels.name or a quoted string")


class Template:
    """A parsed template; `render(labels, value)` fills it in or raises TemplateError.

    Checked at load as far as the types can be known: printf's argument count and verbs,
    toUpper/toLower/title on $value (a number), humanize* on a quoted string that is not a
    number. A label's value is known only at run time, so `$labels.x | humanize` can still fail
    then; the engine renders such a failure as Prometheus does, `<error expanding template: ...>`."""

    def __init__(self, text: str):
        self.text = text
        self.parts: List[Union[str, List[Any]]] = []  # str literals and action pipelines
        pos = 0
        for m in _ACTION.finditer(text):
            self.parts.append(text[pos:m.start()])
            self.parts.append(self._parse_action(m.group(1)))
            pos = m.end()
        rest = text[pos:]
        if "{{" in rest:
            raise TemplateError(f"unclosed '{{{{' in {text!r}")
        self.parts.append(rest)

    @staticmethod
    def _printf(fmt: str, rest: str, piped: bool) -> tuple:
        terms = [_Term(t) for t in re.findall(r'"(?:[^"\\]|\\.)*"|\S+', rest)] if rest else []
        fmt = _unescape(fmt)
        wanted, given = _printf_arity(fmt), len(terms) + piped
        if wanted != given:
            raise TemplateError(f"printf {fmt!r} needs {wanted} argument(s), gets {given}")
        return fmt, terms

    def _parse_action(self, action: str) -> List[object]:
        stages = [s.strip() for s in action.split("|")]
        pipeline: List[object] = []
        m = _PRINTF.match(stages[0])
        if m:
            pipeline.append(("printf", *self._printf(m.group(1), m.group(2), piped=False)))
            kind, literal = TEXT, None
        else:
            term = _Term(stages[0])
            pipeline.append(("term", term.get))
            kind, literal = term.kind, term.literal
        for stage in stages[1:]:
            m = _PRINTF.match(stage)
            if m:
                pipeline.append(("printf-pipe", *self._printf(m.group(1), m.group(2), piped=True)))
            elif stage in ("toUpper", "toLower", "title"):
                if kind == NUMBER:
                    raise TemplateError(f"{stage} needs text, but gets a number ($value): "
                                        f"use printf \"%.2f\" first, or humanize")
                pipeline.append(("func", stage))
            elif stage in FUNCTIONS:
                if literal is not None:
                    _to_float(literal)  # a quoted string that is not a number fails here, at load
                pipeline.append(("func", stage))
            else:
                raise TemplateError(f"unsupported template function {stage!r}; known: printf, {', '.join(FUNCTIONS)}")
            kind, literal = TEXT, None
        return pipeline

    def render(self, labels: Dict[str, str], value: float) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            current: object = None
            for stage in part:
                if stage[0] == "term":
                    current = stage[1](labels, value)
                elif stage[0] == "printf":
                    current = _go_printf(stage[1], [t.get(labels, value) for t in stage[2]])
                elif stage[0] == "printf-pipe":
                    current = _go_printf(stage[1], [t.get(labels, value) for t in stage[2]] + [current])
                else:
                    current = FUNCTIONS[stage[1]](current)
            out.append(_format(current))
        return "".join(out)


def _format(x: object) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "+Inf" if x > 0 else "-Inf"
        return repr(x) if not x.is_integer() else str(int(x))
    return str(x)
