"""One verdict for the host, worked out in one place: the console's badge, `/healthz`, `llm-agent
check` (its text and exit status) and the report's summary all say what `judge()` says.

What counts:
- each check (the agent cycles; each target: down, hung, stalled, not ready, restarting, never
  up; each GPU), with its own severity;
- each firing alert, by its severity, unless a silence or an inhibition holds it back: those
  are listed as such ("silenced until 14:00 by alice: ..."), never counted;
- in `check` without a running agent, what its one pass found (problems).

The status is the worst that counts: critical, warning, or ok; `maintenance` while a window
covers the whole host (whatever else holds); `starting` before the first cycle. `/healthz`
answers 200 for ok and warning, 503 for the rest (a load balancer drains the box).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

RANK = {"ok": 0, "info": 0, "warning": 1, "critical": 2}
SERVING = ("ok", "warning")  # the statuses /healthz answers 200 for


@dataclass
class Verdict:
    status: str  # ok | warning | critical | maintenance | starting
    reasons: List[str] = field(default_factory=list)  # what counted, worst first
    held: List[str] = field(default_factory=list)  # firing alerts a silence or inhibition holds back, said as such
    counts: Dict[str, int] = field(default_factory=dict)  # counted firing alerts by severity

    @property
    def http_status(self) -> int:
        return 200 if self.status in SERVING else 503

    @property
    def exit_code(self) -> int:
        """check's exit status: 0 ok (and maintenance: pages are held on purpose), 1 warning, 2 critical."""
        return {"warning": 1, "critical": 2, "starting": 1}.get(self.status, 0)

    def to_doc(self) -> Dict[str, Any]:
        return {"status": self.status, "reasons": list(self.reasons), "held": list(self.held),
                "alerts": dict(self.counts)}


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def held_text(alert: Dict[str, Any]) -> str:
    """How a held alert is shown: 'LlmTargetDown (server=a) silenced until 2026-12-06 14:00 by alice: upgrade'."""
    what = alert_title(alert)
    silence = alert.get("silence")
    if silence:
        kind = "maintenance" if silence.get("maintenance") else "silenced"
        by = f" by {silence['by']}" if silence.get("by") and not silence.get("maintenance") else ""
        comment = f": {silence['comment']}" if silence.get("comment") else ""
        return f"{what} {kind} until {when(silence['until'])}{by}{comment}"
    return f"{what} inhibited by {alert.get('inhibited_by') or 'another alert'}"


def alert_title(alert: Dict[str, Any]) -> str:
    labels = alert.get("labels", {})
    where = ", ".join(f"{k}={labels[k]}" for k in ("server", "gpu", "device", "mountpoint") if k in labels)
    return labels.get("alertname", "?") + (f" ({where})" if where else "")


def judge(checks: Sequence[Dict[str, Any]], alerts: Sequence[Dict[str, Any]] = (),
          maintenance: Sequence[Dict[str, Any]] = (), problems: Sequence[Dict[str, Any]] = (),
          started: bool = True) -> Verdict:
    """`checks`: {name, severity ("ok" when healthy), reasons, target?}; `alerts`: the firing
    ones, {labels, summary?, silence?: {until, by, comment, maintenance}, inhibited_by?};
    `maintenance`: active windows {target ("" = host), until, comment}; `problems`: {severity,
    subject, message} (check's own pass)."""
    if not started:
        return Verdict("starting", ["no collection cycle completed yet"])
    in_maintenance = {w["target"] for w in maintenance}
    host_window = next((w for w in maintenance if not w["target"]), None)
    ranked: List[tuple] = []
    for c in checks:
        if c.get("target") and c["target"] in in_maintenance:
            continue  # that target's window says why it may be down
        sev = c.get("severity", "ok")
        if RANK.get(sev, 0) > 0:
            ranked += [(RANK[sev], f"{c['name']}: {r}") for r in c.get("reasons", [])]
    for p in problems:
        if RANK.get(p["severity"], 0) > 0:
            ranked.append((RANK[p["severity"]], f"{p['subject']}: {p['message']}"))
    counts: Dict[str, int] = {}
    held: List[str] = []
    for a in alerts:
        if a.get("labels", {}).get("drill") == "true":  # llm-agent drill: shown, never counted
            held.append(f"{alert_title(a)}: a fire drill")
            continue
        if a.get("silence") or a.get("inhibited_by"):
            held.append(held_text(a))
            continue
        sev = a.get("labels", {}).get("severity", "warning")
        counts[sev] = counts.get(sev, 0) + 1
        if RANK.get(sev, 0) > 0:
            summary = a.get("summary") or ""
            ranked.append((RANK[sev], f"alert {alert_title(a)} ({sev})" + (f": {summary}" if summary else "")))
    ranked.sort(key=lambda x: -x[0])
    reasons = [text for _, text in ranked]
    worst = ranked[0][0] if ranked else 0
    status = {0: "ok", 1: "warning", 2: "critical"}[worst]
    if host_window is not None:
        reasons = [f"maintenance until {when(host_window['until'])}: {host_window.get('comment', '')}"] + reasons
        status = "maintenance"
    return Verdict(status, reasons, held, counts)


def silence_doc(silence: Optional[Any]) -> Optional[Dict[str, Any]]:
    """What a verdict shows of the silence muting an alert (notify.silences.Silence)."""
    if silence is None:
        return None
    return {"until": silence.ends_at, "by": silence.created_by, "comment": silence.comment,
            "maintenance": silence.maintenance}
