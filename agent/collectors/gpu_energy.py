"""Which model uses which GPU, and what each model's tokens cost in energy (a deriver).

Joins this cycle's NVML per-process lists (memory, per-process utilisation) with the pid
behind each target and the pids below it (lineage.py): a process is a target's when it is
the target's process or descends from it, and serves the target's model (a router's child:
the model its command line names). From that:

- llm_agent_model_gpu_memory_bytes / _utilization_percent{gpu..., server, model}: what each
  model holds and uses on each GPU, so "which model is eating GPU 3" is one query.
- llm_agent_energy_joules_total{server, model}: each GPU's energy counter (NVML's total
  energy, DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION) between two cycles, split among the processes
  on it by their share of its SM utilisation as NVML samples it per process (by their memory
  where the GPU is busy and NVML keeps no per-process samples); what no target's process used
  (an idle GPU, or other programs) is llm_agent_gpu_idle_energy_joules_total{gpu...}.
- llm_agent_energy_per_token_joules{server, model}: the energy over the generated tokens in
  the last minute, as rate(energy[1m]) / rate(tokens[1m]); absent while no token was made.
- llm_agent_energy_cost_per_1k_tokens{server, model, currency} where [cost]
  electricity_per_kwh is set.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple

from ..config import CostSettings
from ..model import Labels, MetricFamily, Snapshot, counter, gauge
from .lineage import Lineage
from ..plugins import Context, register_deriver

PER_TOKEN_WINDOW = 60.0  # seconds: energy per token as rate over rate over one minute
FORGET_AFTER = 3600.0  # a model (or GPU) unseen this long leaves the energy counters
ENGINES = ("sm", "memory", "encoder", "decoder")
JOULES_PER_KWH = 3.6e6

Key = Tuple[str, str]  # (server, model)


class GpuUse:
    """One GPU's processes this cycle: memory and utilisation per pid."""

    def __init__(self) -> None:
        self.memory: Dict[int, float] = {}
        self.util: Dict[int, Dict[str, float]] = {}

    def pids(self) -> Set[int]:
        return set(self.memory) | set(self.util)

    def weights(self, busy: bool) -> Dict[int, float]:
        """Each process's share basis: its SM utilisation; where NVML sampled none on a busy
        GPU, its memory; nothing on an idle GPU."""
        sm = {pid: u.get("sm", 0.0) for pid, u in self.util.items()}
        if sum(sm.values()) > 0:
            return sm
        return dict(self.memory) if busy else {}


class GpuEnergy:
    name = "gpu_energy"
    reads = ("llm_agent_gpu_up", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_GPU_UTIL",
             "llm_agent_gpu_process_memory_bytes", "llm_agent_gpu_process_utilization_percent",
             "llm_agent_target_process_info", "llm_agent_target_info", "llm_agent_generation_tokens_total")

    def __init__(self, cost: CostSettings, lineage: Optional[Lineage] = None, clock: Callable[[], float] = time.time):
        self.cost = cost
        self.lineage = lineage or Lineage()
        self.clock = clock
        self.energy: Dict[Key, float] = {}
        self.idle: Dict[str, float] = {}  # gpu -> joules no target used
        self.last_mj: Dict[str, float] = {}  # gpu (its UUID) -> the counter at the last cycle
        self.model_seen: Dict[Key, float] = {}  # when each model last drew energy
        self.gpu_seen: Dict[str, float] = {}
        self.history: Dict[Key, Deque[Tuple[float, float, float]]] = {}  # (time, joules, tokens)

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        now = self.clock()
        gpus = {s.label("gpu"): s.labels for s in view.samples("llm_agent_gpu_up")}
        uses = self._uses(view)
        owners = self._owners(view, uses)
        memory = gauge("llm_agent_model_gpu_memory_bytes", "GPU memory the target's processes (its children included) "
                                                          "hold on this GPU, by the model they serve (NVML).")
        util = gauge("llm_agent_model_gpu_utilization_percent", "Utilisation of this GPU's engines (sm, memory, encoder, "
                                                               "decoder) by the target's processes, by model, in percent.")
        for gpu, use in sorted(uses.items()):
            labels = dict(gpus.get(gpu, (("gpu", gpu),)))
            for key, pids in sorted(_by_owner(use.pids(), owners).items()):
                lbl = {**labels, "server": key[0], "model": key[1]}
                if any(p in use.memory for p in pids):
                    memory.add(lbl, sum(use.memory.get(p, 0.0) for p in pids))
                for engine in ENGINES:
                    values = [use.util[p][engine] for p in pids if engine in use.util.get(p, {})]
                    if values:
                        util.add({**lbl, "engine": engine}, sum(values))
        self._split_energy(view, gpus, uses, owners, now)
        self._forget(now)
        self.lineage.forget_unused()
        return [memory, util] + self._energy_families(view, gpus, now)

    def _uses(self, view: Snapshot) -> Dict[str, GpuUse]:
        uses: Dict[str, GpuUse] = {}
        for s in view.samples("llm_agent_gpu_process_memory_bytes"):
            labels = dict(s.labels)  # one dict, not a scan of the labels per lookup
            pid = _pid(labels.get("pid", ""))
            if pid:
                use = uses.setdefault(labels.get("gpu", ""), GpuUse())
                use.memory[pid] = use.memory.get(pid, 0.0) + s.value
        for s in view.samples("llm_agent_gpu_process_utilization_percent"):
            labels = dict(s.labels)
            pid = _pid(labels.get("pid", ""))
            if pid:
                uses.setdefault(labels.get("gpu", ""), GpuUse()).util.setdefault(pid, {})[labels.get("engine", "")] = s.value
        return uses

    def _owners(self, view: Snapshot, uses: Dict[str, GpuUse]) -> Dict[int, Key]:
        """pid -> (server, model) for each GPU process that is a target's or its child's."""
        targets = {pid: s.label("server") for s in view.samples("llm_agent_target_process_info")
                   if (pid := _pid(s.label("pid")))}
        models: Dict[str, Set[str]] = {}
        for name in ("llm_agent_target_info", "llm_agent_generation_tokens_total"):
            for s in view.samples(name):
                models.setdefault(s.label("server"), set()).add(s.label("model"))
        owners = {}
        for pid in set().union(*(u.pids() for u in uses.values())) if uses else ():
            found = self.lineage.owner(pid, targets) if targets else None
            if found is not None:
                server, alias = found
                served = models.get(server, set()) - {""}
                model = alias if alias in served else (next(iter(served)) if len(served) == 1 else "")
                owners[pid] = (server, model)
        return owners

    def _split_energy(self, view: Snapshot, gpus: Dict[str, Labels], uses: Dict[str, GpuUse],
                      owners: Dict[int, Key], now: float) -> None:
        busy = {s.label("gpu"): s.value > 0 for s in view.samples("DCGM_FI_DEV_GPU_UTIL")}
        for s in view.samples("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
            gpu = s.label("gpu")
            key = s.label("UUID") or gpu
            last, self.last_mj[key] = self.last_mj.get(key), s.value
            self.gpu_seen[gpu] = now
            if last is None or s.value < last:  # the first reading, or a driver reload reset it
                self.idle.setdefault(gpu, 0.0)
                continue
            joules = (s.value - last) / 1000.0
            use = uses.get(gpu) or GpuUse()
            weights = use.weights(busy.get(gpu, False))
            total = sum(weights.values())
            given = 0.0
            for pid, weight in weights.items():
                owner = owners.get(pid)
                if owner is not None and total > 0 and weight > 0:
                    share = joules * weight / total
                    self.energy[owner] = self.energy.get(owner, 0.0) + share
                    self.model_seen[owner] = now
                    given += share
            self.idle[gpu] = self.idle.get(gpu, 0.0) + joules - given

    def _energy_families(self, view: Snapshot, gpus: Dict[str, Labels], now: float) -> List[MetricFamily]:
        energy = counter("llm_agent_energy_joules_total",
                         "Energy the GPUs drew for the target's model, in joules: each GPU's energy counter split among "
                         "the processes on it by their share of its SM utilisation (by memory where NVML keeps no "
                         "per-process samples), the target's children included.")
        idle = counter("llm_agent_gpu_idle_energy_joules_total",
                       "Energy this GPU drew that no target's process used (idle, or other programs), in joules.")
        per_token = gauge("llm_agent_energy_per_token_joules",
                          "Energy per generated token over the last minute, in joules (absent while nothing is generated).")
        cost = gauge("llm_agent_energy_cost_per_1k_tokens",
                     "What the energy of 1,000 generated tokens costs at [cost] electricity_per_kwh.")
        tokens: Dict[Key, float] = {}
        for s in view.samples("llm_agent_generation_tokens_total"):
            key = (s.label("server"), s.label("model"))
            tokens[key] = tokens.get(key, 0.0) + s.value
        for key, joules in sorted(self.energy.items()):
            lbl = {"server": key[0], "model": key[1]}
            energy.add(lbl, joules)
            value = self._per_token(key, joules, tokens.get(key), now)
            if value is not None:
                per_token.add(lbl, value)
                if self.cost.electricity_per_kwh > 0:
                    cost.add({**lbl, "currency": self.cost.currency},
                             value * 1000 / JOULES_PER_KWH * self.cost.electricity_per_kwh)
        for gpu, joules in sorted(self.idle.items()):
            idle.add(dict(gpus.get(gpu, (("gpu", gpu),))), joules)
        return [f for f in (energy, idle, per_token, cost) if f.samples]

    def _per_token(self, key: Key, joules: float, tokens: Optional[float], now: float) -> Optional[float]:
        if tokens is None:
            self.history.pop(key, None)
            return None
        past = self.history.setdefault(key, deque())
        if past and tokens < past[-1][2]:  # the server restarted: its counter began again
            past.clear()
        past.append((now, joules, tokens))
        while len(past) > 2 and past[1][0] <= now - PER_TOKEN_WINDOW:
            past.popleft()
        made = tokens - past[0][2]
        return (joules - past[0][1]) / made if made > 0 else None

    def _forget(self, now: float) -> None:
        for key in [k for k, when in self.model_seen.items() if when < now - FORGET_AFTER]:
            del self.model_seen[key]
            self.energy.pop(key, None)
            self.history.pop(key, None)
        for gpu in [g for g, when in self.gpu_seen.items() if when < now - FORGET_AFTER]:
            del self.gpu_seen[gpu]
            self.idle.pop(gpu, None)


def _pid(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _by_owner(pids: Set[int], owners: Dict[int, Key]) -> Dict[Key, List[int]]:
    out: Dict[Key, List[int]] = {}
    for pid in pids:
        if pid in owners:
            out.setdefault(owners[pid], []).append(pid)
    return out


@register_deriver("gpu_energy", "cost", keep=True)  # kept across a reload: the energy counted so far
def _build(ctx: Context) -> GpuEnergy:
    return GpuEnergy(ctx.config.cost, clock=ctx.clock)
