"""Health probes: streamed completions (TTFT/TPOT) and the canary."""
