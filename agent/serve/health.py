"""Health, worked out once from a Snapshot and used by both /healthz and `llm-agent check`.

- `target_checks` and `gpu_checks`: is each target and GPU healthy, and if not, why (down,
  not answering while its process is alive, hung, stalled, not ready, probe failing; lost).
- `health()`: /healthz for load balancers, 200 with the details when everything this host
  serves is healthy, 503 with the reasons when it is degraded or in maintenance (`llm-agent
  maintenance`: a load balancer drains the box); `?target=NAME` checks one.
- `rule_findings()`: which of the loaded alert rules hold on the readings right now, so
  `check` judges temperatures, memory and disks with the rules' own thresholds.

Built only from snapshots: answering never touches a target.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..model import Problem, Snapshot
from ..rules.ast import selectors
from ..rules.engine import AnyRule, Engine, InhibitRule, Rule
from ..rules.history import History


def _by_server(snapshot: Snapshot, name: str) -> Dict[str, float]:
    return {s.label("server"): s.value for s in snapshot.samples(name)}


def target_checks(snapshot: Snapshot) -> List[dict]:
    up = _by_server(snapshot, "llm_agent_target_up")
    ready = _by_server(snapshot, "llm_agent_target_ready")
    hung = _by_server(snapshot, "llm_agent_target_hung")
    stalled = _by_server(snapshot, "llm_agent_target_stalled")
    probe = _by_server(snapshot, "llm_agent_probe_success")
    found = _by_server(snapshot, "llm_agent_target_process_found")
    latency = _by_server(snapshot, "llm_agent_target_scrape_duration_seconds")
    checks = []
    for server in sorted(up):
        reasons = []
        if hung.get(server):
            reasons.append("hung: alive but not answering")
        elif not up[server] and found.get(server):
            reasons.append("not answering: its process is alive (stopped, hung or overloaded)")
        elif not up[server]:
            reasons.append("down: not answering")
        elif ready.get(server) == 0:
            reasons.append("not ready (loading or failing /health)")
        if stalled.get(server):
            reasons.append("stalled: requests in progress, no tokens")
        if probe.get(server) == 0:
            reasons.append("completion probe failing")
        checks.append({"name": f"target:{server}", "target": server, "healthy": not reasons, "reasons": reasons,
                       "latency_seconds": round(latency.get(server, 0.0), 6)})
    return checks


def gpu_checks(snapshot: Snapshot) -> List[dict]:
    return [{"name": f"gpu:{s.label('gpu')}", "healthy": bool(s.value), "uuid": s.label("UUID"),
             "reasons": [] if s.value else ["GPU lost or broken"]} for s in snapshot.samples("llm_agent_gpu_up")]


def health(snapshot: Optional[Snapshot], now: float, interval: float, target: str = "",
           maintenance: Sequence[dict] = ()) -> Tuple[int, dict]:
    """(HTTP status, JSON document). `maintenance`: active windows (target "" is the host)."""
    windows = [w for w in maintenance if not w["target"] or w["target"] == target]
    if windows:
        reasons = [f"maintenance{' of ' + w['target'] if w['target'] else ''} until "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(w['until']))}: {w['comment']}" for w in windows]
        return 503, {"status": "maintenance", "reasons": reasons, "checks": [],
                     "maintenance": [dict(w) for w in windows]}
    if snapshot is None:
        return 503, {"status": "starting", "reasons": ["no cycle completed yet"], "checks": []}
    age = now - snapshot.timestamp
    agent = {"name": "agent", "healthy": age <= 3 * interval + 10, "reasons": [] if age <= 3 * interval + 10
             else [f"no collection cycle for {age:.0f}s"], "last_cycle_age_seconds": round(age, 3)}
    targets = target_checks(snapshot)
    if target:
        targets = [c for c in targets if c["target"] == target]
        if not targets:
            return 404, {"status": "unknown", "reasons": [f"no target named {target!r}"], "checks": [agent]}
        checks = [agent] + targets
    else:
        checks = [agent] + targets + gpu_checks(snapshot)
    reasons = [f"{c['name']}: {r}" for c in checks for r in c["reasons"]]
    doc = {"status": "ok" if not reasons else "degraded", "reasons": reasons, "checks": checks}
    return (200 if not reasons else 503), doc


def rule_findings(rules: Sequence[AnyRule], inhibit: Sequence[InhibitRule], snapshots: Sequence[Snapshot],
                  covered: Sequence[str] = ()) -> List[Problem]:
    """The rules whose condition holds on the last of `snapshots`, as problems with the rule's
    severity and summary. `for` is not waited for but said. A rule over a range (rate over 5
    minutes, an average over 30) cannot be judged from a pass of a second or two and is left
    to the running agent; so are subjects in `covered` (already reported, with a fix)."""
    # recording rules stay: an alert rule may read what they record
    rules = [r for r in rules if all(rng == 0 for _, rng in selectors(r.expr))]
    history = History()
    engine = Engine(rules, history, inhibit)
    for snap in snapshots:
        history.ingest(snap)
        engine.evaluate(snap.timestamp)
    found = []
    by_key = {r.key: r for r in rules}
    for alert in engine.active():
        labels = alert.labels
        subject = (f"target {labels['server']}" if "server" in labels else f"gpu {labels['gpu']}" if "gpu" in labels
                   else "host" if any(k in labels for k in ("mountpoint", "cpu")) or labels["alertname"].startswith("Host")
                   else "agent")
        if subject in covered:
            continue
        rule = by_key[alert.rule]
        name = labels["alertname"]
        message = alert.annotations.get("summary") or name
        if isinstance(rule, Rule) and rule.for_ > 0:
            message += f" (alert {name} fires if this lasts {rule.for_:g}s)"
        else:
            message += f" (alert {name})"
        found.append(Problem(labels.get("severity", "warning"), subject, message,
                             alert.annotations.get("description", "")[:300]))
    return found
