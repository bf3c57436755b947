"""Prometheus' template helpers, with the outputs Prometheus gives for the same inputs."""

import pytest

from agent.templates import Template, TemplateError, humanize, humanize1024, humanize_duration, humanize_percentage


@pytest.mark.parametrize("value,text", [(0, "0"), (1234567, "1.235M"), (0.00123, "1.23m"), (12, "12"), (1e-9, "1n")])
def test_humanize(value, text):
    assert humanize(value) == text


@pytest.mark.parametrize("value,text", [(0, "0s"), (45.5, "45.5s"), (90, "1m 30s"), (3725, "1h 2m 5s"),
                                        (90061, "1d 1h 1m 1s"), (0.25, "250ms")])
def test_humanize_duration(value, text):
    assert humanize_duration(value) == text


def test_humanize_1024_and_percentage():
    assert humanize1024(2048) == "2ki"
    assert humanize_percentage(0.1234) == "12.34%"


def test_render_and_printf():
    t = Template('{{ $labels.server }}: {{ printf "%.1f" $value }} tok/s ({{ $value | humanize }}), {{ $labels.missing }}.')
    assert t.render({"server": "llama"}, 1234.56) == "llama: 1234.6 tok/s (1.235k), ."


@pytest.mark.parametrize("bad,message", [
    ("{{ $labels.x | nope }}", 'function "nope" not defined'), ("{{ $value ", "unclosed action"),
    ("{{ range . }}", "unexpected EOF"), ("{{ $nope }}", 'undefined variable "$nope"')])
def test_templates_go_refuses_to_parse_are_refused_at_load(bad, message):
    with pytest.raises(TemplateError, match=message.replace("$", "\\$")):
        Template(bad, "__alert_X")


def test_go_templates_in_full_render_as_prometheus_does():
    t = Template('{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}{{ if gt $value 1.0 }}high{{ end }} '
                 '{{ .Labels.server | toUpper }} {{ $labels }}')
    assert t.render({"server": "llama", "__name__": "up"}, 2.0) == "__name__=up;server=llama;high LLAMA map[__name__:up server:llama]"


def test_external_labels_and_url_come_from_the_config():
    from agent.alerting import template_context
    from agent.config import parse_config

    config = parse_config('[agent]\nhostname = "gpu-7"\n[alerting]\nexternal_labels = { dc = "fra1" }\n', "agent.toml")
    t = Template("{{ $externalLabels.dc }} {{ $externalLabels.Hostname }} {{ $externalURL }} {{ pathPrefix }}")
    assert t.render({}, 1.0, template_context(config)) == "fra1 gpu-7 http://gpu-7:9400/ /"
    config = parse_config('[alerting]\nexternal_url = "https://ops.example/agent"\n', "agent.toml")
    assert Template("{{ externalURL }} {{ pathPrefix }}").render({}, 1.0, template_context(config)) == \
        "https://ops.example/agent /agent"


def test_a_dry_run_finds_templates_that_fail_for_every_alert_and_only_those():
    from agent.templates import dry_run_problem

    assert "incompatible types for comparison" in dry_run_problem(Template("{{ if gt $value 10 }}x{{ end }}"))
    assert "expected string; got float64" in dry_run_problem(Template("{{ $value | toUpper }}"))
    assert dry_run_problem(Template("{{ if gt $value 10.0 }}x{{ end }} {{ $labels.server | humanize }}")) is None
    assert dry_run_problem(Template("{{ with query \"up\" }}{{ . | first | value }}{{ end }}")) is None
    assert dry_run_problem(Template("no template at all")) is None
