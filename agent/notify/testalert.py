"""The test alert `llm-agent test-alert` sends: marked as a test in its name, labels and text."""

from __future__ import annotations

import time
from typing import List

from ..rules.engine import fingerprint
from .base import AlertDoc


def test_docs(hostname: str, resolve: bool = False, now: float = 0.0) -> List[AlertDoc]:
    now = now or time.time()
    labels = {"alertname": "LlmAgentTestAlert", "severity": "info", "Hostname": hostname, "test": "true"}
    annotations = {"summary": f"Test alert from llm-agent on {hostname}: delivery works",
                   "description": "Sent by `llm-agent test-alert`. No action needed."}
    firing = AlertDoc("firing", labels, annotations, now, 0.0, 1.0, fingerprint(labels), test=True)
    if not resolve:
        return [firing]
    return [firing, AlertDoc("resolved", labels, annotations, now, time.time(), 1.0, fingerprint(labels), test=True)]
