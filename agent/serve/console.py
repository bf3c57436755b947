"""The console at `/`: one page (console.html, .js, .css in this package, ~25 KB, nothing
fetched from elsewhere) that draws its charts on canvases with its own few lines of script.

The page reads two things: `/api/v1/console` (this module: the latest snapshot as tiles,
the health verdict from serve.health, the firing alerts) and Prometheus' query API for every
chart and sparkline, so what it shows is what Grafana would show from the same history.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

from ..model import Snapshot
from ..verdict import held_text
from .health import gpu_users

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {"/": ("console.html", "text/html; charset=utf-8"), "/console.js": ("console.js", "text/javascript; charset=utf-8"),
         "/console.css": ("console.css", "text/css; charset=utf-8")}
# The page runs only its own script and style, and talks only to this agent.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_cache: Dict[str, bytes] = {}


def asset(path: str) -> Optional[bytes]:
    """The bytes of one of the page's files, read once."""
    entry = FILES.get(path)
    if entry is None:
        return None
    if path not in _cache:
        with open(os.path.join(HERE, entry[0]), "rb") as f:
            _cache[path] = f.read()
    return _cache[path]


def gpu_tiles(snapshot: Snapshot) -> List[dict]:
    tiles = []
    util = snapshot.sum_by("DCGM_FI_DEV_GPU_UTIL", "gpu")
    used = snapshot.sum_by("DCGM_FI_DEV_FB_USED", "gpu")
    free = snapshot.sum_by("DCGM_FI_DEV_FB_FREE", "gpu")
    temp = snapshot.sum_by("DCGM_FI_DEV_GPU_TEMP", "gpu")
    power = snapshot.sum_by("DCGM_FI_DEV_POWER_USAGE", "gpu")
    sm_clock = snapshot.sum_by("DCGM_FI_DEV_SM_CLOCK", "gpu")
    mem_clock = snapshot.sum_by("DCGM_FI_DEV_MEM_CLOCK", "gpu")
    # the kernel log's Xids where it is read, else what NVML's event API counted
    xids = snapshot.sum_by("llm_agent_gpu_xid_events_total", "gpu") or \
        snapshot.sum_by("llm_agent_gpu_nvml_xid_events_total", "gpu")
    reasons: Dict[str, List[str]] = {}
    for s in snapshot.samples("llm_agent_gpu_clock_event_reasons"):
        if s.value:
            reasons.setdefault(s.label("gpu"), []).append(s.label("reason"))
    users = gpu_users(snapshot)
    for s in snapshot.samples("llm_agent_gpu_up"):
        gpu = s.label("gpu")
        tiles.append({"gpu": gpu, "up": bool(s.value), "model": s.label("modelName"), "uuid": s.label("UUID"),
                      "utilisation": util.get(gpu), "memory_used_mib": used.get(gpu),
                      "memory_total_mib": (used[gpu] + free[gpu]) if gpu in used and gpu in free else None,
                      "temperature": temp.get(gpu), "power_watts": power.get(gpu), "sm_clock_mhz": sm_clock.get(gpu),
                      "memory_clock_mhz": mem_clock.get(gpu), "throttle_reasons": sorted(reasons.get(gpu, [])),
                      "xid_events": xids.get(gpu, 0.0), "used_by": users.get(gpu, [])})
    return sorted(tiles, key=lambda t: (len(t["gpu"]), t["gpu"]))


def target_tiles(snapshot: Snapshot, checks: List[dict]) -> List[dict]:
    models = {s.label("server"): s.label("model") for s in snapshot.samples("llm_agent_target_info")}
    tps = snapshot.sum_by("llm_agent_generation_tokens_per_second", "server")
    running = snapshot.sum_by("llm_agent_requests_running", "server")
    deferred = snapshot.sum_by("llm_agent_requests_waiting", "server")
    slots: Dict[str, Dict[str, float]] = {}
    for s in snapshot.samples("llm_agent_target_slots"):
        slots.setdefault(s.label("server"), {})[s.label("state")] = s.value
    flags = {name: snapshot.sum_by(f"llm_agent_target_{name}", "server") for name in ("up", "ready", "hung", "stalled")}
    tiles = []
    for check in checks:
        server = check["target"]
        state = ("hung" if flags["hung"].get(server) else "down" if not flags["up"].get(server)
                 else "stalled" if flags["stalled"].get(server) else "not ready" if flags["ready"].get(server) == 0 else "up")
        tiles.append({"server": server, "state": state, "healthy": check["healthy"], "reasons": check["reasons"],
                      "model": models.get(server, ""), "tokens_per_second": tps.get(server),
                      "requests_running": running.get(server), "requests_deferred": deferred.get(server),
                      "slots": slots.get(server, {})})
    return tiles


def state(snapshot: Optional[Snapshot], health_doc: dict, alerts_doc: dict, hostname: str, interval: float,
          firing: Sequence[dict] = ()) -> dict:
    """Everything the page shows that is not a chart, from the latest snapshot; `firing`: the
    verdict's view of the firing alerts, so a silenced or inhibited one is shown as such."""
    if snapshot is None:
        return {"hostname": hostname, "interval": interval, "health": health_doc, "gpus": [], "targets": [],
                "alerts": [], "cost": {}, "time": None}
    checks = [c for c in health_doc.get("checks", []) if "target" in c]
    cost = {name: s.value for name in ("llm_agent_cost_per_hour", "llm_agent_cost_today", "llm_agent_cost_month_projection",
                                       "llm_agent_cost_month_budget", "llm_agent_cost_per_1k_tokens")
            for s in snapshot.samples(name)[:1]}
    currency = next((s.label("currency") for s in snapshot.samples("llm_agent_cost_per_hour")), "")
    held = {_key(f["labels"]): held_text(f) for f in firing if f.get("silence") or f.get("inhibited_by")}
    alerts = [dict(a, held=held.get(_key(a["labels"]), "")) for a in alerts_doc.get("data", {}).get("alerts", [])]
    alerts.sort(key=lambda a: ({"critical": 0, "warning": 1}.get(a["labels"].get("severity", ""), 2), a.get("activeAt", "")))
    return {"hostname": hostname, "interval": interval, "time": snapshot.timestamp, "health": health_doc,
            "gpus": gpu_tiles(snapshot), "targets": target_tiles(snapshot, checks), "alerts": alerts,
            "cost": {**{k.replace("llm_agent_cost_", ""): v for k, v in cost.items()}, "currency": currency},
            "performance": performance_tiles(snapshot), "energy": energy_rows(snapshot),
            "remote_write": remote_write_rows(snapshot)}


def remote_write_rows(snapshot: Snapshot) -> List[dict]:
    """Each [[remote_write]] endpoint: whether its last send worked, how far behind it is, what it sent."""
    up = snapshot.sum_by("llm_agent_remote_write_up", "remote_name")
    lag = snapshot.sum_by("llm_agent_remote_write_lag_seconds", "remote_name")
    sent = snapshot.sum_by("prometheus_remote_storage_samples_total", "remote_name")
    return [{"name": name, "up": bool(up[name]), "lag_seconds": lag.get(name), "sent": sent.get(name)}
            for name in sorted(up)]


def energy_rows(snapshot: Snapshot) -> List[dict]:
    """Each model's energy per 1,000 tokens over the last minute, in Wh (none while idle or
    where no GPU is read); the page asks the history for today's."""
    return [{"server": s.label("server"), "model": s.label("model"), "wh_per_1k_tokens": s.value * 1000 / 3600}
            for s in snapshot.samples("llm_agent_energy_per_token_joules")]


def _key(labels: dict) -> tuple:
    return tuple(sorted(labels.items()))


def performance_tiles(snapshot: Snapshot) -> List[dict]:
    """Per target: the last benchmark's figures against the baseline (regressions marked, with
    what changed), the quality score against its baseline, and when it last ran."""
    out: Dict[str, dict] = {}
    for s in snapshot.samples("llm_agent_bench_result"):
        tile = out.setdefault(s.label("server"), {"server": s.label("server"), "figures": [], "quality": None})
        tile["figures"].append({"figure": s.label("figure"), "value": s.value, "baseline": None, "slowdown": None})
    for s in snapshot.samples("llm_agent_bench_slowdown_ratio"):
        found = out.get(s.label("server"))
        for fig in found["figures"] if found else []:
            if fig["figure"] == s.label("figure"):
                fig["baseline"], fig["slowdown"] = float(s.label("baseline") or "nan"), s.value
                fig["changed"] = s.label("changed")
    for s in snapshot.samples("llm_agent_bench_last_run_timestamp_seconds"):
        if s.label("server") in out:
            out[s.label("server")]["last_run"] = s.value
    base = {s.label("server"): s.value for s in snapshot.samples("llm_agent_quality_baseline")}
    for s in snapshot.samples("llm_agent_quality_score"):
        tile = out.setdefault(s.label("server"), {"server": s.label("server"), "figures": [], "quality": None})
        tile["quality"] = {"score": s.value, "baseline": base.get(s.label("server"))}
    return [out[k] for k in sorted(out)]
