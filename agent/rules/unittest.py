"""`llm-agent rules test`: promtool's unit-test files (rule_files, evaluation_interval,
group_eval_order, tests with interval, input_series, alert_rule_test, promql_expr_test) run
on the agent's own engine, with promtool's verdicts: the alerts firing at each eval_time must
be exactly the expected ones (labels, annotations), each expression's samples exactly the
expected ones.

The rules run as Prometheus runs them, not with the agent's additions: no default severity,
no cooldown, a vanished series resolves its alert at once (no no-data hold)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import yaml

from .engine import Engine, Group
from ..promql.evaluator import EvalError, Evaluator, Matrix
from .history import History
from ..promql.lexer import parse_duration
from .loader import file_groups
from ..promql.parser import PromQLError, parse, parse_series
from ..rulefile import RuleFileError, load_files

Labels = Tuple[Tuple[str, str], ...]
MAX_SAMPLES = 1_000_000  # per series: `1+1x100000000` is a typo, not a test
_EXPANDING = re.compile(r"^(?P<start>[-+]?[^-+x_]+|_)(?:(?P<op>[-+])(?P<step>[^x]+))?x(?P<count>\d+)$")


class TestFileError(ValueError):
    """A test file that cannot be read or is malformed (promtool exits 1 for these too)."""


@dataclass
class Outcome:
    file: str
    failures: List[str]
    errors: List[str]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.errors


def expand_values(text: str) -> List[Optional[float]]:
    """promtool's series values: numbers, `_` (no sample), `stale`, and the expanding forms
    `a+bxn` / `a-bxn` (n+1 values) and `axn`, `_xn` (n+1 repeats / n missing)."""
    out: List[Optional[float]] = []
    for item in str(text).split():
        if item == "_":
            out.append(None)
            continue
        if item == "stale":
            out.append(_STALE)
            continue
        m = _EXPANDING.match(item)
        if m:
            count = int(m.group("count"))
            if len(out) + count > MAX_SAMPLES:
                raise TestFileError(f"{item!r}: more than {MAX_SAMPLES:,} samples in one series")
            if m.group("start") == "_":
                out.extend([None] * count)
                continue
            start = _float(m.group("start"))
            step = _float(m.group("step")) if m.group("step") else 0.0
            if m.group("op") == "-":
                step = -step
            out.extend(start + i * step for i in range(count + 1))
            continue
        out.append(_float(item))
    return out


class _Stale(float):
    """The staleness marker in a value list (a float subclass, so lists stay typed)."""


_STALE = _Stale("nan")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TestFileError(f"invalid value {text!r} in series values") from None


def _duration(value, what: str) -> float:
    try:
        return parse_duration(str(value))
    except ValueError as e:
        raise TestFileError(f"{what}: {e}") from None


def run_file(path: str) -> Outcome:
    outcome = Outcome(path, [], [])
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        outcome.errors.append(f"cannot read test file: {e}")
        return outcome
    if not isinstance(doc, dict):
        outcome.errors.append("a test file is a mapping with rule_files and tests")
        return outcome
    try:
        groups = load_files([str(p) for p in doc.get("rule_files") or []], os.path.dirname(os.path.abspath(path)))
        interval = _duration(doc.get("evaluation_interval", "1m"), "evaluation_interval")
        order = [str(n) for n in doc.get("group_eval_order") or []]
        for i, test in enumerate(doc.get("tests") or []):
            outcome.failures.extend(_run_test(test, groups, interval, order, i))
    except (RuleFileError, TestFileError, PromQLError) as e:
        outcome.errors.append(str(e))
    return outcome


def _engine_groups(groups, order: List[str]) -> List[Group]:
    built = file_groups(groups)
    if order:
        rank = {name: i for i, name in enumerate(order)}
        built.sort(key=lambda g: rank.get(g.name.split(";", 1)[1], len(rank)))
    return built


def _load_series(history: History, test: dict, interval: float) -> float:
    """Put the input series into the history; the last sample's time."""
    last = 0.0
    for item in test.get("input_series") or []:
        try:
            name, labels = parse_series(str(item["series"]))
        except (KeyError, TypeError) as e:
            raise TestFileError(f"input_series: an entry needs series and values ({e})") from None
        key = tuple(sorted(labels + (("__name__", name),)))
        for i, value in enumerate(expand_values(item.get("values", ""))):
            t = i * interval
            if value is None:
                continue
            if isinstance(value, _Stale):
                history.mark_stale(name, key, t)  # a staleness marker, as promtool writes one
                continue
            history.add(key, t, value)
            last = max(last, t)
    return last


def _run_test(test: dict, groups, evaluation_interval: float, order: List[str], index: int) -> List[str]:
    if not isinstance(test, dict):
        raise TestFileError(f"tests[{index}] is not a mapping")
    interval = _duration(test.get("interval", "1m"), f"tests[{index}].interval")
    history = History(keep_all=True)
    _load_series(history, test, interval)
    engine = Engine(_engine_groups(groups, order), history, no_data_timeout=1e-9, step=evaluation_interval)
    for group in engine.groups:
        group.interval = group.interval or evaluation_interval
    alert_tests = list(test.get("alert_rule_test") or [])
    expr_tests = list(test.get("promql_expr_test") or [])
    times = [_duration(a.get("eval_time", "0s"), "eval_time") for a in alert_tests]
    times += [_duration(e.get("eval_time", "0s"), "eval_time") for e in expr_tests]
    horizon = max(times, default=0.0)
    firing_at: Dict[float, List[dict]] = {}
    wanted = sorted(set(times))
    failures: List[str] = []
    steps = int(horizon // evaluation_interval)
    for n in range(steps + 1):
        t = n * evaluation_interval
        engine.evaluate(t)  # a rule that fails is logged, as promtool does; the expectations decide
        next_t = (n + 1) * evaluation_interval
        for want in wanted:
            if t <= want < next_t:  # the state as of the last evaluation at or before eval_time
                firing_at[want] = [{"labels": dict(a.labels), "annotations": dict(a.annotations)}
                                   for a in engine.active() if a.state == "firing"]
    for a in alert_tests:
        failures.extend(_check_alerts(a, firing_at))
    for e in expr_tests:
        failures.extend(_check_expr(e, history, evaluation_interval))
    return failures


def _check_alerts(case: dict, firing_at: Dict[float, List[dict]]) -> List[str]:
    t = _duration(case.get("eval_time", "0s"), "eval_time")
    name = str(case.get("alertname", ""))
    got = sorted((sorted(a["labels"].items()), sorted(a["annotations"].items()))
                 for a in firing_at.get(t, []) if a["labels"].get("alertname") == name)
    expected = []
    for exp in case.get("exp_alerts") or []:
        labels = {str(k): str(v) for k, v in (exp.get("exp_labels") or {}).items()}
        labels["alertname"] = name
        annotations = {str(k): str(v) for k, v in (exp.get("exp_annotations") or {}).items()}
        expected.append((sorted(labels.items()), sorted(annotations.items())))
    expected.sort()
    if got == expected:
        return []
    return [f"alertname: {name}, time: {t:g}s,\n        exp: {_show(expected)},\n        got: {_show(got)}"]


def _show(alerts) -> str:
    return "[" + ", ".join(f"{{labels: {dict(lbl)}, annotations: {dict(ann)}}}" for lbl, ann in alerts) + "]"


def _check_expr(case: dict, history: History, step: float) -> List[str]:
    expr = str(case.get("expr", ""))
    t = _duration(case.get("eval_time", "0s"), "eval_time")
    try:
        value = Evaluator(history, step=step).eval(parse(expr), t)
    except (EvalError, PromQLError) as e:
        return [f"expr: {expr!r}, time: {t:g}s, err: {e}"]
    got: List[Tuple[Labels, float]]
    if isinstance(value, float):
        got = [((), value)]
    elif isinstance(value, list) and not isinstance(value, Matrix):
        got = [(labels, v) for labels, v in value]
    else:
        return [f"expr: {expr!r}, time: {t:g}s: the result is not an instant vector or scalar"]
    expected = []
    for sample in case.get("exp_samples") or []:
        name, labels = parse_series(str(sample.get("labels", "{}") or "{}")) if sample.get("labels") else ("", ())
        full = tuple(sorted(labels + ((("__name__", name),) if name else ())))
        expected.append((full, _float(str(sample.get("value", 0)))))
    got_map = dict(got)
    if len(got_map) == len(expected) and all(labels in got_map and _same(got_map[labels], v) for labels, v in expected):
        return []
    return [f"expr: {expr!r}, time: {t:g}s,\n        exp: {sorted(expected)},\n        got: {sorted(got)}"]


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12)


def render(outcomes: List[Outcome]) -> str:
    lines = []
    for o in outcomes:
        lines.append(f"Unit Testing:  {o.file}")
        if o.ok:
            lines.append("  SUCCESS")
            continue
        lines.append("  FAILED:")
        lines.extend("    " + e for e in o.errors + o.failures)
    return "\n".join(lines) + "\n"
