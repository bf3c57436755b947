"""The series Prometheus writes for every target it scrapes (`up`, `scrape_duration_seconds`,
`scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`), made from the agent's own
per-target series, for its rules and its history only: so `up == 0`, and every dashboard and
rule file written for Prometheus, work unchanged against the agent's query API.

Never on /metrics: the Prometheus that scrapes the agent writes its own `up` for the agent,
and an exported one would collide with it (targets may not send these names either:
collectors/sanitize.py).
"""

from __future__ import annotations

from typing import List

from .model import MetricFamily, Snapshot, gauge

# Prometheus' name <- the agent's per-target series it is made from
FROM = (("up", "llm_agent_target_up", "1 if the target answered its last scrape, 0 if not (Prometheus' own)."),
        ("scrape_duration_seconds", "llm_agent_target_scrape_duration_seconds", "How long the last scrape took."),
        ("scrape_samples_scraped", "llm_agent_target_scrape_samples_scraped", "Samples the target exposed."),
        ("scrape_samples_post_metric_relabeling", "llm_agent_target_scrape_samples_kept",
         "Samples left after the agent dropped what would break its exposition."))


def scrape_series(snapshot: Snapshot) -> List[MetricFamily]:
    out = []
    for name, source, help_text in FROM:
        fam = gauge(name, help_text)
        for s in snapshot.samples(source):
            fam.add({k: v for k, v in s.labels if k != "kind"}, s.value)
        if fam.samples:
            out.append(fam)
    return out
