"""Anything `config validate` accepts must start, and anything that cannot start is a
validation error with its key and line: the configs that used to crash `run` (or a running
agent on reload), then a hypothesis fuzz over mutated configs that holds it true."""

import json
import logging
import math

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from agent.config import SCHEMA, ConfigError, parse_config
from agent.daemon import Agent

DEEP_PARENS = "(" * 500 + "x" + ")" * 500
CRASHERS = [
    ('[[rules]]\nname = "X"\nexpr = "%s"\n' % " + ".join(["x"] * 5000), "rules[0].expr", "nests more than 200"),
    ('[[rules]]\nname = "X"\nexpr = "%s"\n' % DEEP_PARENS, "rules[0].expr", "nests more than 200"),
    ('[[rules]]\nname = "X"\nexpr = "%sx"\n' % ("-" * 500), "rules[0].expr", "nests more than 200"),
    ('[[rules]]\nname = "X"\nexpr = \'x{a=~"a{99999999999}"}\'\n', "rules[0].expr", "invalid repeat count"),
    ('[probes]\ncanary_regex = "a{99999999999}"\n', "probes.canary_regex", "invalid repeat count"),
    ('[collectors.host]\nmount_points_exclude = "a{99999999999}"\n', "collectors.host.mount_points_exclude",
     "invalid repeat count"),
    ('[collectors.host]\nnet_devices_exclude = "(unclosed"\n', "collectors.host.net_devices_exclude",
     "invalid regular expression"),
    ('[probes]\ncanary_regex = "(?=lookahead)"\n', "probes.canary_regex", "invalid perl operator"),
    ('[[inhibit]]\nsource_matchers = [\'a=~"x{99999999999}"\']\ntarget_matchers = ["b=c"]\n',
     "inhibit[0].source_matchers", "invalid repeat count"),
    ('[[rules]]\nname = "X"\nexpr = "x"\nannotations = { s = \'{{ printf "%s %s" $value \' }\n',
     "rules[0].annotations", "unclosed action"),
    ('[[rules]]\nname = "X"\nexpr = "x"\nannotations = { s = "{{ if $value }}x" }\n',
     "rules[0].annotations", "unexpected EOF"),
    ('[[rules]]\nname = "X"\nexpr = "rate(x[99999999999999999999999y])"\n', "rules[0].expr", "duration out of range"),
    ('[[rules]]\nname = "X"\nexpr = "0x%s"\n' % ("f" * 400), "rules[0].expr", "error parsing number"),
]


@pytest.mark.parametrize("text,key,why", CRASHERS, ids=[c[1] + ":" + c[2] for c in CRASHERS])
def test_configs_that_crashed_the_agent_are_validation_errors(text, key, why):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "agent.toml", {})
    line = text[:text.index(key.split(".")[-1].split("[")[0])].count("\n") + 1 if "[" not in key else None
    assert any(key in p and why in p and p.startswith("agent.toml:") for p in e.value.problems), e.value.problems
    if line:
        assert any(p.startswith(f"agent.toml:{line}:") for p in e.value.problems)


# -- the fuzz ---------------------------------------------------------------------------------

BASE = {
    "agent": {"interval": "1s"},
    "collectors": {"nvml": {"enabled": False}, "host": {}},
    "discovery": {"enabled": False},
    "targets": [{"name": "t", "url": "http://127.0.0.1:9", "kind": "openmetrics"}],
    "rules": [{"name": "R", "expr": "llm_agent_target_up == 0", "annotations": {"summary": "{{ $labels.server }}"}}],
    "inhibit": [{"source_matchers": ["alertname=R"], "target_matchers": ["severity=warning"]}],
    "notify": [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
}
NASTY = ["(a+)+b", "a{99999999999}", "x{1001}", "[", "(?=x)", "\\", ".*", "", "5s", "0s", "-1s", "1e400", "nan",
         "99999999999999999999d", DEEP_PARENS, "-" * 300 + "x", " + ".join(["x"] * 300), "{{ $value | toUpper }}",
         '{{ printf "%s %s" $value }}', "{{", "{{ $labels.x | humanize }}", 'x{a=~"(a+)+b"}', "rate(x[5m])",
         "sum by (a) (rate(x[1m])) > 0", "absent(x)", "x > 0 and on(k) y", "http://u:p@127.0.0.1:9/x",
         "${NOPE}", "${file:/nonexistent}", "0.0.0.0:0", "é\u0000", "x" * 5000]


def _leaves(spec, path=()):
    for key, sub in spec.items():
        if isinstance(sub, dict):
            yield from _leaves(sub, path + (key,))
        elif isinstance(sub, list):
            yield from _leaves(sub[0], path + (key, 0))
        else:
            yield path + (key,)


LEAVES = sorted(_leaves(SCHEMA), key=str)
TEXT = st.one_of(st.sampled_from(NASTY), st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
ANY = st.one_of(TEXT, st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                st.lists(TEXT, max_size=3), st.dictionaries(st.sampled_from(["a", "summary", "x"]), TEXT, max_size=2))


def _field(path):
    node = SCHEMA
    for part in path:
        node = node[0] if isinstance(part, int) else node[part]
    return node


def _value_for(path):
    """Mostly a value of the field's own type (so many configs validate), sometimes anything."""
    default = _field(path).default
    if isinstance(default, bool):
        own = st.booleans()
    elif isinstance(default, int):
        own = st.integers(-5, 2 ** 40)
    elif isinstance(default, float):
        own = st.floats(0, 1)
    elif isinstance(default, list):
        own = st.lists(TEXT, max_size=3)
    elif isinstance(default, dict):
        own = st.dictionaries(st.sampled_from(["a", "summary", "x"]), TEXT, max_size=2)
    elif isinstance(default, str) and default[:1].isdigit():  # a duration or a size
        own = st.sampled_from(["100ms", "1s", "5s", "90m", "0s", "-1s", "1e400s", "99999999999999999999d", "16MiB",
                               "1PiB", "0.0.0.0:0", "127.0.0.1:65535"])
    else:
        own = st.one_of(TEXT, st.sampled_from([default] if default else NASTY))
    return st.one_of(own, own, own, ANY)


CHANGE = st.sampled_from(LEAVES).flatmap(lambda path: st.tuples(st.just(path), _value_for(path)))


def _set(doc, path, value):
    node = doc
    for part in path[:-1]:
        if isinstance(part, int):
            node = node[0]
        else:
            node = node.setdefault(part, [{}] if path[path.index(part) + 1:][:1] == (0,) else {})
    node[path[-1]] = value


def _toml_string(text):
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\\x7f' else c for c in text) + '"'


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not (isinstance(v, float) and math.isinf(v)) else "inf"
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{_toml_string(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def to_toml(doc, prefix=""):
    lines, tables = [], []
    for key, v in doc.items():
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) or \
                isinstance(v, dict) and prefix == "" and key != "labels":
            tables.append((key, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v) and key in ("targets", "rules", "inhibit", "notify"):
            for item in v:
                lines.append(f"\n[[{prefix}{key}]]")
                lines.extend(f"{k} = {_toml_value(x)}" for k, x in item.items())
        else:
            lines.append(f"{key} = {_toml_value(v)}")
    out = "\n".join(lines)
    for key, v in tables:
        scalars = {k: x for k, x in v.items() if not (isinstance(x, dict) and x and all(isinstance(y, dict) for y in x.values()))}
        nested = {k: x for k, x in v.items() if k not in scalars}
        out += f"\n[{prefix}{key}]\n" + "\n".join(f"{k} = {_toml_value(x)}" for k, x in scalars.items())
        out += to_toml(nested, f"{prefix}{key}.") if nested else ""
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(changes=st.lists(CHANGE, min_size=1, max_size=3))
@example(changes=[(("agent", "collector_timeout"), "99999999999999999999d")])  # validated, then overflowed a wait
def test_whatever_validates_starts_and_runs_a_cycle(tmp_path_factory, changes, caplog):
    doc = json.loads(json.dumps(BASE))
    for path, value in changes:
        _set(doc, path, value)
    text = to_toml(doc)
    try:
        config = parse_config(text, "fuzz.toml", {})
    except ConfigError as e:
        assert all(p.startswith("fuzz.toml:") for p in e.problems), e.problems
        event("refused")
        return
    event("validated: started and ran")
    state_dir = str(tmp_path_factory.mktemp("state"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        agent = Agent(config, discover=lambda: [], state_dir=state_dir)
        try:
            agent.cycle()
            agent.alerting.configure(config)  # what a reload to this config does
            agent.cycle()
        finally:
            agent.close(drain=0)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, (text, [r.getMessage() for r in tracebacks])
