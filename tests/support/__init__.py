"""Helpers shared by the tests: real peers (llama-server, Prometheus) and fakes (pynvml)."""
