"""`llm-agent check`: one pass over everything, read back as a report for a person or a script.

The report is built only from snapshots (the same ones /metrics would serve): the health of
each target and GPU as /healthz sees it (health.py), and what the alert rules say of the
readings, with the thresholds the alerts use; exit status 0 = all good, 1 = warnings,
2 = critical.
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .serve.health import gpu_checks, gpu_users, target_checks
from .model import SEVERITY_RANK, Problem, Snapshot
from .verdict import Verdict, alert_title, held_text, judge
from .apiclient import ApiError, call, local_url

GIB = 1 << 30


def gpu_rows(snapshot: Snapshot) -> List[Dict[str, Any]]:
    """One dict per GPU from the dcgm-named families."""
    rows = []
    fields = {"util_percent": "DCGM_FI_DEV_GPU_UTIL", "fb_used_mib": "DCGM_FI_DEV_FB_USED",
              "fb_total_mib": "DCGM_FI_DEV_FB_TOTAL", "temp_c": "DCGM_FI_DEV_GPU_TEMP",
              "power_w": "DCGM_FI_DEV_POWER_USAGE", "power_limit_w": "DCGM_FI_DEV_POWER_MGMT_LIMIT",
              "last_xid": "DCGM_FI_DEV_XID_ERRORS", "row_remap_failure": "DCGM_FI_DEV_ROW_REMAP_FAILURE",
              "row_remap_pending": "DCGM_FI_DEV_ROW_REMAP_PENDING", "dbe_volatile": "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"}
    values = {key: snapshot.sum_by(name, "gpu") for key, name in fields.items()}
    xids, users = _recent_xids(snapshot), gpu_users(snapshot)
    for s in snapshot.samples("llm_agent_gpu_up"):
        gpu = s.label("gpu")
        row: Dict[str, Any] = {"gpu": int(gpu), "uuid": s.label("UUID"), "model": s.label("modelName"),
                               "up": bool(s.value)}
        row.update({key: v[gpu] for key, v in values.items() if gpu in v})
        row["xids"] = xids.get(gpu, [])
        row["used_by"] = users.get(gpu, [])
        rows.append(row)
    return rows


def _recent_xids(snapshot: Snapshot) -> Dict[str, List[Dict[str, Any]]]:
    """Per GPU, the Xids the kernel log holds, with NVIDIA's meaning and the action each calls for."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for s in snapshot.samples("llm_agent_gpu_xid_events_total"):
        out.setdefault(s.label("gpu"), []).append({"xid": int(s.label("xid")), "count": int(s.value),
                                                   "pci_bus_id": s.label("pci_bus_id"),
                                                   "name": s.label("name"), "meaning": s.label("meaning"),
                                                   "action": s.label("action"), "severity": s.label("severity")})
    return {gpu: sorted(v, key=lambda x: x["xid"]) for gpu, v in out.items()}


def target_rows(snapshot: Snapshot) -> List[Dict[str, Any]]:
    """One dict per target from the llm_agent_target_* families."""
    ready = snapshot.sum_by("llm_agent_target_ready", "server")
    metrics = snapshot.sum_by("llm_agent_target_metrics_enabled", "server")
    gen = snapshot.sum_by("llm_agent_generation_tokens_per_second", "server")
    ctx = snapshot.sum_by("llm_agent_target_context_tokens", "server")
    models = {s.label("server"): s.label("model") for s in snapshot.samples("llm_agent_target_info")}
    probe_ok = snapshot.sum_by("llm_agent_probe_success", "server")
    ttft_sum = snapshot.sum_by("llm_agent_probe_ttft_seconds_sum", "server")
    ttft_count = snapshot.sum_by("llm_agent_probe_ttft_seconds_count", "server")
    hung = snapshot.sum_by("llm_agent_target_hung", "server")
    found = snapshot.sum_by("llm_agent_target_process_found", "server")
    health_by_target = {c["target"]: c for c in target_checks(snapshot)}
    stalled = snapshot.sum_by("llm_agent_target_stalled", "server")
    slots: Dict[str, Dict[str, float]] = {}
    for s in snapshot.samples("llm_agent_target_slots"):
        slots.setdefault(s.label("server"), {})[s.label("state")] = s.value
    rows = []
    for s in snapshot.samples("llm_agent_target_up"):
        name = s.label("server")
        row: Dict[str, Any] = {"name": name, "kind": s.label("kind"), "up": bool(s.value)}
        for key, table in (("ready", ready), ("metrics_enabled", metrics)):
            if name in table:
                row[key] = bool(table[name])
        for key, table in (("generation_tokens_per_second", gen), ("context_tokens", ctx), ("model", models)):  # type: ignore[assignment]
            if name in table:
                row[key] = table[name]
        if name in slots:
            row["slots_busy"], row["slots_idle"] = int(slots[name].get("busy", 0)), int(slots[name].get("idle", 0))
        if name in probe_ok:
            row["probe_ok"] = bool(probe_ok[name])
        if ttft_count.get(name):
            row["probe_ttft_seconds_mean"] = ttft_sum[name] / ttft_count[name]
        row["hung"], row["stalled"] = bool(hung.get(name)), bool(stalled.get(name))
        if name in found:
            row["process_found"] = bool(found[name])
        check = health_by_target.get(name, {})
        row["health"] = check.get("reasons", [])  # the reasons /healthz gives, the same words
        row["severity"], row["state"] = check.get("severity", "ok"), check.get("state", "")
        rows.append(row)
    return rows


def host_summary(snapshot: Snapshot) -> Dict[str, Any]:
    """CPU count, load, memory and the fullest filesystems."""
    cpus = {s.label("cpu") for s in snapshot.samples("node_cpu_seconds_total")}
    out: Dict[str, Any] = {"cpus": len(cpus)} if cpus else {}
    for key, name in (("load1", "node_load1"), ("memory_total_bytes", "node_memory_MemTotal_bytes"),
                      ("memory_available_bytes", "node_memory_MemAvailable_bytes")):
        value = snapshot.value(name)
        if value is not None:
            out[key] = value
    sizes = {s.label("mountpoint"): s.value for s in snapshot.samples("node_filesystem_size_bytes")}
    free = {s.label("mountpoint"): s.value for s in snapshot.samples("node_filesystem_free_bytes")}
    avail = {s.label("mountpoint"): s.value for s in snapshot.samples("node_filesystem_avail_bytes")}
    out["filesystems"] = [{"mountpoint": m, "used_percent": used}
                          for m, size in sorted(sizes.items())
                          for used in [df_used_percent(size, free.get(m), avail.get(m))] if used is not None]
    return out


def df_used_percent(size: float, free: Optional[float], avail: Optional[float]) -> Optional[float]:
    """Use% as df prints it: used over what users can have (used + available), so the blocks
    reserved for root count neither as used nor as free (1 - avail/size counts them as used: 69%
    on a disk df calls 25% full)."""
    if free is None or avail is None or size <= 0:
        return None
    used = size - free
    return round(100 * used / (used + avail), 1) if used + avail > 0 else 0.0


def build_report(snapshot: Snapshot, hostname: str, config_source: str,
                 findings: Sequence[Problem] = ()) -> Dict[str, Any]:
    """The whole report as plain data (what --json prints). `findings`: what the alert rules
    say of the readings (health.rule_findings), so check and the alerts share thresholds."""
    gpus, targets, host = gpu_rows(snapshot), target_rows(snapshot), host_summary(snapshot)
    problems = list(snapshot.problems) + list(findings)
    if not targets:
        problems.append(Problem("warning", "targets", "no inference server is being watched",
                                "add [[targets]] to the config or enable [discovery]"))
    problems.sort(key=lambda p: -SEVERITY_RANK.get(p.severity, 0))
    # this pass's own verdict; a running agent's replaces it (with_running_agent): one verdict everywhere
    verdict = judge(target_checks(snapshot) + gpu_checks(snapshot), problems=[p.__dict__ for p in problems])
    nvml_up = snapshot.value("llm_agent_nvml_up")
    return {
        "status": verdict.status, "verdict": {**verdict.to_doc(), "source": "this check's pass"},
        "hostname": hostname, "config": config_source, "timestamp": snapshot.timestamp,
        "nvml": None if nvml_up is None else bool(nvml_up), "gpus": gpus, "targets": targets, "host": host,
        "xids_of_unlisted_gpus": _recent_xids(snapshot).get("", []),  # a GPU that fell off the bus
        "problems": [p.__dict__ for p in problems],
        "collectors": [{"name": c.name, "success": c.success, "duration_seconds": round(c.duration, 4),
                        "error": c.error} for c in snapshot.collectors],
    }


def _fmt(value: Optional[float], fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def running_agent(listen: Tuple[str, int], tls: bool = False, timeout: float = 1.0) -> Dict[str, Any]:
    """The verdict of the agent running with this config (its /healthz: status, reasons, the
    firing alerts with the silences holding them, maintenance windows)."""
    base = local_url(listen, tls)
    url = base + "/healthz"
    try:
        doc = call(base, "GET", "/healthz", timeout=timeout, accept=(503,))
        status = doc["status"]
    except (ApiError, KeyError, TypeError) as e:
        error = str(e)
        return {"url": url, "error": "no agent is running there" if error.startswith("no agent answers") else error}
    return {"url": url, "status": status, "reasons": doc.get("reasons", []), "held": doc.get("held", []),
            "maintenance": doc.get("maintenance", []), "firing": doc.get("firing", []),
            "firing_total": doc.get("firing_total", len(doc.get("firing", []))),
            "remote_write": _remote_write(base, timeout)}


REMOTE_SERIES = {"llm_agent_remote_write_up": "up", "llm_agent_remote_write_lag_seconds": "lag_seconds",
                 "prometheus_remote_storage_samples_total": "sent", "prometheus_remote_storage_samples_failed_total": "failed"}


def _remote_write(base: str, timeout: float) -> List[Dict[str, Any]]:
    """Each [[remote_write]] endpoint of the running agent, from its own latest samples (its
    query API: remote write needs the history file, so the API is there when it is)."""
    try:
        doc = call(base, "GET", "/api/v1/query?query=" + quote("{__name__=~\"" + "|".join(REMOTE_SERIES) + "\"}"),
                   timeout=timeout)
    except ApiError:
        return []
    rows: Dict[str, Dict[str, Any]] = {}
    for r in (doc or {}).get("data", {}).get("result", []):
        row = rows.setdefault(r["metric"].get("remote_name", "?"), {"name": r["metric"].get("remote_name", "?")})
        row[REMOTE_SERIES.get(r["metric"].get("__name__", ""), "?")] = float(r["value"][1])
    return [rows[name] for name in sorted(rows)]


def with_running_agent(report: Dict[str, Any], running: Dict[str, Any]) -> Dict[str, Any]:
    """The running agent's verdict is the host's (its cycles, its alerts, its silences); this
    pass's problems stay in the report as what check saw."""
    report["running_agent"] = running
    if "error" not in running:
        report["status"] = running["status"]
        report["verdict"] = {"status": running["status"], "reasons": running["reasons"], "held": running["held"],
                             "source": "the running agent"}
    return report


def exit_code(report: Dict[str, Any]) -> int:
    return Verdict(report["status"]).exit_code


Tag = Callable[[str], str]


def render_report(r: Dict[str, Any], color: bool = False) -> str:
    """A one-screen text report: the banner, each section, the verdict."""
    paint = {"critical": "\033[31m", "warning": "\033[33m", "ok": "\033[32m", "info": "\033[36m"} if color else {}
    reset = "\033[0m" if color else ""

    def tag(sev: str) -> str:
        return f"{paint.get(sev, '')}{sev.upper()}{reset}"

    lines = [f"llm-agent check on {r['hostname']} (config: {r['config']})"]
    lines += _banner(r, tag) + _gpu_lines(r, tag) + _target_lines(r, tag) + _host_lines(r["host"])
    lines += _running_lines(r.get("running_agent"), tag) + _problem_lines(r["problems"], tag)
    verdict = r.get("verdict", {})
    lines += ["", f"Status: {tag(r['status'])} (exit {exit_code(r)}; the verdict of {verdict.get('source', 'this pass')})"]
    if verdict.get("source") == "the running agent":
        lines += [f"  {reason}" for reason in verdict.get("reasons", [])[:10]]
    return "\n".join(lines)


def _banner(r: Dict[str, Any], tag: Tag) -> List[str]:
    """A maintenance window's banner: its pages are silenced on purpose."""
    out = []
    for w in (r.get("running_agent") or {}).get("maintenance", []):
        what = f"target {w['target']}" if w["target"] else "the whole host (every alert silenced, /healthz 503)"
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(w["until"])) if isinstance(w["until"], (int, float)) \
            else w["until"]
        out.append(f"{tag('info')} MAINTENANCE of {what} until {until}: {w['comment']}")
    return out


def _gpu_lines(r: Dict[str, Any], tag: Tag) -> List[str]:
    lines = ["", "GPUs"]
    if r["nvml"] is None:
        lines.append("  NVML collector disabled")
    elif not r["gpus"]:
        lines.append("  none found" if r["nvml"] else "  NVML unavailable (see problems)")
    for g in r["gpus"]:
        if not g["up"]:
            lines.append(f"  {g['gpu']}  {g['model'] or '?'}  {tag('critical')}: lost")
            continue
        mem = (f"{g['fb_used_mib'] / 1024:.1f}/{g['fb_total_mib'] / 1024:.1f} GiB"
               if "fb_used_mib" in g and "fb_total_mib" in g else "-")
        lines.append(f"  {g['gpu']}  {g['model']}  util {_fmt(g.get('util_percent'), '.0f', '%')}  mem {mem}  "
                     f"{_fmt(g.get('temp_c'), '.0f', ' C')}  {_fmt(g.get('power_w'), '.0f', ' W')}")
        for u in g.get("used_by", []):  # which model is eating this GPU
            gib = u["memory_mib"] / 1024 if "memory_mib" in u else None
            lines.append(f"      used by {u['server']} ({u['model'] or 'model unknown'}): {_fmt(gib, '.1f', ' GiB')}  "
                         f"SM {_fmt(u.get('sm_percent'), '.0f', '%')}")
        for x in g.get("xids", []):  # what the kernel log holds since boot (or since the agent last read it)
            lines.append(f"      {tag(x['severity'])} Xid {x['xid']} x{x['count']} {x['name']}: {x['meaning']} "
                         f"-> {x['action']}")
    for x in r.get("xids_of_unlisted_gpus", []):
        lines.append(f"  GPU at PCI {x['pci_bus_id']} (not listed by NVML): {tag(x['severity'])} Xid {x['xid']} "
                     f"x{x['count']} {x['name']}: {x['meaning']} -> {x['action']}")
    return lines


def _target_lines(r: Dict[str, Any], tag: Tag) -> List[str]:
    return ["", "Targets"] + ([_target_line(t, tag) for t in r["targets"]] or ["  none"])


def _target_line(t: Dict[str, Any], tag: Tag) -> str:
    reasons = [x for x in t.get("health", []) if not x.startswith(("completion probe", "stalled"))]
    state = "up" if t["up"] else tag(t.get("severity") or "critical") + ": " + (reasons[0] if reasons else "down")
    if t["up"] and "ready" in t:
        state += ", ready" if t["ready"] else ", " + tag("warning") + ": not ready"
    parts = [f"  {t['name']} ({t['kind']})  {state}"]
    if t.get("model"):
        parts.append(f"model {t['model']}")
    if "generation_tokens_per_second" in t:
        parts.append(f"{t['generation_tokens_per_second']:.1f} tokens/s")
    if "slots_busy" in t:
        parts.append(f"slots {t['slots_busy']}/{t['slots_busy'] + t['slots_idle']} busy")
    if "probe_ok" in t:
        ttft = f", TTFT {t['probe_ttft_seconds_mean'] * 1000:.0f} ms" if "probe_ttft_seconds_mean" in t else ""
        parts.append(("probe ok" if t["probe_ok"] else tag("warning") + ": probe failing") + ttft)
    if t.get("hung") or t.get("stalled"):
        parts.append(tag("critical") + (": hung" if t.get("hung") else ": stalled"))
    return "  ".join(parts)


def _host_lines(h: Dict[str, Any]) -> List[str]:
    mem = "-"
    if "memory_total_bytes" in h and "memory_available_bytes" in h:
        used = (h["memory_total_bytes"] - h["memory_available_bytes"]) / GIB
        mem = f"{used:.1f}/{h['memory_total_bytes'] / GIB:.1f} GiB"
    fs = ", ".join(f"{f['mountpoint']} {f['used_percent']:.0f}%" for f in h.get("filesystems", [])[:4]) or "-"
    return ["", "Host", f"  {h.get('cpus', '?')} CPUs, load {_fmt(h.get('load1'), '.2f')}, memory {mem}, disks {fs}"]


def _running_lines(running: Optional[Dict[str, Any]], tag: Tag) -> List[str]:
    if running is None:
        return []
    lines = ["", "Firing now (the running agent)"]
    if "error" in running:
        lines.append(f"  cannot tell: {running['error']} ({running['url']})")
    elif not running["firing"]:
        lines.append("  nothing")
    for a in running.get("firing", []):
        if a.get("silence") or a.get("inhibited_by"):  # held on purpose: said so, never a bare critical
            lines.append(f"  {tag('info')} {held_text(a)}")
        else:
            lines.append(f"  {tag(a['labels'].get('severity') or 'warning')} {alert_title(a)}"
                         + (f": {a['summary']}" if a.get("summary") else ""))
    if running.get("firing_total", 0) > len(running.get("firing", [])):
        lines.append(f"  ... {running['firing_total'] - len(running['firing'])} more")
    if running.get("remote_write"):
        lines += ["", "Remote write (the running agent)"]
        for e in running["remote_write"]:
            state = tag("ok") if e.get("up") else tag("warning") + " retrying"
            lines.append(f"  {e['name']}: {state}, {_fmt(e.get('lag_seconds'), '.0f', ' s')} behind, "
                         f"{_fmt(e.get('sent'), ',.0f')} samples sent, {_fmt(e.get('failed'), ',.0f')} refused")
    return lines


def _problem_lines(problems: List[Dict[str, Any]], tag: Tag) -> List[str]:
    lines = ["", "Problems"] + ([] if problems else ["  none"])
    for p in problems:
        lines.append(f"  {tag(p['severity'])} {p['subject']}: {p['message']}")
        if p["fix"]:
            lines.append(f"      fix: {p['fix']}")
    return lines


def use_color(stream: Any) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("NO_COLOR") is None
