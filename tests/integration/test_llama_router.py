"""llama-server in router mode (`--models-dir`), real, serving two tiny generated models: the
agent lists them, reads only the loaded one (asking for another would load it), labels its
series with `model`, probes only a loaded model, and counts loads."""

import os
import time

import pytest
import requests

from tests.support.peers import LlamaServer, wait_until
from tests.support.tinymodel import write_tiny_llama


@pytest.fixture
def router(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("alpha", "beta"):
        write_tiny_llama(str(models / f"{name}.gguf"))
    server = LlamaServer("", models_dir=str(models), log_dir=str(tmp_path)).start()
    yield server
    server.kill()


def states(server):
    return {m["id"]: m["status"]["value"] for m in requests.get(server.url + "/models", timeout=5).json()["data"]}


def chat(server, model):
    r = requests.post(server.url + "/v1/chat/completions", timeout=60,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    r.raise_for_status()


def test_router_mode(serving, router):
    config = ('[agent]\ninterval = "300ms"\n[discovery]\nenabled = false\n[collectors.nvml]\nenabled = false\n'
              f'[probes]\ninterval = "1s"\n[[targets]]\nname = "router"\nurl = "{router.url}"\n')
    running = serving(config)
    wait_until(lambda: running.value("llm_agent_model_loaded", model="beta") is not None, 10, what="the model list")
    time.sleep(2.5)  # cycles and two probe periods with nothing loaded
    assert running.value("llm_agent_model_loaded", model="alpha") == 0
    assert states(router) == {"alpha": "unloaded", "beta": "unloaded"}  # looking loaded nothing
    errors = running.agent.snapshot.samples("llm_agent_probe_errors_total")
    assert sum(s.value for s in errors) == 0  # nothing to probe is no failure

    chat(router, "alpha")  # a user loads alpha
    wait_until(lambda: running.value("llm_agent_model_loaded", model="alpha") == 1, 10, what="alpha loaded")
    wait_until(lambda: running.value("llamacpp:prompt_tokens_total", model="alpha") is not None, 10,
               what="alpha's own metrics, labelled")
    wait_until(lambda: running.value("llm_agent_probe_success", server="router") == 1, 15, what="a probe of alpha")
    assert running.value("llm_agent_target_slots", model="alpha", state="idle") is not None
    assert running.value("llm_agent_model_loads_total", model="alpha") == 1
    assert running.value("llm_agent_requests_running", model="alpha") is not None  # the neutral series follow
    wait_until(lambda: running.value("llm_agent_generation_tokens_per_second", model="alpha", engine="llamacpp")
               is not None, 10, what="alpha's own token rate")
    assert states(router)["beta"] == "unloaded"  # the agent never asked beta anything

    chat(router, "beta")  # --models-max 1: alpha makes room
    wait_until(lambda: running.value("llm_agent_model_loaded", model="beta") == 1
               and running.value("llm_agent_model_loaded", model="alpha") == 0, 15, what="beta in, alpha out")
    assert running.value("llm_agent_model_loads_total", model="beta") == 1
    assert running.value("llm_agent_model_unloads_total", model="alpha") == 1


def test_a_configured_model_is_not_loaded_by_the_probe(router):
    from agent.probes.completion import ProbeSpec, run_probe

    chat(router, "alpha")
    skipped = run_probe(ProbeSpec(router.url, model="beta", timeout=20))
    assert skipped.error == "skipped" and states(router)["beta"] == "unloaded"
    probed = run_probe(ProbeSpec(router.url, model="alpha", timeout=20))
    assert probed.success
    assert os.path.exists(router.log_path)
