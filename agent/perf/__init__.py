"""Knowing when serving got slower or worse: scheduled benchmarks against a recorded baseline,
a quality set, and anomaly and trend rules over the on-disk history."""
