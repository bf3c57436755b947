"""A vLLM-sized /metrics body for the scaling benchmark: vLLM V1's metric names and bucket
layouts (as in tests/fixtures/vllm, which holds a small real capture), for one model served
with data parallelism, each engine rank labelled `engine` as vLLM labels them. Eight ranks give
about 2,000 series, what a busy vLLM host exposes."""

from typing import List

MODEL = "meta-llama/Llama-3.1-70B-Instruct"
LATENCY = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
REQUEST = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0]
TOKENS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]

HISTOGRAMS = [
    ("vllm:time_to_first_token_seconds", LATENCY), ("vllm:inter_token_latency_seconds", LATENCY),
    ("vllm:time_per_output_token_seconds", LATENCY), ("vllm:e2e_request_latency_seconds", REQUEST),
    ("vllm:request_queue_time_seconds", REQUEST), ("vllm:request_inference_time_seconds", REQUEST),
    ("vllm:request_prefill_time_seconds", REQUEST), ("vllm:request_decode_time_seconds", REQUEST),
    ("vllm:request_prompt_tokens", TOKENS), ("vllm:request_generation_tokens", TOKENS),
    ("vllm:iteration_tokens_total", TOKENS), ("vllm:request_params_max_tokens", TOKENS),
]
GAUGES = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
          "vllm:lora_requests_info"]
COUNTERS = ["vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:num_preemptions_total",
            "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"]


def vllm_body(engines: int = 8, tick: int = 0) -> str:
    """The body; `tick` moves the counters and histograms as a serving engine's would."""
    lines: List[str] = []
    for name in GAUGES:
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{engine="{e}",model_name="{MODEL}"}} {(e + tick) % 7}' for e in range(engines)]
    for name in COUNTERS:
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} counter"]
        lines += [f'{name}{{engine="{e}",model_name="{MODEL}"}} {1000 * (e + 1) + 37 * tick}.0' for e in range(engines)]
    lines += ["# HELP vllm:request_success_total Finished requests.", "# TYPE vllm:request_success_total counter"]
    for e in range(engines):
        for reason in ("stop", "length", "abort", "error"):
            lines.append(f'vllm:request_success_total{{engine="{e}",finished_reason="{reason}",model_name="{MODEL}"}} '
                         f'{100 + tick}.0')
    for name, buckets in HISTOGRAMS:
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} histogram"]
        for e in range(engines):
            lbl = f'engine="{e}",model_name="{MODEL}"'
            n = 0
            for i, le in enumerate(buckets):
                n += i + tick
                lines.append(f'{name}_bucket{{{lbl},le="{le}"}} {n}.0')
            lines.append(f'{name}_bucket{{{lbl},le="+Inf"}} {n}.0')
            lines.append(f"{name}_count{{{lbl}}} {n}.0")
            lines.append(f"{name}_sum{{{lbl}}} {n * 0.37:.3f}")
    return "\n".join(lines) + "\n"


def series_count(body: str) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))
