"""Configuration: defaults, the table of bad files and their exact messages, secrets."""

import re
from pathlib import Path

import pytest

from agent.config import SCHEMA, ConfigError, default_config, load_config, parse_config, resolve_path

ROOT = Path(__file__).parent.parent.parent
EXAMPLE_ENV = {"LLAMA_API_KEY": "k", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x", "PAGERDUTY_ROUTING_KEY": "r" * 32,
               "SMTP_PASSWORD": "p", "TEAMS_WORKFLOW_URL": "https://prod.example.logic.azure.com/workflows/x",
               "OPSGENIE_API_KEY": "o" * 36}


def errors_of(text, environ=None):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "agent.toml", environ or {})
    return e.value.problems


def test_no_file_gives_sensible_defaults():
    c = default_config()
    assert c.interval == 5.0
    assert c.exporter.listen == ("0.0.0.0", 9400)
    assert c.agent.state_dir == "/var/lib/llm-agent"
    assert c.targets == ()
    assert c.collectors.nvml.enabled and c.collectors.host.enabled and c.discovery.enabled
    assert c.collector_timeout == 4.0


BAD = [
    ('[agent]\ninterval = "5x"\n',
     'agent.toml:2: agent.interval: invalid duration \'5x\': use a number and a unit (ms, s, m, h, d), e.g. "5s"'),
    ('[agent]\ninterval = "0s"\n', "agent.toml:2: agent.interval: must be greater than zero, got '0s'"),
    ('[agent]\ninterval = 5\n', 'agent.toml:2: agent.interval: expected a duration string such as "5s", got 5'),
    ('[agent]\nintervall = "5s"\n', "agent.toml:2: agent.intervall: unknown key; did you mean 'interval'?"),
    ('[exporter]\nlisten = ":70000"\n', "agent.toml:2: exporter.listen: port 70000 is out of range 1-65535"),
    ('[exporter]\nlisten = "9400"\n',
     "agent.toml:2: exporter.listen: expected \"host:port\" such as \"0.0.0.0:9400\", got '9400'"),
    ('[exporter]\nmax_threads = 0\n', "agent.toml:2: exporter.max_threads: 0 is out of range 1-256"),
    ('[exporter]\nmax_threads = true\n', "agent.toml:2: exporter.max_threads: expected int, got bool True"),
    ('[[targets]]\nurl = "http://127.0.0.1:8080"\n', "agent.toml:1: targets[0].name: is required"),
    ('[[targets]]\nname = "a"\nurl = "ftp://x"\n',
     "agent.toml:3: targets[0].url: invalid URL 'ftp://x': expected http://host:port"),
    ('[[targets]]\nname = "a"\nurl = "http://x:1"\nkind = "llama"\n',
     "agent.toml:4: targets[0].kind: expected one of 'llamacpp', 'openmetrics', 'ollama', got 'llama'"),
    ('[[targets]]\nname = "a"\nurl = "http://x:1"\n[[targets]]\nname = "a"\nurl = "http://y:1"\n',
     "agent.toml:5: targets[1].name: duplicate name 'a' (also targets[0])"),
    ('[collectors.nvml]\nenabled = "yes"\n', "agent.toml:2: collectors.nvml.enabled: expected bool, got str 'yes'"),
    ('[collectors.gpu]\nenabled = true\n', "agent.toml:1: collectors.gpu: unknown key; known keys: nvml, host, fabric, kernel"),
    ('[agent]\nmax_response_bytes = "lots"\n',
     "agent.toml:2: agent.max_response_bytes: invalid size 'lots': use bytes or a unit (KiB, MiB, GiB, KB, MB, GB), e.g. \"8MiB\""),
    ('targets = "x"\n', "agent.toml:1: targets: expected an array of tables ([[targets]])"),
    ('[exporter]\nbasic_auth_users = { prom = "plaintext" }\n',
     "agent.toml:2: exporter.basic_auth_users: the password of 'prom' must be a bcrypt hash ($2y$...), as in "
     "Prometheus' web config (make one with: htpasswd -nBC 10 '' | tr -d ':')"),
    ('[alerting]\ndisable = ["GpuLsot"]\n', "agent.toml:2: alerting.disable: no default rule named 'GpuLsot'; did you mean 'GpuLost'?"),
    ('[[rules]]\nname = "X"\nexpr = "rate(x)"\n',
     "agent.toml:3: rules[0].expr: 1:1: parse error: expected type range vector in call to function 'rate', got instant vector"),
    ('[[rules]]\nname = "X"\nexpr = "topk(3, x"\n',
     "agent.toml:3: rules[0].expr: 1:10: parse error: unclosed left parenthesis"),
    ('[[rules]]\nname = "X"\nexpr = "rate(x[5m]) offset 1m"\n',
     "agent.toml:3: rules[0].expr: 1:13: parse error: offset modifier must be preceded by an instant vector selector or "
     "range vector selector or a subquery"),
    ('[[rules]]\nname = "X"\nexpr = "x"\nannotations = { s = "{{ $value | bogus }}" }\n',
     'agent.toml:4: rules[0].annotations: template: s:1: function "bogus" not defined'),
    ('[[notify]]\nname = "p"\ntype = "pagerduty"\n', "agent.toml:1: notify[0].routing_key: a pagerduty channel needs routing_key"),
    ('[[notify]]\nname = "s"\ntype = "slack"\nurl = "not-a-url-sekrit"\n',
     "agent.toml:4: notify[0].url: invalid URL (not shown: secret): expected http(s)://host[:port]/path"),
    ('[history]\nraw_retention = "10m"\n', "agent.toml:2: history.raw_retention: must be at least 1h, got '10m'"),
    ('[history]\nmax_disk = "1MiB"\n', "agent.toml:2: history.max_disk: must be at least 64 MiB, got '1MiB'"),
    ('[history]\nrollup_1h_retention = "2d"\n',
     "agent.toml:2: history.rollup_1h_retention: must keep at least as long as rollup_1m_retention (30 days), got 2 days"),
    ('[history]\nexclude = ["rate(x[5m])"]\n',
     "agent.toml:2: history.exclude: 'rate(x[5m])' is not a series selector such as node_cpu_seconds_total or "
     '{__name__=~"go_.*"}'),
    ('[[notify]]\nname = "s"\ntype = "slack"\nurl = "https://hooks.slack.example/x"\n[[reports]]\nname = "w"\n'
     'schedule = "weekly someday 09:00"\nchannels = ["s"]\n',
     "agent.toml:7: reports[0].schedule: invalid weekday 'someday' in 'weekly someday 09:00': use mon, tue, wed, thu, "
     "fri, sat or sun"),
    ('[[notify]]\nname = "pd"\ntype = "pagerduty"\nrouting_key = "k"\n[[reports]]\nname = "w"\n'
     'schedule = "daily 08:00"\nchannels = ["pd"]\n',
     "agent.toml:8: reports[0].channels: 'pd' is a pagerduty channel: reports go to slack or webhook channels (a pager "
     "is for incidents)"),
    ('[agent\n', "agent.toml:1: invalid TOML: Expected ']' at the end of a table declaration (at line 1, column 7)"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_bad_files_give_exact_messages(text, message):
    assert errors_of(text) == [message]


def test_every_problem_is_reported_at_once():
    problems = errors_of('[agent]\ninterval = "x"\nlog_level = "loud"\n[exporter]\nlisten = ":0"\n')
    assert [p.split(":")[1] for p in problems] == ["2", "3", "5"]


def test_secret_from_environment_and_unset_variable():
    text = '[[targets]]\nname = "a"\nurl = "http://x:1"\napi_key = "${LLAMA_KEY}"\n'
    c = parse_config(text, "agent.toml", {"LLAMA_KEY": "s3cret-value"})
    assert c.targets[0].api_key == "s3cret-value"
    assert "s3cret-value" not in repr(c.targets[0])
    assert errors_of(text) == ["agent.toml:4: targets[0].api_key: environment variable LLAMA_KEY is not set"]


def test_secret_from_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    c = parse_config(f'[[targets]]\nname = "a"\nurl = "http://x:1"\napi_key = "${{file:{secret}}}"\n', "t", {})
    assert c.targets[0].api_key == "from-file"


def test_durations_and_sizes():
    c = parse_config('[agent]\ninterval = "1m30s"\ncollector_timeout = "250ms"\nmax_response_bytes = "2MiB"\n')
    assert c.interval == 90.0 and c.collector_timeout == 0.25 and c.agent.max_response_bytes == 2 << 20


def test_a_duration_longer_than_a_wait_can_be_is_refused_with_its_key():
    """Go's longest duration (~292 years) is the most a thread may wait: a longer collector
    timeout validated and then raised OverflowError in the first cycle (found by the fuzz)."""
    assert parse_config('[agent]\ncollector_timeout = "106751d"\n').collector_timeout == 106751 * 86400
    for text in ("99999999999999999999d", "106752d", "1" + "0" * 400 + "s"):
        with pytest.raises(ConfigError, match=r"(?s)collector_timeout.*out of range: at most 106751d"):
            parse_config(f'[agent]\ncollector_timeout = "{text}"\n')


def test_ipv6_listen():
    assert parse_config('[exporter]\nlisten = "[::1]:9500"\n').exporter.listen == ("::1", 9500)


def test_path_resolution(tmp_path, monkeypatch):
    f = tmp_path / "a.toml"
    f.write_text("")
    assert resolve_path(str(f), {}) == str(f)
    assert resolve_path(None, {"LLM_AGENT_CONFIG": "/x.toml"}) == "/x.toml"
    with pytest.raises(ConfigError, match="cannot read config: No such file"):
        load_config(str(tmp_path / "missing.toml"))


def test_example_file_is_valid_and_documents_every_key():
    text = (ROOT / "agent.toml.example").read_text()
    uncommented = "\n".join(re.sub(r"^# ?", "", line) if re.match(r"^# ?(\[|[a-z_]+ =)", line) else line
                            for line in text.splitlines())
    config = parse_config(uncommented, "agent.toml.example", EXAMPLE_ENV)
    assert config.targets, "the example shows a [[targets]] entry"

    def keys(spec, prefix=""):
        for k, v in spec.items():
            if isinstance(v, dict):
                yield from keys(v, prefix + k + ".")
            elif isinstance(v, list):
                yield from keys(v[0], prefix + k + ".")
            else:
                yield prefix + k

    # each key must be documented under its own (possibly commented) [section] header
    documented, header = set(), ""
    for line in text.splitlines():
        m = re.match(r"^#? ?\[\[?([a-z_.]+)\]\]?\s*$", line)
        if m:
            header = m.group(1)
            continue
        m = re.match(r"^#? ?([a-z0-9_]+) =", line)
        if m and header:
            documented.add(f"{header}.{m.group(1)}")
    for key in keys(SCHEMA):
        assert key in documented, f"{key} is not documented under [{key.rsplit('.', 1)[0]}]"


def test_example_defaults_match_the_embedded_ones():
    text = (ROOT / "agent.toml.example").read_text()
    uncommented = "\n".join(re.sub(r"^# ?", "", line) if re.match(r"^# ?(\[|[a-z_]+ =)", line) else line
                            for line in text.splitlines())
    example = parse_config(uncommented, "agent.toml.example", EXAMPLE_ENV)
    defaults = default_config()
    for section in ("agent", "exporter", "discovery", "collectors", "alerting"):
        assert getattr(example, section) == getattr(defaults, section), section


def test_an_inhibit_matcher_value_must_be_one_quoted_string():
    from agent.promql.parser import PromQLError, parse_matcher

    assert parse_matcher('server="a b"').value == "a b"
    with pytest.raises(PromQLError, match="not one quoted string"):
        parse_matcher('server="a" "b"')


@pytest.mark.parametrize("lines, says", [
    ('group_by = ["...", "gpu"]', "stands alone"),
    ('group_by = ["not-a-label"]', "is not a label name"),
    ('repeat_interval = "0s"', "repeat_interval: must be greater than zero"),
])
def test_grouping_keys_are_checked(lines, says):
    text = f'[[notify]]\nname = "s"\ntype = "webhook"\nurl = "http://x/y"\n{lines}\n'
    with pytest.raises(ConfigError, match=says):
        parse_config(text)


def test_a_rule_cooldown_is_deprecated_with_a_warning(caplog):
    from agent.rules.loader import load_rules

    config = parse_config('[[rules]]\nname = "X"\nexpr = "vector(1)"\ncooldown = "1h"\n')
    with caplog.at_level("WARNING"):
        rules = {r.name: r for r in load_rules(config).alerts}
    assert rules["X"].cooldown == 3600 and "`cooldown` is deprecated" in caplog.text
