"""The exposition parser and renderers, on a captured llama-server body and edge cases."""

import math
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from agent.expfmt import parse_text, render_openmetrics, render_text
from agent.model import MetricFamily, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_parses_captured_llama_server_metrics():
    result = parse_text((FIXTURES / "llamacpp" / "metrics.txt").read_text())
    assert result.errors == []
    by_name = {f.name: f for f in result.families}
    assert by_name["llamacpp:tokens_predicted_total"].type == "counter"
    assert by_name["llamacpp:tokens_predicted_total"].samples[0].value == 8
    assert by_name["llamacpp:requests_processing"].type == "gauge"
    assert by_name["llamacpp:prompt_tokens_total"].help.startswith("Number of prompt tokens processed")


def test_histogram_samples_join_their_family():
    result = parse_text((FIXTURES / "vllm" / "metrics.txt").read_text())
    ttft = next(f for f in result.families if f.name == "vllm:time_to_first_token_seconds")
    assert ttft.type == "histogram"
    assert {s.name for s in ttft.samples} == {"vllm:time_to_first_token_seconds_bucket",
                                              "vllm:time_to_first_token_seconds_count",
                                              "vllm:time_to_first_token_seconds_sum"}


def test_malformed_lines_are_reported_by_number_and_the_rest_kept():
    body = "# TYPE a gauge\na 1\nb{x=\"unterminated} 2\nc 1 2 3 4 5\nd{1bad=\"x\"} 3\ne notanumber\nf 4\n"
    result = parse_text(body)
    assert [(f.name, f.samples[0].value) for f in result.families] == [("a", 1.0), ("f", 4.0)]
    assert [e.split(":")[0] for e in result.errors] == ["line 3", "line 4", "line 5", "line 6"]


def test_label_escapes_round_trip():
    fam = MetricFamily("m", "gauge", "Help with \\ backslash\nand newline.",
                       [Sample("m", (("path", 'C:\\dir "quoted"\nline'),), 1.5)])
    parsed = parse_text(render_text([fam]).decode())
    assert parsed.errors == []
    assert parsed.families[0].samples[0].labels == (("path", 'C:\\dir "quoted"\nline'),)
    assert parsed.families[0].help == fam.help


def test_special_values():
    fam = MetricFamily("v", "gauge", "Values.", [Sample("v", (("k", str(i)),), x)
                                                 for i, x in enumerate([math.nan, math.inf, -math.inf, 2.0, 0.25, 1e20])])
    text = render_text([fam]).decode()
    assert [line.split()[-1] for line in text.splitlines()[2:]] == ["NaN", "+Inf", "-Inf", "2", "0.25", "1e+20"]
    values = [s.value for s in parse_text(text).families[0].samples]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 2.0, 0.25, 1e20]


def test_openmetrics_is_valid_and_keeps_sample_names():
    families = parse_text((FIXTURES / "llamacpp" / "metrics.txt").read_text()).families
    families.append(MetricFamily("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Energy in mJ.",
                                 [Sample("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", (("gpu", "0"),), 5.0)]))
    body = render_openmetrics(families).decode()
    assert body.endswith("# EOF\n")
    parsed = {f.name: f for f in om_parse(body)}  # prometheus_client's strict OpenMetrics parser
    assert parsed["llamacpp:tokens_predicted"].type == "counter"
    assert parsed["llamacpp:tokens_predicted"].samples[0].name == "llamacpp:tokens_predicted_total"
    # a counter without _total keeps its exact name, declared unknown
    assert parsed["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "unknown"
    assert parsed["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].samples[0].name == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"


def test_openmetrics_input_is_tolerated():
    body = "# TYPE x counter\n# UNIT x seconds\n# HELP x X.\nx_total 3\nx_created 1.7e9\n# TYPE y unknown\ny 1\n# EOF\n"
    result = parse_text(body)
    assert result.errors == []
    assert [(f.name, f.type, len(f.samples)) for f in result.families] == [("x", "counter", 2), ("y", "untyped", 1)]


def test_empty_and_binary_bodies_do_not_raise():
    assert parse_text("").families == []
    garbage = parse_text(bytes(range(256)).decode("latin-1"))
    assert garbage.families == [] and garbage.errors


def test_the_remembering_renderer_writes_exactly_what_render_both_writes():
    """Cycle after cycle: values move (whole, fractional, huge, NaN, Inf, -0.0), series come and
    go, a label value changes, escapes included; the cached prefixes never leak a stale line."""
    import random

    from agent.expfmt.render import Renderer, render_both

    rng = random.Random(7)
    renderer = Renderer()
    values = [0.0, -0.0, 1.0, 2.5, 1e15, 1e16, -3.0, math.nan, math.inf, -math.inf, 1e-9, 123456789.0]
    for cycle in range(60):
        fams = []
        for f in range(rng.randint(1, 6)):
            fam = MetricFamily(f"m{f}_total" if f % 2 else f"m{f}", "counter" if f % 2 else "gauge", 'help "x"\\n')
            for i in range(rng.randint(0, 5)):
                labels = (("gpu", str(i)), ("path", rng.choice(['a"b', "c\\d", "e\nf", "plain", "é∂"])))
                fam.samples.append(Sample(fam.name, labels if i % 3 else (), rng.choice(values)))
            fams.append(fam)
        if cycle % 2:  # the second format is cut from the first one's body: both orders
            om = renderer.render(fams, "openmetrics")
            text = renderer.render(fams, "text", om)
            om, text = om[0], text[0]
        else:
            text = renderer.render(fams, "text")
            om = renderer.render(fams, "openmetrics", text)
            text, om = text[0], om[0]
        assert (text, om) == render_both(fams), f"cycle {cycle}"
        if cycle % 5 == 0:  # another snapshot rendered between a body and the other format cut from it
            late = renderer.render(fams, "text")
            renderer.render([MetricFamily(f.name, f.type, f.help + "?", f.samples[:1]) for f in fams], "openmetrics")
            assert renderer.render(fams, "openmetrics", late)[0] == om, f"cycle {cycle}"
    assert sum(len(b.lines) for b in renderer._blocks.values()) <= 6 * 5, "only the last render's series are remembered"


def test_label_values_round_trip_through_render_and_parse_escapes_and_all():
    """Fuzz: values with quotes, backslashes, newlines, braces and commas, before and after an
    escape, survive render then parse (the parser's no-escape fast path and its escape loop)."""
    import random

    from agent.expfmt import parse_text
    from agent.expfmt.render import render_both

    rng = random.Random(11)
    alphabet = ['a', 'b', '"', '\\', '\n', '{', '}', ',', '=', ' ', 'é', '/', '.']
    for case in range(2000):
        labels = tuple((f"l{i}", "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))))
                       for i in range(rng.randint(1, 4)))
        fam = MetricFamily("m", "gauge", "h", [Sample("m", labels, float(case))])
        parsed = parse_text(render_both([fam])[0].decode())
        assert not parsed.errors, (labels, parsed.errors)
        assert parsed.families[0].samples[0].labels == labels, case
