"""What the agent serves on :9400: `exporter.py` (the HTTP server and its endpoints: /metrics
from cached bytes, /healthz, /api/v1/alerts), `health.py` (the health verdicts /healthz and
`check` share), `websecurity.py` (TLS and basic auth)."""
