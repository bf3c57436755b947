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


@pytest.mark.parametrize("bad", ["{{ $labels.x | nope }}", "{{ .Labels.x }}", "{{ $value ", "{{ range . }}"])
def test_unsupported_templates_are_rejected_at_load(bad):
    with pytest.raises(TemplateError):
        Template(bad)
