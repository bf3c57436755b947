"""Ollama: the parsers on documented bodies, the collector and the probe against a local server
that answers as Ollama's API documentation says (tests/support/ollama.py), and an agent with
an Ollama target."""

import json
from pathlib import Path

import pytest
import requests

from agent.collectors.ollama import OllamaCollector, parse_ps, parse_time, parse_version
from agent.config import TargetConfig
from agent.probes.completion import ProbeSpec, parse_ollama_line, run_probe
from tests.support.ollama import FakeOllama
from tests.support.peers import free_port, wait_until

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ollama"


@pytest.fixture
def ollama():
    server = FakeOllama()
    yield server
    server.close()


def test_parsers_on_documented_bodies():
    assert parse_version(json.loads((FIXTURES / "version.json").read_text())) == "0.5.7"
    models = parse_ps(json.loads((FIXTURES / "ps.json").read_text()))
    assert [m.name for m in models] == ["llama3.2:3b", "qwen2.5:14b"]
    assert models[1].size_vram / models[1].size == pytest.approx(0.8)
    assert models[0].expires_at == pytest.approx(parse_time("2026-11-25T10:04:07.123456Z"))
    assert models[1].expires_at == pytest.approx(parse_time("2026-11-25T09:09:00.5Z"))
    assert models[0].quantization == "Q4_K_M" and models[0].parameters == "3.2B"
    assert parse_ps({"models": []}) == [] and parse_time("0001-01-01T00:00:00Z") is None
    for bad in ([], {"models": "x"}, {"models": [1]}, {"models": [{"size": 1}]}):
        with pytest.raises(ValueError):
            parse_ps(bad)
    with pytest.raises(ValueError):
        parse_version({"v": 1})


def test_the_stream_parser_reads_ollamas_own_timings():
    lines = (FIXTURES / "chat_stream.ndjson").read_text().splitlines()
    assert parse_ollama_line(lines[0])[:2] == ("O", False)
    text, done, count, timings = parse_ollama_line(lines[-1])
    assert done and count == 3
    assert timings == {"load_duration": 0.002, "prompt_eval_duration": 0.048, "eval_duration": 0.06,
                       "total_duration": 0.16}
    with pytest.raises(ValueError):
        parse_ollama_line('{"error": "model \\"x\\" not found"}')


def test_the_collector_reports_loaded_models_memory_and_unload(ollama):
    collector = OllamaCollector(TargetConfig(name="ollama", url=ollama.url, kind="ollama"))
    fams = {f.name: f for f in collector.collect()}
    assert fams["llm_agent_target_up"].samples[0].value == 1
    assert fams["llm_agent_target_ready"].samples[0].value == 1
    assert {s.label("model") for s in fams["llm_agent_model_loaded"].samples} == {"llama3.2:3b", "qwen2.5:14b"}
    gpu = {s.label("model"): s.value for s in fams["llm_agent_model_memory_bytes"].samples if s.label("where") == "gpu"}
    assert gpu == {"llama3.2:3b": 3852000000, "qwen2.5:14b": 8400000000}
    assert {s.label("build") for s in fams["llm_agent_target_info"].samples} == {"0.5.7"}
    assert any("partly in CPU memory" in p.message for p in collector.problems)
    assert not ollama.chats  # looking loads nothing
    gone = OllamaCollector(TargetConfig(name="ollama", url=f"http://127.0.0.1:{free_port()}", kind="ollama"))
    down = {f.name: f for f in gone.collect()}
    assert down["llm_agent_target_up"].samples[0].value == 0 and "llm_agent_model_loaded" not in down


def test_the_probe_uses_a_loaded_model_and_ollamas_timings(ollama):
    result = run_probe(ProbeSpec(ollama.url, api="ollama", max_tokens=8, timeout=5))
    assert result.success and result.text == "OK."
    assert ollama.chats[0]["model"] == "llama3.2:3b" and ollama.chats[0]["options"]["num_predict"] == 8
    assert ollama.chats[0]["options"]["temperature"] == 0 and ollama.chats[0]["stream"] is True
    assert result.ttft == pytest.approx(0.002 + 0.048) and result.tpot == pytest.approx(0.02) and result.tokens == 3


def test_no_model_loaded_skips_the_probe_rather_than_loading_one():
    server = FakeOllama(loaded=False)
    try:
        result = run_probe(ProbeSpec(server.url, api="ollama", timeout=5))
        assert result.error == "skipped" and server.chats == []
    finally:
        server.close()


def test_an_agent_with_an_ollama_target(serving, ollama):
    config = ('[agent]\ninterval = "300ms"\n[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n'
              f'[probes]\ninterval = "1s"\n[[targets]]\nname = "ollama"\nurl = "{ollama.url}"\nkind = "ollama"\n')
    running = serving(config)
    wait_until(lambda: running.value("llm_agent_probe_ttft_seconds_count", server="ollama"), 10, what="a probe")
    assert running.value("llm_agent_model_loaded", model="qwen2.5:14b") == 1
    assert running.value("llm_agent_probe_success", server="ollama") == 1
    body = requests.get(f"http://127.0.0.1:{running.port}/metrics", timeout=5).text
    assert 'llm_agent_target_up{server="ollama"' in body and "llm_agent_probe_tpot_seconds_bucket" in body


def test_a_configured_model_is_probed_only_while_loaded_unless_allowed(ollama):
    loaded = run_probe(ProbeSpec(ollama.url, api="ollama", model="qwen2.5:14b", timeout=5))
    assert loaded.success and ollama.chats[-1]["model"] == "qwen2.5:14b"
    asked = len(ollama.chats)
    skipped = run_probe(ProbeSpec(ollama.url, api="ollama", model="mistral:7b", timeout=5))
    assert skipped.error == "skipped" and "mistral:7b" in skipped.detail and len(ollama.chats) == asked
    allowed = run_probe(ProbeSpec(ollama.url, api="ollama", model="mistral:7b", timeout=5, only_loaded=False))
    assert allowed.success and ollama.chats[-1]["model"] == "mistral:7b"


def test_the_agents_own_series_from_a_hostile_ollama_are_bounded(ollama):
    """Issue 27: /api/ps with 80,000 models made 400,000 series and 620 MB; a 5 MB model name
    became 8 lines of 5 MB on /metrics. The agent's own families made from a target's strings go
    through the target's limits, counted in llm_agent_target_series_dropped_total."""
    import json

    models = [{"name": f"m{i}", "size": 10, "size_vram": 5, "details": {}} for i in range(80_000)]
    models.insert(0, {"name": "x" * (5 << 20), "size": 10, "size_vram": 10, "details": {}})
    ollama.ps_body = json.dumps({"models": models}).encode()
    collector = OllamaCollector(TargetConfig(name="ollama", url=ollama.url, kind="ollama", sample_limit=50_000))
    fams = collector.collect()
    own = [s for f in fams if f.name.startswith("llm_agent_model") or f.name == "llm_agent_target_info" for s in f.samples]
    assert len(own) <= 50_000
    assert all(len(v) <= 4096 for s in own for _, v in s.labels)
    dropped = {s.label("reason"): s.value for f in fams if f.name == "llm_agent_target_series_dropped_total"
               for s in f.samples}
    assert dropped["label_value_length_limit"] >= 4 and dropped["sample_limit"] > 200_000
    assert max(len(p.message) for p in collector.problems) < 2000, "a problem names a few models, shortened"
