"""SLO objectives and cost figures as series, so burn-rate and budget rules are plain PromQL.

- llm_agent_slo_error_budget{server}: 1 - the availability objective, per target (the default
  burn-rate rules compare the probes' failure ratio with 14.4x and 6x of it).
- Cost: the host's price per hour (GPU-hours x GPUs + host-hours), today's cost so far, the
  month's projection, and the cost per 1,000 generated tokens from the measured throughput
  (smoothed over about five minutes).
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional, Sequence

from ..config import CostSettings, SloSettings, TargetConfig
from ..model import MetricFamily, Snapshot, gauge
from ..plugins import Context, register_deriver
from ..timefmt import days_in_month


class SloCost:
    """Objectives per target, and the host's cost: a deriver (see runner.Deriver) reading this
    cycle's GPUs and token rates from the view, never from the collectors themselves."""

    name = "slo_cost"
    reads = ("llm_agent_gpu_up", "llm_agent_generation_tokens_per_second")

    def __init__(self, slo: SloSettings, cost: CostSettings, targets: Callable[[], Sequence[TargetConfig]],
                 clock: Callable[[], float] = time.time):
        self.slo, self.cost = slo, cost
        self.targets = targets
        self.clock = clock
        self.smoothed: Optional[float] = None
        self._last: Optional[float] = None
        self.problems: List = []

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        budget = gauge("llm_agent_slo_error_budget", "1 minus the target's availability objective.")
        latency_budget = gauge("llm_agent_slo_latency_error_budget",
                               "1 minus the share of probes that must meet the time-to-first-token objective.")
        objective = gauge("llm_agent_slo_objective", "The target's objectives: availability (ratio), ttft (seconds).")
        for t in self.targets():
            avail = t.slo_availability or self.slo.availability
            budget.add({"server": t.name}, round(1 - avail, 9))
            objective.add({"server": t.name, "slo": "availability"}, avail)
            objective.add({"server": t.name, "slo": "ttft"}, self.slo.ttft_seconds)
            latency_budget.add({"server": t.name}, round(1 - self.slo.ttft_objective, 9))
        gpus = len(view.samples("llm_agent_gpu_up"))
        tokens_per_second = sum(s.value for s in view.samples("llm_agent_generation_tokens_per_second"))
        return [budget, latency_budget, objective] + self._cost(gpus, tokens_per_second)

    def _cost(self, gpus: int, rate: float) -> List[MetricFamily]:
        per_hour = self.cost.gpu_hour_price * gpus + self.cost.host_hour_price
        if per_hour <= 0:
            return []
        now = self.clock()
        lbl = {"currency": self.cost.currency}
        local = time.localtime(now)
        midnight = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
        days = days_in_month(local.tm_year, local.tm_mon)
        fams = [gauge("llm_agent_cost_per_hour", "What the host costs per hour (configured prices x GPUs).").add(lbl, per_hour),
                gauge("llm_agent_cost_today", "What the host has cost since local midnight.")
                .add(lbl, per_hour * (now - midnight) / 3600),
                gauge("llm_agent_cost_month_projection", "What the host will cost this month at the current price.")
                .add(lbl, per_hour * 24 * days)]
        if self.cost.month_budget > 0:
            fams.append(gauge("llm_agent_cost_month_budget", "The configured monthly budget.").add(lbl, self.cost.month_budget))
        if self._last is not None:
            alpha = min(1.0, (now - self._last) / 300.0)  # about a five-minute average
            self.smoothed = rate if self.smoothed is None else self.smoothed + alpha * (rate - self.smoothed)
        self._last = now
        if self.smoothed:
            fams.append(gauge("llm_agent_cost_per_1k_tokens", "Cost per 1,000 generated tokens at the measured throughput.")
                        .add(lbl, per_hour / (self.smoothed * 3600) * 1000))
        return fams



@register_deriver("slo_cost")
def _build(ctx: Context) -> SloCost:
    return SloCost(ctx.config.slo, ctx.config.cost, ctx.targets_now, ctx.clock)
