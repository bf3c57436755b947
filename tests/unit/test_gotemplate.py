"""Go's text/template and fmt as the agent runs them.

The Prometheus cases are checked against what promtool 2.42 itself expanded for them
(tests/fixtures/templates/prometheus-2.42.yaml, captured by tests/support/promtool_templates.py;
the integration test runs promtool live). The rest pin Go's own rules that Prometheus' use does
not reach (missingkey's default, the builtins' edges), the bounds, and a fuzz run."""

import math
import random
import time

import pytest
import yaml

from agent.gotemplate import ExecError, Func, FuncError, Limits, ParseError, Template
from agent.gotemplate.gofmt import sprint, sprintf, sprintln
from agent.gotemplate.gotypes import GoMap, GoStruct
from agent.gotemplate.strconv import format_float, quote
from agent.promql.evaluator import Evaluator
from agent.promql.parser import parse
from agent.rules.history import History
from agent.templates import Context, Template as AlertTemplate, TemplateError
from tests.support.promtool_templates import CASES, EXPECTED, load_cases

# what the agent does differently, on purpose (see docs/alerting.md)
KNOWN = {
    "{{ define \"r\" }}{{ template \"r\" }}{{ end }}{{ template \"r\" }}":
        "a recursive template stops at depth 50 here, at Go's 100000 there",
    "{{ query \"vector(1)\" }}": "Go prints a pointer's address",
}


def _history(cases):
    history = History(keep_all=True)
    for i, (_, labels, value) in enumerate(cases):
        key = tuple(sorted({**labels, "__name__": f"case_{i}"}.items()))
        history.add(key, 0.0, float(value))
    return history


def _query(history):
    def run(q):
        value = Evaluator(history).eval(parse(q), 0.0)
        return [({}, value)] if isinstance(value, float) else [(dict(labels), v) for labels, v in value]
    return run


def _expand(i, text, labels, value, history):
    try:
        template = AlertTemplate(text, f"__alert_T{i}")
    except TemplateError as e:
        return f"<refused: {e}>"
    try:
        return template.render({**labels, "__name__": f"case_{i}"}, float(value),
                               Context({}, None, _query(history)))
    except TemplateError as e:
        return f"<error expanding template: {e}>"


def test_every_case_expands_as_prometheus_expanded_it():
    cases = load_cases(CASES)
    with open(EXPECTED, encoding="utf-8") as f:
        expected = yaml.safe_load(f)
    assert [e["t"] for e in expected] == [c[0] for c in cases], "regenerate the capture: cases changed"
    history = _history(cases)
    differ = []
    for i, ((text, labels, value), want) in enumerate(zip(cases, expected)):
        got = _expand(i, text, labels, value, history)
        if got != want["got"] and text not in KNOWN:
            differ.append((text, want["got"], got))
    assert differ == []
    assert len(cases) >= 200


# -- Go's own rules ------------------------------------------------------------------------------

def run(text, data=None, funcs=None, missing_key="invalid", limits=None):
    return Template("t", text, funcs, missing_key=missing_key, limits=limits).execute(data)


def test_a_missing_key_prints_no_value_by_default_and_empty_under_zero():
    data = GoMap({"a": "1"})
    assert run("{{ .b }}", data) == "<no value>"
    assert run("{{ .b }}", data, missing_key="zero") == ""
    with pytest.raises(ExecError, match='map has no entry for key "b"'):
        run("{{ .b }}", data, missing_key="error")


def test_and_or_stop_at_the_first_deciding_argument():
    calls = []
    boom = Func(lambda: calls.append(1) or 1, ())
    assert run("{{ and 0 boom }}|{{ or 1 boom }}", funcs={"boom": boom}) == "0|1"
    assert calls == []
    assert run("{{ and 1 boom }}", funcs={"boom": boom}) == "1"
    assert calls == [1]


def test_variables_are_scoped_to_their_block():
    assert run("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}") == "21"
    assert run("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}") == "2"
    with pytest.raises(ParseError, match='undefined variable "\\$y"'):
        run("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}")


def test_range_break_continue_and_else():
    data = GoStruct("T", [("L", [1, 2, 3, 4]), ("E", [])])
    assert run("{{ range .L }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}", data) == "12"
    assert run("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", data) == "134"
    assert run("{{ range $i, $v := .L }}{{ $i }}:{{ $v }} {{ end }}", data) == "0:1 1:2 2:3 3:4 "
    assert run("{{ range .E }}x{{ else }}none{{ end }}", data) == "none"
    with pytest.raises(ParseError, match="{{break}} outside {{range}}"):
        run("{{ break }}")


def test_trim_markers_and_comments():
    assert run("a  \n {{- 1 -}} \n  b") == "a1b"
    assert run("{{- /* gone */ -}}  x") == "x"
    assert run("{{ -1 }}") == "-1"  # no space after the dash: a number, not a marker
    with pytest.raises(ParseError, match="comment ends before closing delimiter"):
        run("{{/* x */ 1 }}")
    with pytest.raises(ParseError, match='unexpected "/" in command'):
        run("{{ /* x */ }}")  # a comment starts right after the delimiter (or its trim marker)


def test_parse_errors_read_as_go_writes_them():
    cases = {
        "{{ if 1 }}x": "template: t:1: unexpected EOF",
        "{{ 1 | 2 }}": "template: t:1: non executable command in pipeline stage 2",
        "{{ nope }}": 'template: t:1: function "nope" not defined',
        "{{ (1 }}": "template: t:1: unclosed left paren",
        "x\n{{ \"a }}": "template: t:2: unterminated quoted string",
        "{{ 3x }}": 'template: t:1: bad number syntax: "3x"',
        "{{ end }}": "template: t:1: unexpected {{end}}",
        "{{ define \"a\" }}1{{ end }}{{ define \"a\" }}2{{ end }}": 'template: t:1: template: multiple definition of template "a"',
    }
    for text, message in cases.items():
        with pytest.raises(ParseError) as e:
            run(text)
        assert str(e.value) == message, text


def test_execution_errors_name_the_line_column_and_node():
    with pytest.raises(ExecError) as e:
        run("ok\n  {{ index . 5 }}", [1, 2])
    assert str(e.value) == 'template: t:2:5: executing "t" at <index . 5>: error calling index: index out of range: 5'
    with pytest.raises(ExecError, match="wrong number of args for len: want 1 got 2"):
        run("{{ len 1 2 }}")
    with pytest.raises(ExecError, match="incompatible types for comparison"):
        run("{{ lt 1 1.5 }}")


def test_functions_fail_as_go_reports_them():
    boom = Func(lambda s: (_ for _ in ()).throw(FuncError("bad " + s)), ("string",), results=2)
    with pytest.raises(ExecError, match='at <boom "x">: error calling boom: bad x'):
        run('{{ boom "x" }}', funcs={"boom": boom})
    with pytest.raises(ExecError, match="wrong type for value; expected string; got int"):
        run("{{ 1 | boom }}", funcs={"boom": boom})
    with pytest.raises(ExecError, match="expected string; found 1"):
        run("{{ boom 1 }}", funcs={"boom": boom})


# -- bounds --------------------------------------------------------------------------------------

def test_a_runaway_range_stops_at_the_step_budget():
    data = GoStruct("T", [("L", list(range(100_000)))])
    start = time.monotonic()
    with pytest.raises(ExecError, match="exceeded the step budget"):
        run("{{ range .L }}{{ range $.L }}x{{ end }}{{ end }}", data, limits=Limits(steps=50_000))
    assert time.monotonic() - start < 30  # generous: the point is that it stops


def test_recursion_stops_at_the_depth_limit_and_output_at_its_size():
    with pytest.raises(ExecError, match=r"exceeded maximum template depth \(20\)"):
        run('{{ define "r" }}{{ template "r" }}{{ end }}{{ template "r" }}', limits=Limits(depth=20))
    with pytest.raises(ExecError, match="exceeded the output limit"):
        run('{{ printf "%100000d" 1 }}', limits=Limits(output=1000))


# -- fmt -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,args,want", [
    ("%v", [1e6], "1e+06"), ("%v", [123456.0], "123456"), ("%v", [1e21], "1e+21"), ("%v", [-0.0], "-0"),
    ("%d", [42.0], "%!d(float64=42)"), ("%s", [], "%!s(MISSING)"), ("%d", [1, 2.5], "1%!(EXTRA float64=2.5)"),
    ("%05d", [-42], "-0042"), ("%x", [-255], "-ff"), ("%#x", [255], "0xff"), ("%08.3f", [-3.14159], "-003.142"),
    ("%.0f %.0f", [0.5, 1.5], "0 2"), ("%e", [0.0], "0.000000e+00"), ("%g", [1e-5], "1e-05"), ("%.3g", [1234.0], "1.23e+03"),
    ("%q", ['a"\n'], '"a\\"\\n"'), ("%x", ["hi"], "6869"), ("% x", ["hi"], "68 69"), ("%5.2s|", ["abc"], "   ab|"),
    ("%-4d|", [7], "7   |"), ("%+.1e", [12345.0], "+1.2e+04"), ("%c%c", [72, 105], "Hi"), ("%U", [0x1F600], "U+1F600"),
    ("%[2]d-%[1]d", [1, 2], "2-1"), ("%*d", [4, 7], "   7"), ("%.*f", [1, 2.25], "2.2"), ("%t", [True], "true"),
    ("%v", [None], "<nil>"), ("%d", [None], "%!d(<nil>)"), ("%", [], "%!(NOVERB)"), ("%z", [1], "%!z(int=1)"),
    ("%v", [{"b": "2", "a": "1"}], "map[a:1 b:2]"), ("%v", [[1, "a", 2.5]], "[1 a 2.5]"), ("%b", [1.0], "4503599627370496p-52"),
    ("%x", [1.5], "0x1.8p+00"), ("%v", [1 + 2j], "(1+2i)"), ("%6.2f%%", [99.5], " 99.50%"), ("%F", [1.5], "1.500000"),
])
def test_sprintf_as_go(fmt, args, want):
    assert sprintf(fmt, args) == want


def test_sprint_and_sprintln_space_as_go():
    assert sprint(["a", 1, 2, "b", 3.5, True]) == "a1 2b3.5 true"
    assert sprintln(["a", 1]) == "a 1\n"


@pytest.mark.parametrize("v,fmt,prec,want", [
    (0.1 + 0.2, "g", -1, "0.30000000000000004"), (5e-324, "g", -1, "5e-324"), (1.7976931348623157e308, "e", -1,
                                                                               "1.7976931348623157e+308"),
    (100.0, "g", 2, "1e+02"), (0.000123, "g", 2, "0.00012"), (123.456, "f", 1, "123.5"), (2.5, "f", 0, "2"),
    (math.nan, "g", -1, "NaN"), (-math.inf, "f", 2, "-Inf"), (1e6, "E", -1, "1E+06"), (51.0, "E", -1, "5.1E+01"),
])
def test_format_float_as_strconv(v, fmt, prec, want):
    assert format_float(v, fmt, prec) == want


def test_quote_as_strconv():
    assert quote("a\tb\x00é\u200b\U0001F600") == '"a\\tb\\x00é\\u200b😀"'


# -- fuzz ----------------------------------------------------------------------------------------

_PIECES = ["{{", "}}", "{{-", "-}}", " ", "$x", ":=", "=", "|", "(", ")", ".", ".A", "$", "if", "else", "end",
           "range", "with", "define", "template", "block", "break", "continue", '"s"', "`r`", "'c'", "1", "-2.5",
           "0x1F", "1e3", "2i", "nil", "true", "len", "index", "printf", '"%d %s"', "eq", "lt", "and", "or", "not",
           "print", "slice", "html", "js", "/*", "*/", ",", "\n", "x", "{", "}", "\\", '"', "humanize", "query",
           "$labels", "$value", "title", "reReplaceAll", '"(.*)"', "first", "value", "toTime", "args"]


def test_fuzzed_templates_fail_only_with_template_errors():
    rng = random.Random(20261206)
    history = History(keep_all=True)
    history.add((("__name__", "up"), ("job", "x")), 0.0, 1.0)
    outcomes = {"parsed": 0, "refused": 0, "failed": 0}
    for _ in range(3000):
        text = "{{ " + "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 10))) + rng.choice([" }}", ""])
        try:
            template = AlertTemplate(text, "__alert_F")
        except TemplateError:
            outcomes["refused"] += 1
            continue
        try:
            template.render({"job": "x", "__name__": "up"}, rng.choice([0.0, 1.5, math.nan]),
                            Context({}, "http://h/", _query(history)))
            outcomes["parsed"] += 1
        except TemplateError:
            outcomes["failed"] += 1
    assert min(outcomes.values()) > 20, outcomes  # each way out is exercised, and none is a traceback
