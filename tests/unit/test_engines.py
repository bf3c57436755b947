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


def test_every_default_rule_has_its_inputs_from_every_engine():
    """A default rule that reads a neutral series finds it whatever engine the server runs."""
    from agent.config import default_config
    from agent.rules.ast import selectors
    from agent.rules.loader import load_rules

    neutral_names = {row.name for row in load_table()}
    read = {sel.name for rule in load_rules(default_config()).alerts for sel, _ in selectors(rule.expr)}
    wanted = read & neutral_names
    assert wanted >= {"llm_agent_requests_running", "llm_agent_requests_waiting"}
    assert not {n for n in read if n.startswith(("llamacpp:", "vllm:", "sglang:", "tgi_"))}  # no engine's own names
    for fixture in ("llamacpp/metrics.txt", "vllm/metrics.txt", "sglang/metrics.txt", "tgi/metrics.txt"):
        produced = {f.name for f in neutral_families(view_of(fixture, "s"), load_table())}
        assert wanted <= produced, (fixture, wanted - produced)
