"""Engine-neutral series from each engine's fixture (llama.cpp captured; vLLM, SGLang and TGI
written after their documentation): the same names, labels and units for all of them."""

from pathlib import Path

import pytest

from agent.collectors.engines import EngineSeries, load_table, neutral_families, parse_table
from agent.expfmt.parse import parse_text
from agent.model import MetricFamily, Sample, Snapshot, gauge

FIXTURES = Path(__file__).parent.parent / "fixtures"


def view_of(engine_file, server, extra=()):
    fams = []
    for f in parse_text((FIXTURES / engine_file).read_text()).families:
        fams.append(MetricFamily(f.name, f.type, f.help, [Sample(s.name, s.labels + (("server", server),), s.value)
                                                          for s in f.samples]))
    return Snapshot(0.0, tuple(fams) + tuple(extra))


def neutral(view):
    return {(s.name, s.label("engine"), s.label("model"), s.label("le")): s.value
            for f in neutral_families(view, load_table()) for s in f.samples}


def test_llama_cpp():
    info = gauge("llm_agent_target_info", "i").add({"server": "llama", "model": "tiny.gguf"}, 1)
    got = neutral(view_of("llamacpp/metrics.txt", "llama", [info]))
    assert got[("llm_agent_requests_running", "llamacpp", "tiny.gguf", "")] == 0
    assert ("llm_agent_generation_tokens_total", "llamacpp", "tiny.gguf", "") in got
    assert not any(k[0] == "llm_agent_time_to_first_token_seconds" for k in got)  # llama.cpp has no such histogram


def test_vllm_old_names_and_histograms():
    got = neutral(view_of("vllm/metrics.txt", "vllm"))
    model = "meta-llama/Llama-3.1-8B-Instruct"
    assert got[("llm_agent_requests_running", "vllm", model, "")] == 3
    assert got[("llm_agent_requests_waiting", "vllm", model, "")] == 1
    assert got[("llm_agent_kv_cache_usage_ratio", "vllm", model, "")] == 0.4213  # gpu_cache_usage_perc: a ratio
    assert got[("llm_agent_prompt_tokens_total", "vllm", model, "")] == 120034
    assert any(k[0] == "llm_agent_time_to_first_token_seconds_bucket" for k in got)


def test_vllm_current_names_win():
    text = ('# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name="m"} 0.5\n'
            '# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name="m"} 0.9\n')
    view = Snapshot(0.0, tuple(MetricFamily(f.name, f.type, f.help, [Sample(s.name, s.labels + (("server", "v"),), s.value)
                                                                     for s in f.samples])
                               for f in parse_text(text).families))
    assert neutral(view) == {("llm_agent_kv_cache_usage_ratio", "vllm", "m", ""): 0.5}


def test_sglang_sums_tensor_parallel_ranks_and_keeps_the_highest_cache_use():
    got = neutral(view_of("sglang/metrics.txt", "sg"))
    model = "Qwen/Qwen2.5-7B-Instruct"
    assert got[("llm_agent_prompt_tokens_total", "sglang", model, "")] == 102400
    assert got[("llm_agent_kv_cache_usage_ratio", "sglang", model, "")] == 0.33
    assert got[("llm_agent_time_to_first_token_seconds_bucket", "sglang", model, "0.5")] == 90
    assert got[("llm_agent_request_duration_seconds_count", "sglang", model, "")] == 100


def test_tgi_tokens_from_its_histograms_sums():
    got = neutral(view_of("tgi/metrics.txt", "tgi"))
    assert got[("llm_agent_requests_running", "tgi", "", "")] == 8
    assert got[("llm_agent_requests_waiting", "tgi", "", "")] == 3
    assert got[("llm_agent_prompt_tokens_total", "tgi", "", "")] == 123400
    assert got[("llm_agent_generation_tokens_total", "tgi", "", "")] == 45600
    assert got[("llm_agent_inter_token_latency_seconds_bucket", "tgi", "", "0.05")] == 490


def test_every_engine_fills_the_core_series_and_the_families_are_well_formed():
    core = ("llm_agent_requests_running", "llm_agent_requests_waiting", "llm_agent_prompt_tokens_total",
            "llm_agent_generation_tokens_total")
    views = [view_of(f, f.split("/")[0]) for f in ("llamacpp/metrics.txt", "vllm/metrics.txt", "sglang/metrics.txt",
                                                    "tgi/metrics.txt")]
    both = Snapshot(0.0, tuple(f for v in views for f in v.families))
    families = EngineSeries(load_table()).derive(both)
    names = {f.name for f in families}
    assert set(core) <= names
    for f in families:
        assert len({(s.name, s.labels) for s in f.samples}) == len(f.samples)
        assert {s.label("engine") for s in f.samples} <= {"llamacpp", "vllm", "sglang", "tgi"}
    for name in core:
        engines = {s.label("engine") for f in families if f.name == name for s in f.samples}
        assert engines == {"llamacpp", "vllm", "sglang", "tgi"}, name


def test_the_deriver_reads_every_source_family():
    reads = set(EngineSeries(load_table()).reads)
    assert {"vllm:time_to_first_token_seconds", "tgi_request_input_length", "llm_agent_target_info"} <= reads


@pytest.mark.parametrize("text, says", [
    ('[bad]\ntype = "gauge"\n', "llm_agent_"),
    ('[llm_agent_x]\ntype = "summary"\n', "type must be"),
    ('[llm_agent_x]\ntype = "gauge"\nollama = ["x"]\n', "llm_agent_x.ollama"),
])
def test_a_bad_table_row_is_named(text, says):
    with pytest.raises(ValueError, match=says):
        parse_table(text)


def two_cycles(view):
    """What the deriver makes on the second of two cycles 5 s apart (token rates need two)."""
    deriver = EngineSeries(load_table())
    deriver.derive(view)
    return deriver.derive(Snapshot(view.timestamp + 5, view.families))


def test_every_default_rule_has_its_inputs_from_every_engine():
    """A default rule that reads a neutral series (or the token rates worked out from them)
    finds it whatever engine the server runs."""
    from agent.collectors.engines import RATES
    from agent.config import default_config
    from agent.promql.ast import selectors
    from agent.rules.loader import load_rules

    neutral_names = {row.name for row in load_table()} | set(RATES.values())
    read = {sel.name for rule in load_rules(default_config()).alerts for sel, _ in selectors(rule.expr)}
    wanted = read & neutral_names
    assert wanted >= {"llm_agent_requests_running", "llm_agent_requests_waiting", "llm_agent_generation_tokens_per_second"}
    assert not {n for n in read if n.startswith(("llamacpp:", "vllm:", "sglang:", "tgi_"))}  # no engine's own names
    for fixture in ("llamacpp/metrics.txt", "vllm/metrics.txt", "sglang/metrics.txt", "tgi/metrics.txt"):
        produced = {f.name for f in two_cycles(view_of(fixture, "s"))}
        assert wanted <= produced, (fixture, wanted - produced)


def bump(view, name, by):
    """The view 5 s later, with every sample called `name` grown by `by`."""
    return Snapshot(view.timestamp + 5, tuple(
        MetricFamily(f.name, f.type, f.help, [Sample(s.name, s.labels, s.value + by if s.name == name else s.value)
                                              for s in f.samples]) for f in view.families))


def test_token_rates_for_every_engine_from_its_own_counter():
    """TGI's counter is a histogram's _sum sample; SGLang's is split by tensor-parallel rank."""
    for fixture, source in (("tgi/metrics.txt", "tgi_request_generated_tokens_sum"),
                            ("sglang/metrics.txt", "sglang:generation_tokens_total"),
                            ("vllm/metrics.txt", "vllm:generation_tokens_total")):
        deriver = EngineSeries(load_table())
        view = view_of(fixture, "s")
        assert not any(f.name.endswith("_per_second") for f in deriver.derive(view)), "one reading is not a rate"
        ranks = len([s for f in view.families for s in f.samples if s.name == source])
        got = {s.name: s.value for f in deriver.derive(bump(view, source, 50)) for s in f.samples}
        assert got["llm_agent_generation_tokens_per_second"] == pytest.approx(50 * ranks / 5), fixture
        assert got["llm_agent_prompt_tokens_per_second"] == 0


def test_a_routers_models_get_their_own_rates():
    fams = parse_text("# TYPE llamacpp:tokens_predicted_total counter\n"
                      'llamacpp:tokens_predicted_total{server="r",model="a"} 100\n'
                      'llamacpp:tokens_predicted_total{server="r",model="b"} 100\n').families
    deriver = EngineSeries(load_table())
    deriver.derive(Snapshot(0.0, tuple(fams)))
    fams[0].samples[0] = Sample(fams[0].samples[0].name, fams[0].samples[0].labels, 150)
    rates = {s.label("model"): s.value for f in deriver.derive(Snapshot(10.0, tuple(fams))) for s in f.samples
             if s.name == "llm_agent_generation_tokens_per_second"}
    assert rates == {"a": 5.0, "b": 0.0}


def test_liveness_reads_busy_and_progress_from_the_table_for_every_engine():
    """Stall detection (busy, no tokens out) works for TGI too, from the same table rows."""
    from agent.collectors.engines import source_total
    from agent.collectors.openmetrics import BUSY_SOURCES, PROGRESS_SOURCES

    expected = {"llamacpp/metrics.txt": None, "vllm/metrics.txt": 3, "sglang/metrics.txt": None, "tgi/metrics.txt": 8}
    for fixture, busy in expected.items():
        by_name = {f.name: f for f in parse_text((FIXTURES / fixture).read_text()).families}
        if busy is not None:
            assert source_total(by_name, BUSY_SOURCES) == busy, fixture
        assert source_total(by_name, BUSY_SOURCES) is not None and source_total(by_name, PROGRESS_SOURCES) is not None
