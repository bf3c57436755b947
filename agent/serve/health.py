"""Health, worked out once from a Snapshot and used by both /healthz and `llm-agent check`.

- `target_checks` and `gpu_checks`: is each target and GPU healthy, and if not, why (down,
  not answering while its process is alive, hung, stalled, not ready, probe failing; lost).
- `health()`: /healthz, the host's verdict (verdict.py: the same one the console, `check` and
  the report give): 200 while it is ok or warning, 503 when it is critical, in maintenance
  (`llm-agent maintenance`: a load balancer drains the box) or not started; `?target=NAME`
  answers for one target: 200 only while it is up and ready and nothing critical fires for it.
- `rule_findings()`: which of the loaded alert rules hold on the readings right now, so
  `check` judges temperatures, memory and disks with the rules' own thresholds.

Built only from snapshots: answering never touches a target.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..model import Problem, Snapshot
from ..verdict import RANK, SERVING, judge, when
from ..promql.ast import selectors
from ..rules.engine import AnyRule, Engine, InhibitRule, Rule
from ..rules.history import History


FIRING_SHOWN = 100  # firing alerts listed in /healthz (an alert storm is counted, not all listed)


def _by_server(snapshot: Snapshot, name: str) -> Dict[str, float]:
    return {s.label("server"): s.value for s in snapshot.samples(name)}


def target_checks(snapshot: Snapshot) -> List[dict]:
    """Each target's health, from its state (collectors/lifecycle.py) and what it reports:
    severity "critical" for a loss (down after being up, hung, stalled), "warning" for what is
    not yet or not quite serving (never up, restarting, not ready, a failing probe)."""
    up = _by_server(snapshot, "llm_agent_target_up")
    ready = _by_server(snapshot, "llm_agent_target_ready")
    hung = _by_server(snapshot, "llm_agent_target_hung")
    stalled = _by_server(snapshot, "llm_agent_target_stalled")
    probe = _by_server(snapshot, "llm_agent_probe_success")
    found = _by_server(snapshot, "llm_agent_target_process_found")
    latency = _by_server(snapshot, "llm_agent_target_scrape_duration_seconds")
    states = {s.label("server"): s.label("state") for s in snapshot.samples("llm_agent_target_state") if s.value}
    checks = []
    for server in sorted(up):
        reasons: List[Tuple[str, str]] = []
        state = states.get(server, "up" if up[server] else "down")
        if hung.get(server):
            reasons.append(("critical", "hung: alive but not answering"))
        elif not up[server] and found.get(server):
            reasons.append(("critical", "not answering: its process is alive (stopped, hung or overloaded)"))
        elif not up[server] and state == "never_up":
            reasons.append(("warning", "waiting: it has not answered since the agent began watching it"))
        elif not up[server] and state == "restarting":
            reasons.append(("warning", "restarting: systemd stopped or restarted it (pages if not back within "
                                       "[health] restart_grace)"))
        elif not up[server]:
            reasons.append(("critical", "down: not answering"))
        elif ready.get(server) == 0:
            reasons.append(("warning", "not ready (loading or failing /health)"))
        if stalled.get(server):
            reasons.append(("critical", "stalled: requests in progress, no tokens"))
        if probe.get(server) == 0 and up[server]:
            reasons.append(("warning", "completion probe failing"))
        severity = max((sev for sev, _ in reasons), key=RANK.__getitem__, default="ok")
        checks.append({"name": f"target:{server}", "target": server, "healthy": not reasons, "severity": severity,
                       "state": state, "serving": bool(up[server]) and ready.get(server) != 0 and severity != "critical",
                       "reasons": [r for _, r in reasons], "latency_seconds": round(latency.get(server, 0.0), 6)})
    return checks


def gpu_checks(snapshot: Snapshot) -> List[dict]:
    return [{"name": f"gpu:{s.label('gpu')}", "healthy": bool(s.value), "uuid": s.label("UUID"),
             "severity": "ok" if s.value else "critical",
             "reasons": [] if s.value else ["GPU lost or broken"]} for s in snapshot.samples("llm_agent_gpu_up")]


def gpu_users(snapshot: Snapshot) -> Dict[str, List[Dict[str, Any]]]:
    """Per GPU, the targets' models on it (their processes and children): memory and SM use."""
    found: Dict[str, Dict[Tuple[str, str], Dict[str, Any]]] = {}
    for name, key, scale in (("llm_agent_model_gpu_memory_bytes", "memory_mib", 1 / (1 << 20)),
                             ("llm_agent_model_gpu_utilization_percent", "sm_percent", 1.0)):
        for s in snapshot.samples(name):
            if name.endswith("percent") and s.label("engine") != "sm":
                continue
            user = found.setdefault(s.label("gpu"), {}).setdefault(
                (s.label("server"), s.label("model")), {"server": s.label("server"), "model": s.label("model")})
            user[key] = s.value * scale
    return {gpu: sorted(v.values(), key=lambda u: -u.get("memory_mib", 0)) for gpu, v in found.items()}


def agent_check(snapshot: Snapshot, now: float, interval: float) -> dict:
    age = now - snapshot.timestamp
    fresh = age <= 3 * interval + 10
    return {"name": "agent", "healthy": fresh, "severity": "ok" if fresh else "critical",
            "reasons": [] if fresh else [f"no collection cycle for {age:.0f}s"], "last_cycle_age_seconds": round(age, 3)}


def health(snapshot: Optional[Snapshot], now: float, interval: float, target: str = "",
           maintenance: Sequence[dict] = (), alerts: Sequence[dict] = ()) -> Tuple[int, dict]:
    """(HTTP status, JSON document): the host's verdict (verdict.judge) from this snapshot's
    checks, the firing `alerts` and the active `maintenance` windows (target "" is the host).
    `target`: that one target only: 200 while it is up, ready, and nothing critical fires for it."""
    windows = [w for w in maintenance if not w["target"] or w["target"] == target]
    if target and windows:
        reasons = [f"maintenance of {target} until {when(w['until'])}: {w['comment']}" for w in windows]
        return 503, {"status": "maintenance", "reasons": reasons, "checks": [], "maintenance": [dict(w) for w in windows]}
    if snapshot is None:
        v = judge([], started=False)
        return v.http_status, {**v.to_doc(), "checks": [], "maintenance": [dict(w) for w in windows]}
    agent = agent_check(snapshot, now, interval)
    targets = target_checks(snapshot)
    if target:
        mine = [c for c in targets if c["target"] == target]
        if not mine:
            return 404, {"status": "unknown", "reasons": [f"no target named {target!r}"], "checks": [agent]}
        v = judge([agent] + mine, [a for a in alerts if a.get("labels", {}).get("server") == target])
        serving = mine[0]["serving"] and v.status in SERVING
        reasons = v.reasons or ([] if serving else [f"{mine[0]['name']}: {mine[0]['state']}"])
        return (200 if serving else 503), {**v.to_doc(), "status": v.status if serving or v.status != "ok" else "degraded",
                                          "reasons": reasons, "checks": [agent] + mine}
    checks = [agent] + targets + gpu_checks(snapshot)
    v = judge(checks, alerts, maintenance)
    return v.http_status, {**v.to_doc(), "checks": checks, "maintenance": [dict(w) for w in windows],
                           "firing": list(alerts[:FIRING_SHOWN]), "firing_total": len(alerts)}


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
