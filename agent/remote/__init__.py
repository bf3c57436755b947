"""Remote write: what the history file holds, pushed to Prometheus-compatible receivers."""
