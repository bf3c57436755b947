"""Fire drills (`llm-agent drill`): a synthetic fault put into the running agent's own pipeline,
timed at each stage until a person would have been paged.

A drill is a source of series for the rules, as a collector is: a target down (LlmTargetDown),
a hung target (LlmTargetHung) or an Xid that calls for a reboot (GpuXidActionRequired), each
series labelled `drill="true"` and `drill_id`. The rules, `for`, inhibition, grouping, the
outbox and the channels then do what they do for a real fault; every text says DRILL (the
engine prefixes the annotations, each notifier its title). The series go to the rules only:
never to /metrics, the history file or the report, and a drill's alerts count in no verdict.

The drill ends when every channel that takes its alert has delivered it (or after MAX_SECONDS);
its series then say the fault is over for RECOVERY_SECONDS (the target up, the hang gone, the
Xid old) and the alert resolves, so receivers close what they opened.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .model import MetricFamily, gauge

KINDS = ("target-down", "hang", "xid")
MAX_SECONDS = 600.0  # a drill still undelivered after this stops: its status says what never happened
MAX_ACTIVE = 4  # drills at once: a loop of clients cannot flood the rules
KEEP_ENDED = 16  # ended drills whose status can still be read
RECOVERY_SECONDS = 60.0  # after its end, a drill's series say the fault is over: its alert resolves


@dataclass
class Drill:
    id: str
    kind: str
    channel: str  # "" : every channel that takes the alert
    started: float
    stages: Dict[str, float] = field(default_factory=dict)  # stage -> seconds after injection
    expected: Optional[List[str]] = None  # the channels that take the alert, known once it fires
    delivered: Dict[str, float] = field(default_factory=dict)  # channel -> seconds after injection
    ended: Optional[float] = None
    outcome: str = ""

    @property
    def labels(self) -> Dict[str, str]:
        out = {"drill": "true", "drill_id": self.id}
        if self.channel:
            out["drill_channel"] = self.channel
        return out

    def to_doc(self) -> dict:
        return {"id": self.id, "kind": self.kind, "channel": self.channel, "started": self.started,
                "stages": dict(self.stages), "expected": self.expected, "delivered": dict(self.delivered),
                "ended": self.ended is not None, "outcome": self.outcome}


class Drills:
    """The drills running and recently ended. Called from the cycle (families, observe), the
    dispatcher's workers (delivered) and the API (start, status): one lock."""

    def __init__(self, clock: Callable[[], float] = time.time, hostname: str = ""):
        self.clock = clock
        self.hostname = hostname
        self._drills: Dict[str, Drill] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, channel: str = "") -> Drill:
        """A new drill; ValueError for an unknown kind or too many at once."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind[:40]!r}")
        with self._lock:
            if sum(1 for d in self._drills.values() if d.ended is None) >= MAX_ACTIVE:
                raise ValueError(f"{MAX_ACTIVE} drills are running already; wait for one to end")
            drill = Drill(os.urandom(4).hex(), kind, channel, self.clock())
            self._drills[drill.id] = drill
            ended = [d.id for d in self._drills.values() if d.ended is not None]
            for old in ended[:-KEEP_ENDED]:
                del self._drills[old]
        return drill

    def status(self, drill_id: str) -> Optional[dict]:
        with self._lock:
            drill = self._drills.get(drill_id)
            return drill.to_doc() if drill else None

    def active(self) -> bool:
        """Whether a drill runs or recovers: the cycle then tells it of the alerts."""
        now = self.clock()
        return any(d.ended is None or now - d.ended < RECOVERY_SECONDS for d in list(self._drills.values()))

    def families(self) -> List[MetricFamily]:
        """The series of each drill's fault, for the rules: the fault while it runs, its
        recovery for a while after it ended."""
        up, state = gauge("llm_agent_target_up", ""), gauge("llm_agent_target_state", "")
        hung, xid = gauge("llm_agent_target_hung", ""), gauge("llm_agent_gpu_xid_last_event_timestamp_seconds", "")
        now = self.clock()
        with self._lock:
            shown = [d for d in self._drills.values() if d.ended is None or now - d.ended < RECOVERY_SECONDS]
        for d in shown:
            faulty = d.ended is None
            where = {"server": f"drill-{d.id}", **d.labels}
            if d.kind == "target-down":
                up.add(where, 0 if faulty else 1)
                state.add({**where, "state": "down" if faulty else "up"}, 1)
            elif d.kind == "hang":
                hung.add(where, 1 if faulty else 0)
            else:  # an Xid logged now; once over, one logged long ago
                xid.add({"gpu": "drill", "pci_bus_id": "drill", "Hostname": self.hostname, "xid": "79",
                         "name": "GPU_HAS_FALLEN_OFF_THE_BUS", "meaning": "the GPU fell off the bus (a drill)",
                         "action": "reboot_node", "severity": "critical", **d.labels},
                        d.started if faulty else d.started - 86400)
        return [f for f in (up, state, hung, xid) if f.samples]

    def observe(self, alerts: Iterable[Tuple[Mapping[str, str], str, List[str]]]) -> None:
        """This cycle's active alerts as (labels, state, channels that take it): each drill's
        pending and firing moments, and the channels it waits for."""
        now = self.clock()
        seen: Dict[str, List[str]] = {}
        with self._lock:
            for labels, state, channels in alerts:
                drill = self._drills.get(labels.get("drill_id", ""))
                if drill is None or labels.get("drill") != "true":
                    continue
                seen.setdefault(drill.id, []).append(state)
                drill.stages.setdefault("rule pending", now - drill.started)
                if state == "firing":
                    drill.stages.setdefault("rule firing", now - drill.started)
                    if drill.expected is None:
                        drill.expected = sorted(channels)
            for drill in self._drills.values():
                if drill.ended is None:
                    self._maybe_end(drill, now)
                elif drill.id not in seen and "resolved" not in drill.stages:
                    drill.stages["resolved"] = now - drill.started

    def delivered(self, channel: str, labels_of: Iterable[Mapping[str, str]]) -> None:
        """A channel delivered these firing alerts: note the drills among them."""
        now = self.clock()
        with self._lock:
            for labels in labels_of:
                drill = self._drills.get(labels.get("drill_id", ""))
                if drill is not None and labels.get("drill") == "true":
                    drill.delivered.setdefault(channel, now - drill.started)

    def _maybe_end(self, drill: Drill, now: float) -> None:
        if drill.expected is not None and all(c in drill.delivered for c in drill.expected):
            drill.outcome = "delivered" if drill.expected else "fired; no channel takes this alert"
        elif now - drill.started >= MAX_SECONDS:
            drill.outcome = f"stopped after {MAX_SECONDS:.0f}s: " + (
                "the rule never fired" if "rule firing" not in drill.stages else
                "not delivered to " + ", ".join(c for c in drill.expected or [] if c not in drill.delivered))
        else:
            return
        drill.ended = now
        drill.stages.setdefault("ended", now - drill.started)


def is_drill(labels: Mapping[str, str]) -> bool:
    return labels.get("drill") == "true"


__all__ = ["Drill", "Drills", "KINDS", "is_drill"]
