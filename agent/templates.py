"""Alert templates as Prometheus 2.42 expands them: Go's text/template (agent/gotemplate) with
the functions of Prometheus' template package, `$labels`, `$value`, `$externalLabels` and
`$externalURL` defined as Prometheus defines them (four actions prepended to the text), map
keys that are missing read as "" (missingkey=zero), and Prometheus' words for a failure:
"error executing template __alert_X: template: __alert_X:1:98: executing ... ", which the
rule engine wraps as `<error expanding template: ...>`.

A template that Go would refuse to parse is refused at load, with Go's message. `query` runs
the agent's own PromQL engine at the alert's evaluation time over its history; the engine
hands that in as a Context for each expansion.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import regex
from .gotemplate import ExecError, Func, FuncError, Limits, ParseError
from .gotemplate import Template as GoTemplate
from .gotemplate.gofmt import sprintf
from .gotemplate.gotypes import ANY, GoMap, GoSlice, GoStruct, Stringer, Typed, TypedStr, type_name
from .gotemplate.strconv import can_backquote, format_float, parse_float, quote
from .timefmt import parse_duration

DEFS = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
DATA_TYPE = ("struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; "
             "Value float64 }")
SAMPLE = "*template.sample"
RESULT = "template.queryResult"
LIMITS = Limits(steps=20_000, depth=50, output=64 * 1024)  # an annotation, not a report

QueryFunc = Callable[[str], Sequence[Tuple[Mapping[str, str], float]]]


class TemplateError(ValueError):
    """A template Go refuses to parse (at load), or one that failed while expanding; `limit`
    names the bound that stopped an expansion (steps, depth, output), if one did."""

    def __init__(self, message: str, limit: Optional[str] = None):
        super().__init__(message)
        self.limit = limit


NIL_DEREFERENCE = "runtime error: invalid memory address or nil pointer dereference"


@dataclass(frozen=True)
class Context:
    """What one expansion may read beyond the alert: the agent's external labels and URL, and a
    query function bound to the alert's evaluation time."""
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: Optional[str] = ""  # None: none set (promtool's unit tests), so externalURL fails as there
    query: Optional[QueryFunc] = None


NO_CONTEXT = Context()


# -- number helpers (Prometheus' humanize family) ------------------------------------------------

def convert_to_float(i: Any) -> float:
    """Prometheus' convertToFloat: float64, int kinds, or a string strconv.ParseFloat reads."""
    if isinstance(i, bool) or i is None:
        raise FuncError(f"can't convert {type_name(i) or '<nil>'} to float")
    if isinstance(i, float):
        return i
    if isinstance(i, int) and type_name(i) in ("int", "uint", "int64", "uint64"):
        return float(i)
    if isinstance(i, str) and type_name(i) == "string":
        value = parse_float(i)
        if value is None:
            reason = "value out of range" if _out_of_range(i) else "invalid syntax"
            raise FuncError(f"strconv.ParseFloat: parsing {quote(i)}: {reason}")
        return value
    raise FuncError(f"can't convert {type_name(i)} to float")


def _out_of_range(text: str) -> bool:
    try:
        return math.isinf(float(text.replace("_", ""))) and "inf" not in text.lower()
    except ValueError:
        return False


def _g4(v: float) -> str:
    return format_float(v, "g", 4)


def _scaled(v: float, base: float, prefixes: Sequence[str], upward: bool) -> str:
    prefix = ""
    for p in prefixes:
        if (abs(v) < base) if upward else (abs(v) >= 1):
            break
        prefix = p
        v = v / base if upward else v * 1000
    return _g4(v) + prefix


_BIG = ("k", "M", "G", "T", "P", "E", "Z", "Y")
_SMALL = ("m", "u", "n", "p", "f", "a", "z", "y")


def humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        return _scaled(v, 1000, _BIG, True)
    return _scaled(v, 1000, _SMALL, False)


def humanize1024(v: float) -> str:
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    return _scaled(v, 1024, ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"), True)


def humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        secs = int(v)
        days, hours, minutes, seconds = secs // 86400, secs // 3600 % 24, secs // 60 % 60, secs % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    return _scaled(v, 1000, _SMALL, False) + "s"


def humanize_percentage(v: float) -> str:
    return _g4(v * 100) + "%"


# -- time ----------------------------------------------------------------------------------------

class GoTime(Stringer):
    """A *time.Time in UTC at millisecond precision (Prometheus' model.Time); prints as Go's
    Time.String() does, and answers the methods people call on it."""

    go_type = "*time.Time"

    def __init__(self, ms: int):
        self.ms = ms
        self.methods = {
            "Unix": Func(lambda: Typed(self.ms // 1000 if self.ms >= 0 else -((-self.ms) // 1000), "int64")),
            "UnixMilli": Func(lambda: Typed(self.ms, "int64")),
            "UnixNano": Func(lambda: Typed(self.ms * 1_000_000, "int64")),
            "String": Func(self.string),
            "UTC": Func(lambda: self),
        }

    def string(self) -> str:
        when = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(milliseconds=self.ms)
        text = when.strftime("%Y-%m-%d %H:%M:%S")
        millis = self.ms % 1000
        if millis:
            text += ("." + "%03d" % millis).rstrip("0")
        return text + " +0000 UTC"


def float_to_time(v: float) -> Optional[GoTime]:
    """Prometheus' floatToTime: None for NaN and Inf; FuncError past an int64 of nanoseconds."""
    if math.isnan(v) or math.isinf(v):
        return None
    ns = v * 1e9
    if ns > 9.223372036854776e18 or ns < -9.223372036854776e18:
        raise FuncError(f"{format_float(v, 'g', -1)} cannot be represented as a nanoseconds timestamp "
                        "since it overflows int64")
    nanos = int(ns)
    ms = abs(nanos) // 1_000_000 * (1 if nanos >= 0 else -1)  # Go's integer division truncates
    return GoTime(ms)


def humanize_timestamp(i: Any) -> str:
    v = convert_to_float(i)
    tm = float_to_time(v)
    return _g4(v) if tm is None else tm.string()


def to_time(i: Any) -> Optional[GoTime]:
    tm = float_to_time(convert_to_float(i))
    if tm is None:
        raise FuncError("value cannot be represented as a timestamp: NaN or Inf")
    return tm


# -- strings -------------------------------------------------------------------------------------

# where Python's full case mapping gives several characters and Go's one-rune mapping differs from
# the character itself (İ lowers to i in Go; ß, ŉ and the ligatures stay as they are)
_SIMPLE_LOWER = {"\u0130": "i"}


def _simple_case(s: str, how: Callable[[str], str]) -> str:
    """Go maps one rune to one rune (unicode.ToUpper); Python's full mapping turns ß into SS."""
    out = []
    for ch in s:
        mapped = how(ch)
        if len(mapped) != 1:
            mapped = _SIMPLE_LOWER.get(ch, ch) if how is str.lower else ch
        out.append(mapped)
    return "".join(out)


def _is_separator(ch: str) -> bool:
    if ch < "\x80":
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or ch.isdigit():
        return False
    return ch.isspace()


def title(s: str) -> str:
    """strings.Title: the first letter of each word in title case, the rest as written."""
    out, prev = [], " "
    for ch in s:
        out.append(_simple_case(ch, str.title) if _is_separator(prev) else ch)
        prev = ch
    return "".join(out)


def split_host_port(host_port: str) -> Optional[Tuple[str, str]]:
    """net.SplitHostPort, None where Go's returns an error."""
    if host_port.startswith("["):
        end = host_port.find("]")
        if end < 0 or host_port[end + 1:end + 2] != ":":
            return None
        host, port = host_port[1:end], host_port[end + 2:]
        if "[" in host or "]" in port or "[" in port:
            return None
        return host, port
    last = host_port.rfind(":")
    if last < 0:
        return None
    host, port = host_port[:last], host_port[last + 1:]
    if ":" in host or "[" in host or "]" in host or "]" in port:
        return None
    return host, port


def strip_port(host_port: str) -> str:
    split = split_host_port(host_port)
    return host_port if split is None else split[0]


def strip_domain(host_port: str) -> str:
    split = split_host_port(host_port)
    host, port = split if split is not None else (host_port, "")
    try:
        ipaddress.ip_address(host)
        return host_port
    except ValueError:
        pass
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _compile(pattern: str) -> Any:
    try:
        return regex.compile(pattern)
    except regex.RegexError as e:
        raise FuncError(regex.go_error(pattern, e)) from None


def re_replace_all(pattern: str, repl: str, text: str) -> str:
    """regexp.MustCompile(pattern).ReplaceAllString(text, repl), with Go's rules: $1, ${1},
    $name, ${name} expand (an unknown group is empty), $$ is $, and an empty match right after
    a match is skipped."""
    try:
        compiled = _compile(pattern)
    except FuncError as e:  # MustCompile panics; the template package turns that into the call's error
        shown = f"`{pattern}`" if can_backquote(pattern) else quote(pattern)
        raise FuncError(f"regexp: Compile({shown}): {e}") from None
    out, pos, last_end = [], 0, -1
    while pos <= len(text):
        m = compiled.search(text, pos)
        if m is None:
            break
        start, end = m.span()
        if start == end and start == last_end:
            if start >= len(text):
                break
            out.append(text[pos:start + 1])
            pos = start + 1
            continue
        out.append(text[pos:start])
        out.append(_expand(repl, m, compiled))
        last_end = end
        if end == start:
            if end < len(text):
                out.append(text[end])
            pos = end + 1
        else:
            pos = end
    out.append(text[pos:])
    return "".join(out)


def _expand(template: str, m: Any, compiled: Any) -> str:
    names = getattr(compiled, "groupindex", {}) or {}
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch != "$" or i + 1 >= len(template):
            out.append(ch)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = template.find("}", i + 2)
            name = template[i + 2:close] if close > 0 else ""
            if close < 0 or not name or not all(c.isalnum() or c == "_" for c in name):
                out.append("$")
                i += 1
                continue
            i = close + 1
        else:
            j = i + 1
            while j < len(template) and (template[j].isalnum() or template[j] == "_"):
                j += 1
            name = template[i + 1:j]
            if not name:
                out.append("$")
                i += 1
                continue
            i = j
        out.append(_group(m, name, names))
    return "".join(out)


def _group(m: Any, name: str, names: Mapping[str, int]) -> str:
    if name.isdigit():
        index = int(name)
    elif name in names:
        index = names[name]
    else:
        return ""
    try:
        value = m.group(index)
    except (IndexError, ValueError):
        return ""
    return value or ""


def match(pattern: str, text: str) -> bool:
    return _compile(pattern).search(text) is not None


def graph_link(expr: str, tab: int) -> str:
    return f"/graph?g0.expr={urllib.parse.quote_plus(expr, safe='-_.~')}&g0.tab={tab}"


def parse_go_duration(d: str) -> float:
    try:
        return parse_duration(d)
    except ValueError:
        raise FuncError(f"not a valid duration string: {quote(d)}") from None


# -- query results -------------------------------------------------------------------------------

def sample(labels: Mapping[str, str], value: float) -> GoStruct:
    return GoStruct(SAMPLE, [("Labels", GoMap(labels)), ("Value", float(value))], pointer=True)


def _sample_of(s: Optional[GoStruct]) -> GoStruct:
    if s is None:
        raise FuncError(NIL_DEREFERENCE)  # Go panics; the template package turns that into the call's error
    return s


def _labels_of(s: Optional[GoStruct]) -> GoMap:
    return _sample_of(s).fields["Labels"]


def first(v: Optional[GoSlice]) -> GoStruct:
    if v:
        return v[0]
    raise FuncError("first() called on vector with no elements")


def sort_by_label(label: str, v: Optional[GoSlice]) -> Optional[GoSlice]:
    if v is None:
        return None
    v[:] = sorted(v, key=lambda s: _labels_of(s).get(label, "").encode("utf-8", "surrogatepass"))
    return v


def _query(context: Context) -> Func:
    def run(q: str) -> GoSlice:
        if context.query is None:
            raise FuncError("no query function: this template runs outside a rule evaluation")
        try:
            result = context.query(q)
        except Exception as e:  # a PromQL parse or evaluation error is the function's error
            raise FuncError(str(e)) from None
        return GoSlice((sample(labels, value) for labels, value in result), RESULT, SAMPLE)
    return Func(run, ("string",), results=2)


def _url(url: Optional[str]) -> str:
    if url is None:
        raise FuncError(NIL_DEREFERENCE)
    return url


def _path_prefix(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def _args(*values: Any) -> GoMap:
    return GoMap({f"arg{i}": v for i, v in enumerate(values)}, elem=ANY)


def _float_func(f: Callable[[float], str]) -> Func:
    return Func(lambda i: f(convert_to_float(i)), (ANY,), results=2)


FUNCTIONS: Dict[str, Func] = {
    "query": Func(lambda q: GoSlice((), RESULT, SAMPLE), ("string",), results=2),  # replaced per expansion
    "first": Func(first, (RESULT,), results=2),
    "label": Func(lambda label, s: _labels_of(s).get(label, ""), ("string", SAMPLE)),
    "value": Func(lambda s: _sample_of(s).fields["Value"], (SAMPLE,)),
    "strvalue": Func(lambda s: _labels_of(s).get("__value__", ""), (SAMPLE,)),
    "args": Func(_args, (), ANY),
    "reReplaceAll": Func(re_replace_all, ("string", "string", "string")),
    "safeHtml": Func(lambda text: TypedStr(text, "template.HTML"), ("string",)),
    "match": Func(match, ("string", "string"), results=2),
    "title": Func(title, ("string",)),
    "toUpper": Func(lambda s: _simple_case(s, str.upper), ("string",)),
    "toLower": Func(lambda s: _simple_case(s, str.lower), ("string",)),
    "graphLink": Func(lambda e: graph_link(e, 0), ("string",)),
    "tableLink": Func(lambda e: graph_link(e, 1), ("string",)),
    "sortByLabel": Func(sort_by_label, ("string", RESULT)),
    "humanize": _float_func(humanize),
    "humanize1024": _float_func(humanize1024),
    "humanizeDuration": _float_func(humanize_duration),
    "humanizePercentage": _float_func(humanize_percentage),
    "humanizeTimestamp": Func(humanize_timestamp, (ANY,), results=2),
    "toTime": Func(to_time, (ANY,), results=2),
    "pathPrefix": Func(lambda: "", ()),  # replaced per expansion
    "externalURL": Func(lambda: "", ()),
    "parseDuration": Func(parse_go_duration, ("string",), results=2),
    "stripPort": Func(strip_port, ("string",)),
    "stripDomain": Func(strip_domain, ("string",)),
}


class Template:
    """One annotation's or label's template, parsed at load; `render` expands it for an alert.

    `name` is Prometheus' template name, `__alert_` and the rule's name: it is in every error
    message, as in Prometheus'."""

    def __init__(self, text: str, name: str = "__alert_"):
        self.text = text
        self.name = name
        self.plain = "{{" not in text  # most label values: nothing to expand
        self.reads_query = not self.plain and "query" in text
        self.reads_url = not self.plain and ("externalURL" in text or "pathPrefix" in text)
        if self.plain:
            return
        try:
            self._go = GoTemplate(name, DEFS + text, FUNCTIONS, missing_key="zero", limits=LIMITS)
        except ParseError as e:
            raise TemplateError(str(e)) from None
        # the four definitions stay in the text (error columns count them, as Prometheus' do) but
        # are declared directly on each run rather than executed: a third of a short template's cost
        self._go.take_declarations(4)

    def queries(self) -> List[str]:
        """The expressions this template queries that are written out (`query "..."`): their series
        must be kept in the history for the query to find them."""
        return [] if self.plain else self._go.literal_arguments("query")

    def render(self, labels: Mapping[str, str], value: float, context: Context = NO_CONTEXT) -> str:
        """The expanded text; TemplateError with Prometheus' message when expansion fails."""
        if self.plain:
            return self.text
        url = context.external_url
        data = GoStruct(DATA_TYPE, [("Labels", GoMap(labels)), ("ExternalLabels", GoMap(context.external_labels)),
                                    ("ExternalURL", url or ""), ("Value", float(value))])
        bound = {}  # the functions that read the context, for the templates that call them
        if self.reads_query:
            bound["query"] = _query(context)
        if self.reads_url:
            bound["externalURL"] = Func(lambda: _url(url), ())
            bound["pathPrefix"] = Func(lambda: _path_prefix(_url(url)), ())
        variables = (("$labels", data.fields["Labels"]), ("$externalLabels", data.fields["ExternalLabels"]),
                     ("$externalURL", data.fields["ExternalURL"]), ("$value", data.fields["Value"]))
        try:
            return self._go.execute(data, bound, variables=variables)
        except ExecError as e:
            raise TemplateError(f"error executing template {self.name}: {e}", e.limit) from None
        except RecursionError:
            raise TemplateError(f"error executing template {self.name}: nested too deeply", "depth") from None


# failures no label value can cause: the template is wrong for every alert, whatever it carries
_ALWAYS_WRONG = ("incompatible types for comparison", "wrong type for value", "wrong number of args",
                 "can't evaluate field", "invalid type for comparison", "can't give argument to non-function",
                 "is not a method but has arguments", "cannot assign nil", "exceeded")


def dry_run_problem(template: Template) -> Optional[str]:
    """Why `template` fails for any alert, found by expanding it once for a made-up alert (every
    label it reads set to "1", the value 1, queries answering nothing): Go's type errors, which
    Prometheus accepts at load and fails on when the alert fires (`gt $value 10` compares a float
    with an int). None if it expands, or fails only for reasons a label's value could cause."""
    if template.plain:
        return None
    labels = {name: "1" for name in _LABEL_REFERENCE.findall(template.text)}
    try:
        template.render({"__name__": "x", **labels}, 1.0, Context({}, "http://localhost/", lambda q: []))
    except TemplateError as e:
        text = str(e)
        if any(reason in text for reason in _ALWAYS_WRONG):
            return text
    return None


_LABEL_REFERENCE = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")


def printf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf, for callers that format as Prometheus would (the unit-test runner)."""
    return sprintf(fmt, list(args))


__all__ = ["Context", "FUNCTIONS", "NO_CONTEXT", "Template", "TemplateError", "dry_run_problem", "humanize", "humanize1024",
           "humanize_duration", "humanize_percentage", "printf"]
