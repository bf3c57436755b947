"""`llm-agent rules test`: a drop-in for `promtool test rules` (Prometheus 2.42) on the agent's
own engine. The same test files (rule_files, evaluation_interval, group_eval_order, tests with
name, interval, input_series, alert_rule_test, promql_expr_test, external_labels,
external_url), read as strictly (an unknown key is an error naming its line, as Go's
yaml.UnmarshalStrict says it), the same verdicts (alerts and samples compared exactly, as
reflect.DeepEqual does), the same text (`exp: {__name__="x", a="1"} 5.1E+01` / `got: nil`) on
the same streams (progress and SUCCESS on stdout, FAILED and its details on stderr), and the
same exit codes.

The rules run as Prometheus runs them, not with the agent's additions: no default severity,
no cooldown, a vanished series resolves its alert at once (no no-data hold)."""

from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

import yaml

from .engine import Engine, Group
from ..gotemplate.strconv import format_float, quote
from ..promql.evaluator import EvalError, Evaluator, Matrix
from .history import History
from ..templates import Context
from ..timefmt import format_duration, parse_duration
from .loader import file_groups
from ..promql.parser import PromQLError, parse, parse_series
from ..rulefile import RuleFileError, load_files

Labels = Tuple[Tuple[str, str], ...]
MAX_SAMPLES = 1_000_000  # per series: `1+1x100000000` is a typo, not a test
_EXPANDING = re.compile(r"^(?P<start>[-+]?[^-+x_]+|_)(?:(?P<op>[-+])(?P<step>[^x]+))?x(?P<count>\d+)$")

# what each mapping of a test file may hold, and the Go type promtool reads it into
_FIELDS = {
    "main.unitTestFile": ("rule_files", "evaluation_interval", "group_eval_order", "tests"),
    "main.testGroup": ("interval", "input_series", "alert_rule_test", "promql_expr_test", "external_labels",
                       "external_url", "name"),
    "main.series": ("series", "values"),
    "main.alertTestCase": ("eval_time", "alertname", "exp_alerts"),
    "main.alert": ("exp_labels", "exp_annotations"),
    "main.promqlTestCase": ("expr", "eval_time", "exp_samples"),
    "main.sample": ("labels", "value"),
}
_CHILDREN = {("main.unitTestFile", "tests"): "main.testGroup", ("main.testGroup", "input_series"): "main.series",
             ("main.testGroup", "alert_rule_test"): "main.alertTestCase",
             ("main.testGroup", "promql_expr_test"): "main.promqlTestCase",
             ("main.alertTestCase", "exp_alerts"): "main.alert", ("main.promqlTestCase", "exp_samples"): "main.sample"}


class TestFileError(ValueError):
    """A test file promtool would refuse: the message is what it prints."""


@dataclass
class Outcome:
    file: str
    errors: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# -- reading the file ----------------------------------------------------------------------------

def _strict(node: yaml.Node, go_type: str, problems: List[str]) -> None:
    """Every key of every mapping is one its Go struct has (yaml.UnmarshalStrict)."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _strict(item, go_type, problems)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    allowed = _FIELDS[go_type]
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else ""
        if name not in allowed:
            problems.append(f"line {key.start_mark.line + 1}: field {name} not found in type {go_type}")
            continue
        child = _CHILDREN.get((go_type, name))
        if child is not None:
            _strict(value, child, problems)
        elif go_type == "main.sample" and name == "value":
            _yaml_float_node(value, problems)


def _yaml_float_node(node: yaml.Node, problems: List[str]) -> None:
    if isinstance(node, yaml.ScalarNode) and yaml_float(node.value) is None:
        problems.append(f"line {node.start_mark.line + 1}: cannot unmarshal !!str `{node.value}` into float64")


def yaml_float(text: str) -> Optional[float]:
    """A YAML scalar read into a Go float64, as yaml.v2 reads it; None where it cannot."""
    special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    if text.lower() in special:
        return special[text.lower()]
    if not re.fullmatch(r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?0x[0-9a-fA-F_]+", text):
        return None
    try:
        return float(int(text.replace("_", ""), 16)) if "0x" in text.lower() else float(text.replace("_", ""))
    except ValueError:
        return None


def read_test_file(path: str) -> dict:
    """The test file as plain strings, lists and dicts; TestFileError with promtool's words."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise TestFileError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    except UnicodeDecodeError:
        raise TestFileError("yaml: invalid leading UTF-8 octet") from None
    try:
        root = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise TestFileError(f"yaml: {where}{getattr(e, 'problem', None) or e}") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise TestFileError(f"yaml: unmarshal errors:\n  line {root.start_mark.line + 1}: cannot unmarshal "
                            f"!!{'seq' if isinstance(root, yaml.SequenceNode) else 'str'} into main.unitTestFile")
    problems: List[str] = []
    _strict(root, "main.unitTestFile", problems)
    if problems:
        raise TestFileError("yaml: unmarshal errors:\n  " + "\n  ".join(problems))
    return yaml.load(text, Loader=yaml.BaseLoader) or {}  # noqa: S506 - BaseLoader builds only str, list, dict


def _duration(value: Any, default: str = "0s") -> float:
    text = default if value in (None, "") else str(value)
    try:
        return parse_duration(text)
    except ValueError:
        raise TestFileError(f"not a valid duration string: {quote(text)}") from None


# -- values --------------------------------------------------------------------------------------

class _Stale(float):
    """The staleness marker in a value list (a float subclass, so lists stay typed)."""


_STALE = _Stale("nan")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TestFileError(f"invalid value {quote(text)} in series values") from None


def expand_values(text: str) -> List[Optional[float]]:
    """promtool's series values: numbers, `_` (no sample), `stale`, and the expanding forms
    `a+bxn` / `a-bxn` (n+1 values, each the one before plus b, by repeated addition as promtool
    adds: the seventh of `0+0.1x20` is 0.6) and `axn`, `_xn` (n+1 repeats / n missing)."""
    out: List[Optional[float]] = []
    for item in str(text).split():
        if item == "_":
            out.append(None)
        elif item == "stale":
            out.append(_STALE)
        elif _EXPANDING.match(item):
            out.extend(_expanded(_EXPANDING.match(item), item, len(out)))  # type: ignore[arg-type]
        else:
            out.append(_float(item))
    return out


def _expanded(m: "re.Match[str]", item: str, have: int) -> List[Optional[float]]:
    count = int(m.group("count"))
    if have + count > MAX_SAMPLES:
        raise TestFileError(f"{quote(item)}: more than {MAX_SAMPLES:,} samples in one series")
    if m.group("start") == "_":
        return [None] * count
    value = _float(m.group("start"))
    step = _float(m.group("step")) if m.group("step") else 0.0
    if m.group("op") == "-":
        step = -step
    out: List[Optional[float]] = [value]
    for _ in range(count):
        value += step
        out.append(value)
    return out


# -- Prometheus' words ---------------------------------------------------------------------------

def labels_string(labels: Sequence[Tuple[str, str]]) -> str:
    """labels.Labels.String(): {a="1", b="2"}."""
    return "{" + ", ".join(f"{k}={quote(v)}" for k, v in sorted(labels)) + "}"


def go_duration(seconds: float) -> str:
    """time.Duration.String(): 1m0s, 1h30m0s, 0s, 1.5s."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    total = abs(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = format_float(round(secs, 9), "f", -1) + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return sign + text


def _indent(lines: str, indent: str) -> str:
    parts = lines.split("\n")
    return parts[0] + "".join("\n" + indent + p for p in parts[1:])


def _alerts_string(alerts: List[Tuple[Labels, Labels]]) -> str:
    if not alerts:
        return "[]"
    blocks = []
    for i, (labels, notes) in enumerate(alerts):
        body = "\nLabels:" + labels_string(labels) + "\nAnnotations:" + labels_string(notes)
        blocks.append(f"{i}:" + _indent(body, "  "))
    return "[\n" + ",\n".join(blocks) + "\n]"


def _samples_string(samples: List[Tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(labels_string(labels) + " " + format_float(v, "E", -1) for labels, v in samples)


# -- running -------------------------------------------------------------------------------------

def _rule_files(doc: dict, base: str, warn: TextIO) -> List[str]:
    out = []
    for pattern in doc.get("rule_files") or []:
        path = pattern if os.path.isabs(pattern) or not pattern else os.path.join(base, pattern)
        found = sorted(glob.glob(path))
        if not found:
            warn.write(f"  WARNING: no file match pattern {path}\n")
        out.extend(found)
    return out


def run_file(path: str, warn: TextIO) -> Outcome:
    outcome = Outcome(path)
    try:
        doc = read_test_file(path)
        groups = load_files(_rule_files(doc, os.path.dirname(path), warn), "")
        interval = _duration(doc.get("evaluation_interval"), "1m") or 60.0
        order: Dict[str, int] = {}
        for i, name in enumerate(doc.get("group_eval_order") or []):
            if name in order:
                raise TestFileError(f"group name repeated in evaluation order: {name}")
            order[name] = i
        for test in doc.get("tests") or []:
            outcome.errors.extend(_run_group(test or {}, groups, interval, order))
    except RuleFileError as e:
        outcome.errors.extend(e.problems)
    except (TestFileError, PromQLError) as e:
        outcome.errors.append(str(e))
    return outcome


def _engine_groups(groups: Any, order: Dict[str, int]) -> List[Group]:
    built = file_groups(groups)
    built.sort(key=lambda g: order.get(g.name.split(";", 1)[1], 0))  # stable: partial order, as promtool's
    return built


def _load_series(history: History, test: dict, interval: float) -> None:
    for item in test.get("input_series") or []:
        try:
            name, labels = parse_series(str(item.get("series", "")))
        except PromQLError as e:
            raise TestFileError(str(e)) from None
        key = tuple(sorted(labels + (("__name__", name),)))
        for i, value in enumerate(expand_values(item.get("values", ""))):
            t = i * interval
            if value is None:
                continue
            if isinstance(value, _Stale):
                history.add_marker(key, t)  # hides the series from t until its next sample
            else:
                history.add(key, t, value)


@dataclass
class _AlertCase:
    eval_time: float
    name: str
    expected: List[Tuple[Labels, Labels]]


def _alert_cases(test: dict, group_name: str) -> List[_AlertCase]:
    cases = []
    for case in test.get("alert_rule_test") or []:
        eval_time = _duration(case.get("eval_time"))
        name = case.get("alertname") or ""
        if not name:
            where = f" (in TestGroup {group_name})" if group_name else ""
            raise TestFileError(f"an item under alert_rule_test misses required attribute alertname at eval_time "
                                f"{format_duration(eval_time)}{where}")
        expected = []
        for exp in case.get("exp_alerts") or []:
            labels = dict(exp.get("exp_labels") or {})
            labels["alertname"] = name
            wanted = dict(exp.get("exp_annotations") or {})
            expected.append((tuple(sorted(labels.items())), tuple(sorted(wanted.items()))))
        cases.append(_AlertCase(eval_time, name, sorted(expected)))
    return cases


def _run_group(test: dict, groups: Any, evaluation_interval: float, order: Dict[str, int]) -> List[str]:
    interval = _duration(test.get("interval"), "1m") or evaluation_interval
    name = test.get("name") or ""
    history = History(keep_all=True)
    _load_series(history, test, interval)
    # no external_url: promtool has none, and externalURL fails there as it does here
    context = Context(dict(test.get("external_labels") or {}), test.get("external_url") or None)
    engine = Engine(_engine_groups(groups, order), history, no_data_timeout=1e-9, step=evaluation_interval,
                    template_context=context)
    for group in engine.groups:
        group.interval = group.interval or evaluation_interval
    cases = _alert_cases(test, name)
    expr_cases = list(test.get("promql_expr_test") or [])
    horizon = max([c.eval_time for c in cases] + [_duration(e.get("eval_time")) for e in expr_cases], default=0.0)
    errors: List[str] = []
    t = 0.0
    while t <= horizon:
        failed_before = dict(engine.failures)
        engine.evaluate(t)
        failed = [r for r in engine.failures if engine.failures[r] != failed_before.get(r, 0)]
        if failed:
            return errors + [f"    rule: {r}, time: {go_duration(t)}, err: {engine.last_error.get(r, '')}"
                             for r in failed]
        firing: Dict[str, List[Tuple[Labels, Labels]]] = {}
        for a in engine.active():
            if a.state == "firing":
                firing.setdefault(a.labels.get("alertname", ""), []).append(
                    (tuple(sorted(a.labels.items())), tuple(sorted(a.annotations.items()))))
        for case in cases:
            if t <= case.eval_time < t + evaluation_interval:
                errors.extend(_check_alerts(case, sorted(firing.get(case.name, [])), name))
        t += evaluation_interval
    for case in expr_cases:
        errors.extend(_check_expr(case, history, evaluation_interval))
    return errors


def _check_alerts(case: _AlertCase, got: List[Tuple[Labels, Labels]], group_name: str) -> List[str]:
    if got == case.expected:
        return []
    prefix = f"    name: {group_name},\n" if group_name else ""
    return [f"{prefix}    alertname: {case.name}, time: {format_duration(case.eval_time)}, \n"
            f"        exp:{_indent(_alerts_string(case.expected), '            ')}, \n"
            f"        got:{_indent(_alerts_string(got), '            ')}"]


def _check_expr(case: dict, history: History, step: float) -> List[str]:
    expr = str(case.get("expr", ""))
    t = _duration(case.get("eval_time"))
    head = f"    expr: {quote(expr)}, time: {format_duration(t)}"
    try:
        value = Evaluator(history, step=step).eval(parse(expr), t)
    except (EvalError, PromQLError) as e:
        return [f"{head}, err: {e}"]
    if isinstance(value, float):
        got: List[Tuple[Labels, float]] = [((), value)]
    elif isinstance(value, list) and not isinstance(value, Matrix):
        got = [(tuple(labels), v) for labels, v in value]
    else:
        return [f"{head}, err: rule result is not a vector or scalar"]
    expected: List[Tuple[Labels, float]] = []
    for sample in case.get("exp_samples") or []:
        text = sample.get("labels") or ""
        try:
            metric, labels = parse_series(text) if text.strip() not in ("", "{}") else ("", ())
        except PromQLError as e:
            return [f"{head}, err: labels {quote(text)}: {e}"]
        full = tuple(sorted(labels + ((("__name__", metric),) if metric else ())))
        expected.append((full, yaml_float(sample.get("value") or "0") or 0.0))
    expected.sort(key=lambda s: s[0])
    got.sort(key=lambda s: s[0])
    if len(got) == len(expected) and all(g[0] == e[0] and g[1] == e[1] for g, e in zip(got, expected)):
        return []  # exactly, NaN never equal: reflect.DeepEqual, as promtool 2.42 compares
    return [f"{head},\n        exp: {_samples_string(expected)}\n        got: {_samples_string(got)}"]


def run(files: Sequence[str], out: TextIO, err: TextIO) -> int:
    """promtool test rules: each file's verdict on `out`, its failures on `err`; 1 if any failed."""
    failed = False
    for path in files:
        out.write(f"Unit Testing:  {path}\n")
        out.flush()
        outcome = run_file(path, err)
        if outcome.ok:
            out.write("  SUCCESS\n")
        else:
            failed = True
            err.write("  FAILED:\n")
            for e in outcome.errors:
                err.write(e + "\n")
                err.flush()
                out.write("\n")
                out.flush()
        out.write("\n")
        out.flush()
    return 1 if failed else 0


__all__ = ["Outcome", "TestFileError", "expand_values", "run", "run_file"]
