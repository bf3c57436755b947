"""/healthz for load balancers: 200 with the details when everything this host serves is
healthy, 503 with the reasons when it is degraded (a target down, hung, stalled or failing its
probe; a GPU lost; the agent's own cycles stopping). `?target=NAME` checks one backend.

Built only from the latest Snapshot: answering never touches a target.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .model import Snapshot


def _by_server(snapshot: Snapshot, name: str) -> Dict[str, float]:
    return {s.label("server"): s.value for s in snapshot.samples(name)}


def target_checks(snapshot: Snapshot) -> List[dict]:
    up = _by_server(snapshot, "llm_agent_target_up")
    ready = _by_server(snapshot, "llm_agent_target_ready")
    hung = _by_server(snapshot, "llm_agent_target_hung")
    stalled = _by_server(snapshot, "llm_agent_target_stalled")
    probe = _by_server(snapshot, "llm_agent_probe_success")
    latency = _by_server(snapshot, "llm_agent_target_scrape_duration_seconds")
    checks = []
    for server in sorted(up):
        reasons = []
        if hung.get(server):
            reasons.append("hung: alive but not answering")
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


def health(snapshot: Optional[Snapshot], now: float, interval: float, target: str = "") -> Tuple[int, dict]:
    """(HTTP status, JSON document)."""
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
