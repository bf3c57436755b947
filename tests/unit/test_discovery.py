"""Recognising inference servers from command lines."""

import pytest

from agent.discovery import Found, discovered_targets, parse_server_cmdline

CASES = [
    (["/usr/local/bin/llama-server", "-m", "m.gguf", "--port", "8081"], {}, ("llamacpp", "llama-server", "127.0.0.1", 8081)),
    (["llama-server", "-m", "m.gguf", "--host", "0.0.0.0"], {}, ("llamacpp", "llama-server", "127.0.0.1", 8080)),
    (["llama-server", "-m", "m.gguf"], {"LLAMA_ARG_PORT": "9090", "LLAMA_ARG_HOST": "10.0.0.5"},
     ("llamacpp", "llama-server", "10.0.0.5", 9090)),
    (["llama-server", "--port=7000"], {}, ("llamacpp", "llama-server", "127.0.0.1", 7000)),
    (["/opt/venv/bin/python3", "/opt/venv/bin/vllm", "serve", "meta-llama/x", "--port", "8001"], {},
     ("openmetrics", "vllm", "127.0.0.1", 8001)),
    (["vllm", "serve", "model"], {}, ("openmetrics", "vllm", "127.0.0.1", 8000)),
    (["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "x"], {}, ("openmetrics", "vllm", "127.0.0.1", 8000)),
    (["python3", "-m", "sglang.launch_server", "--model-path", "x", "--port", "30001"], {},
     ("openmetrics", "sglang", "127.0.0.1", 30001)),
    (["text-generation-launcher", "--model-id", "x", "--port", "8090"], {}, ("openmetrics", "tgi", "127.0.0.1", 8090)),
    (["/usr/local/bin/ollama", "serve"], {}, ("ollama", "ollama", "127.0.0.1", 11434)),
    (["ollama", "serve"], {"OLLAMA_HOST": "0.0.0.0:11500"}, ("ollama", "ollama", "127.0.0.1", 11500)),
    (["ollama", "serve"], {"OLLAMA_HOST": "http://10.0.0.7:11434"}, ("ollama", "ollama", "10.0.0.7", 11434)),
    (["ollama", "serve"], {"OLLAMA_HOST": "10.0.0.8"}, ("ollama", "ollama", "10.0.0.8", 11434)),
]


@pytest.mark.parametrize("argv,env,expected", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_recognised(argv, env, expected):
    f = parse_server_cmdline(argv, env)
    assert (f.kind, f.flavour, f.host, f.port) == expected


@pytest.mark.parametrize("argv", [[], ["bash"], ["python3", "app.py"], ["llama-cli", "-m", "x"], ["ollama", "run", "llama3"],
                                  ["llama-server", "--host", "/run/llama.sock"]])
def test_not_servers(argv):
    assert parse_server_cmdline(argv) is None


def test_targets_from_found_and_fallback():
    found = [Found("llamacpp", "llama-server", "127.0.0.1", 8080, 10), Found("llamacpp", "llama-server", "127.0.0.1", 8080, 11),
             Found("openmetrics", "vllm", "127.0.0.1", 8000, 12)]
    targets = discovered_targets(found, "http://127.0.0.1:8080")
    assert [(t.name, t.url, t.kind) for t in targets] == [("vllm-8000", "http://127.0.0.1:8000", "openmetrics"),
                                                          ("llama-server-8080", "http://127.0.0.1:8080", "llamacpp")]
    fallback = discovered_targets([], "http://127.0.0.1:8080")
    assert [(t.name, t.url) for t in fallback] == [("llama-server-8080", "http://127.0.0.1:8080")]
