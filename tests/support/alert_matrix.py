"""The alert quality matrix (issue 26): for every default rule, a scenario that must fire it and
a near miss that must not (a busy server that is merely slow, an idle GPU, a restart, a young
agent, a stale discovered target ...), as series over time fed to the shipped rules through
the real rule engine (default_rules.fire).

`python -m tests.support.alert_matrix` rewrites docs/alert-quality.md from the table;
tests/unit/test_alert_quality.py runs every case and checks that page is current.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from agent.model import COUNTER, GAUGE, HISTOGRAM, MetricFamily

Series = List[Tuple[str, Dict[str, str], float, str]]  # (name, labels, value, type)
T0 = 1_767_225_600.0
SRV = {"server": "a", "kind": "llamacpp"}
S = {"server": "a"}
GPU = {"gpu": "0", "UUID": "GPU-0", "Hostname": "h", "modelName": "NVIDIA H100"}
IB = {"device": "mlx5_0", "port": "1"}
FS = {"mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4"}
PAGE = "docs/alert-quality.md"


def g(name: str, labels: Dict[str, str], value: float) -> Tuple[str, Dict[str, str], float, str]:
    return (name, labels, value, GAUGE)


def c(name: str, labels: Dict[str, str], value: float) -> Tuple[str, Dict[str, str], float, str]:
    return (name, labels, value, COUNTER)


@dataclass(frozen=True)
class Scenario:
    what: str
    series: Callable[[float], Series]  # seconds since the start -> this cycle's series
    minutes: float
    step: float = 30.0


@dataclass(frozen=True)
class Case:
    rule: str
    fires: Scenario
    misses: Scenario
    also_misses: Tuple[Scenario, ...] = ()  # more near misses, where one is not enough

    @property
    def near_misses(self) -> Tuple[Scenario, ...]:
        return (self.misses, *self.also_misses)


def run(rule: str, scenario: Scenario) -> bool:
    """Whether `rule` fires at the end of `scenario`."""
    from tests.support.default_rules import fire

    frames = []
    n = int(scenario.minutes * 60 / scenario.step) + 1
    for i in range(n):
        t = i * scenario.step
        fams: Dict[str, MetricFamily] = {}
        for name, labels, value, kind in scenario.series(t):
            family, suffix = name, ""
            if kind == HISTOGRAM:
                family, suffix = name.rsplit("_", 1)[0], "_" + name.rsplit("_", 1)[1]
            fams.setdefault(family, MetricFamily(family, kind, "")).add(labels, value, suffix)
        frames.append((T0 + t, list(fams.values())))
    return (rule, "firing") in fire((rule,), frames)


# -- the series each case is made of -------------------------------------------------------------

def target(up: float, state: str, found: float = 0) -> Series:
    return [g("llm_agent_target_up", SRV, up), g("llm_agent_target_process_found", S, found)] + \
        [g("llm_agent_target_state", {**SRV, "state": s}, 1 if s == state else 0)
         for s in ("never_up", "up", "restarting", "down")]


def probes(t: float, fail: Callable[[int], bool], slow: Callable[[int], bool] = lambda n: False,
           every: float = 60.0, ttft: float = 0.2) -> Series:
    """A probe every `every` seconds: counters and the last result, as the probe collector
    exports them; `fail(n)` / `slow(n)` for the n-th probe."""
    n = int(t // every) + 1
    failed = sum(1 for i in range(n) if fail(i))
    slow_n = sum(1 for i in range(n) if not fail(i) and slow(i))
    ok = n - failed
    out = [c("llm_agent_probes_total", S, n), c("llm_agent_probe_slow_total", S, slow_n),
           c("llm_agent_probe_errors_total", {**S, "kind": "timeout"}, failed),
           g("llm_agent_probe_success", S, 0 if fail(n - 1) else 1),
           g("llm_agent_slo_error_budget", S, 0.005), g("llm_agent_slo_latency_error_budget", S, 0.05)]
    for le in ("0.5", "1.0", "2.5", "+Inf"):
        inside = ok if le == "+Inf" or ttft <= float(le) else 0
        out.append(("llm_agent_probe_ttft_seconds_bucket", {**S, "le": le}, inside, HISTOGRAM))
    out += [("llm_agent_probe_ttft_seconds_count", S, ok, HISTOGRAM), ("llm_agent_probe_ttft_seconds_sum", S, ok * ttft, HISTOGRAM)]
    return out


def gpu(**values: float) -> Series:
    return [g(f"DCGM_FI_DEV_{k}", GPU, v) for k, v in values.items()]


def four_gpus(util: Tuple[float, ...], power: Tuple[float, ...]) -> Series:
    """Four H100s of one host: utilisation, power, and peer-like clocks and temperatures."""
    out: Series = []
    for i, (u, p) in enumerate(zip(util, power)):
        labels = {**GPU, "gpu": str(i), "UUID": f"GPU-{i}"}
        out += [g("DCGM_FI_DEV_GPU_UTIL", labels, u), g("DCGM_FI_DEV_POWER_USAGE", labels, p),
                g("DCGM_FI_DEV_SM_CLOCK", labels, 1980 if u > 50 else 345), g("DCGM_FI_DEV_GPU_TEMP", labels, 60)]
    return out


def steady(value_at: Callable[[float], Series]) -> Callable[[float], Series]:
    return value_at


def after(seconds: float, before: Series, then: Series) -> Callable[[float], Series]:
    return lambda t: before if t < seconds else then


def per_minute(name: str, labels: Dict[str, str], rate: float, start: float = 0.0, until: float = math.inf,
               base: float = 100.0) -> Callable[[float], Series]:
    """A counter at `base` rising by `rate` a minute between start and until."""
    return lambda t: [c(name, labels, base + rate * max(0.0, min(t, until) - start) / 60)]


def cpu(idle_share: float) -> Callable[[float], Series]:
    return lambda t: [c("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, idle_share * t),
                      c("node_cpu_seconds_total", {"cpu": "0", "mode": "user"}, (1 - idle_share) * t)]


def tokens(tps: float, running: float) -> Callable[[float], Series]:
    lbl = {"server": "a", "engine": "llamacpp", "model": "m"}
    return lambda t: [g("llm_agent_generation_tokens_per_second", lbl, tps), g("llm_agent_requests_running", lbl, running)]


CASES: List[Case] = [
    Case("LlmTargetDown",
         Scenario("a server that answered before stops answering, no process on its port (a crash)",
                  lambda t: target(0, "down"), 1),
         Scenario("a fresh install: the guessed address never answered (never up)", lambda t: target(0, "never_up"), 10)),
    Case("LlmTargetNeverUp",
         Scenario("a configured server that has not answered for 6 minutes", lambda t: target(0, "never_up"), 6),
         Scenario("a server that takes 3 minutes to start, then answers",
                  after(180, target(0, "never_up"), target(1, "up")), 6)),
    Case("LlmTargetGone",
         Scenario("a discovered server let go after it exited", lambda t: [g("llm_agent_target_gone", S, 1)], 1),
         Scenario("a planned restart by systemd, back within its grace (state restarting, then up)",
                  after(60, target(0, "restarting"), target(1, "up")), 3)),
    Case("LlmTargetHung",
         Scenario("alive, health check silent past hang_after", lambda t: [g("llm_agent_target_hung", S, 1)], 1),
         Scenario("a slow answer that still comes (hang flag never set)", lambda t: [g("llm_agent_target_hung", S, 0)], 2)),
    Case("LlmTargetStalled",
         Scenario("requests running, no token for stall_after", lambda t: [g("llm_agent_target_stalled", S, 1)], 1),
         Scenario("a busy server that is merely slow: tokens still flow", lambda t: [g("llm_agent_target_stalled", S, 0)], 5)),
    Case("LlmServerNotReady",
         Scenario("/health not ok for 3 minutes", lambda t: [g("llm_agent_target_ready", S, 0)], 3),
         Scenario("a model loading for 90 seconds after a restart",
                  after(90, [g("llm_agent_target_ready", S, 0)], [g("llm_agent_target_ready", S, 1)]), 4)),
    Case("LlmEngineWedged",
         Scenario("requests queued, /health answering, no progress counter moving for 30 s",
                  lambda t: [g("llm_agent_target_wedged", {**S, "counters": "generated tokens, prompt tokens"}, 1)], 1),
         Scenario("a saturated engine: the queue grows, tokens still flow (never wedged)",
                  lambda t: [g("llm_agent_target_wedged", {**S, "counters": "generated tokens, prompt tokens"}, 0),
                             g("llm_agent_requests_waiting", S, 1 + t / 60)], 5)),
    Case("LlmCanaryMismatch",
         Scenario("the canary answer differs for 6 minutes", lambda t: [g("llm_agent_probe_canary_match", S, 0)], 6),
         Scenario("one odd answer, then the canary matches again",
                  after(120, [g("llm_agent_probe_canary_match", S, 0)], [g("llm_agent_probe_canary_match", S, 1)]), 6)),
    Case("LlmSloBurnFast",
         Scenario("an hour of probes, half failing", lambda t: probes(t, lambda n: n % 2 == 0), 60),
         Scenario("a young agent: 10 minutes, every probe failing", lambda t: probes(t, lambda n: True), 10)),
    Case("LlmSloBurnSlow",
         Scenario("6 hours of probes, 1 in 10 failing", lambda t: probes(t, lambda n: n % 10 == 0), 360, 60),
         Scenario("a young agent: 20 minutes, every probe failing", lambda t: probes(t, lambda n: True), 20, 60)),
    Case("LlmLatencySloBurnFast",
         Scenario("an hour of probes, every one slower than the objective",
                  lambda t: probes(t, lambda n: False, lambda n: True, ttft=2.0), 60),
         Scenario("a young agent: 10 minutes of slow probes",
                  lambda t: probes(t, lambda n: False, lambda n: True, ttft=2.0), 10)),
    Case("LlmLatencySloBurnSlow",
         Scenario("6 hours of probes, half slow", lambda t: probes(t, lambda n: False, lambda n: n % 2 == 0, ttft=2.0),
                  360, 60),
         Scenario("a young agent: 20 minutes of slow probes",
                  lambda t: probes(t, lambda n: False, lambda n: True, ttft=2.0), 20, 60)),
    Case("LlmProbeErrorRate",
         Scenario("12 minutes of probes, every other one failing", lambda t: probes(t, lambda n: n % 2 == 1), 12),
         Scenario("a young agent: its first 2 probes, one failed", lambda t: probes(t, lambda n: n == 1), 2),
         (Scenario("a crash, paged as LlmTargetDown, back in 30 s: the probe that failed with it",
                   lambda t: probes(t, lambda n: n == 8) + target(0 if 480 <= t < 510 else 1, "down" if 480 <= t < 510
                                                                   else "up", 1), 13.5),)),
    Case("LlmLatencyHigh",
         Scenario("25 minutes of probes at 2 s to first token", lambda t: probes(t, lambda n: False, ttft=2.0), 25),
         Scenario("a young agent: 3 slow probes", lambda t: probes(t, lambda n: False, ttft=2.0), 3)),
    Case("LlmThroughputLow",
         Scenario("5 tokens/s while requests run, for 6 minutes", tokens(5, 2), 6),
         Scenario("an idle server: no tokens, nothing running", tokens(0, 0), 10)),
    Case("LlmQueueGrowing",
         Scenario("waiting requests grow for 12 minutes",
                  lambda t: [g("llm_agent_requests_waiting", S, 1 + t / 60)], 12),
         Scenario("a saturated but steady queue (8 waiting all along)",
                  lambda t: [g("llm_agent_requests_waiting", S, 8)], 12)),
    Case("LlmAllSlotsBusy",
         Scenario("no idle slot for 6 minutes", lambda t: [g("llm_agent_target_slots", {**S, "state": "idle"}, 0)], 6),
         Scenario("a burst: every slot busy for 2 minutes",
                  after(120, [g("llm_agent_target_slots", {**S, "state": "idle"}, 0)],
                        [g("llm_agent_target_slots", {**S, "state": "idle"}, 2)]), 6)),
    Case("LlmMetricsDisabled",
         Scenario("llama-server without --metrics for 6 minutes",
                  lambda t: [g("llm_agent_target_metrics_enabled", S, 0)], 6),
         Scenario("metrics enabled", lambda t: [g("llm_agent_target_metrics_enabled", S, 1)], 6)),
    Case("CostOverBudget",
         Scenario("the month projected over its budget",
                  lambda t: [g("llm_agent_cost_month_projection", {}, 1200), g("llm_agent_cost_month_budget", {}, 1000)], 1),
         Scenario("projected under budget",
                  lambda t: [g("llm_agent_cost_month_projection", {}, 800), g("llm_agent_cost_month_budget", {}, 1000)], 1)),
    Case("LlmPerformanceRegression",
         Scenario("a benchmark 30% slower than its baseline",
                  lambda t: [g("llm_agent_bench_slowdown_ratio", {**S, "figure": "x"}, 1.3)], 1),
         Scenario("10% slower: inside the tolerance",
                  lambda t: [g("llm_agent_bench_slowdown_ratio", {**S, "figure": "x"}, 1.1)], 1)),
    Case("LlmServingEnvironmentChanged",
         Scenario("the model or driver changed", lambda t: [g("llm_agent_serving_environment_changed", S, 1)], 1),
         Scenario("nothing changed", lambda t: [g("llm_agent_serving_environment_changed", S, 0)], 1)),
    Case("LlmQualityDrop",
         Scenario("the quality score under its baseline for 6 minutes",
                  lambda t: [g("llm_agent_quality_score", S, 0.5), g("llm_agent_quality_baseline", S, 0.9)], 6),
         Scenario("the score at its baseline",
                  lambda t: [g("llm_agent_quality_score", S, 0.9), g("llm_agent_quality_baseline", S, 0.9)], 6)),
    Case("LlmThroughputAnomaly",
         Scenario("tokens/s 4 standard deviations under its week for 31 minutes",
                  lambda t: [g("llm_agent:generation_tokens_per_second:zscore_1w",
                               {"server": "a", "engine": "llamacpp", "model": "m"}, -4)], 31),
         Scenario("2 standard deviations under: an ordinary slow afternoon",
                  lambda t: [g("llm_agent:generation_tokens_per_second:zscore_1w",
                               {"server": "a", "engine": "llamacpp", "model": "m"}, -2)], 31)),
    Case("LlmTtftAnomaly",
         Scenario("probe TTFT 4 standard deviations above its week for 31 minutes",
                  lambda t: [g("llm_agent:probe_ttft_seconds:zscore_7d", S, 4)], 31),
         Scenario("2 standard deviations above", lambda t: [g("llm_agent:probe_ttft_seconds:zscore_7d", S, 2)], 31)),
    Case("LlmErrorRateAnomaly",
         Scenario("errors 4 standard deviations above their week, 5% of probes",
                  lambda t: [g("llm_agent:probe_error_ratio:zscore_7d", S, 4), g("llm_agent:probe_error_ratio:1h", S, 0.05)],
                  31),
         Scenario("an unusual but tiny error rate (0.5%)",
                  lambda t: [g("llm_agent:probe_error_ratio:zscore_7d", S, 4), g("llm_agent:probe_error_ratio:1h", S, 0.005)],
                  31)),
    Case("LlmTtftTrendUp",
         Scenario("TTFT heading to 2x its week for 6 hours",
                  lambda t: [g("llm_agent:probe_ttft_seconds:trend_ratio_7d", S, 2)], 362, 120),
         Scenario("heading to 1.2x", lambda t: [g("llm_agent:probe_ttft_seconds:trend_ratio_7d", S, 1.2)], 362, 120)),
    Case("LlmCostTrendUp",
         Scenario("cost per token heading to 1.5x for 6 hours",
                  lambda t: [g("llm_agent:cost_per_1k_tokens:trend_ratio_7d", {}, 1.5)], 362, 120),
         Scenario("heading to 1.1x", lambda t: [g("llm_agent:cost_per_1k_tokens:trend_ratio_7d", {}, 1.1)], 362, 120)),
    Case("GpuLost",
         Scenario("NVML says the GPU is lost", lambda t: [g("llm_agent_gpu_up", GPU, 0)], 1),
         Scenario("an idle GPU", lambda t: [g("llm_agent_gpu_up", GPU, 1)] + gpu(GPU_UTIL=0), 5)),
    Case("GpuDriverNotResponding",
         Scenario("an NVML call on the GPU has not returned for 4 seconds",
                  lambda t: [g("llm_agent_nvml_call_stuck_seconds", {**GPU, "call": "nvmlDeviceGetPowerUsage"}, 4 + t)], 0.5),
         Scenario("a slow GPU whose calls all return (no call stuck)",
                  lambda t: [g("llm_agent_gpu_up", GPU, 1)] + gpu(GPU_UTIL=100), 5)),
    Case("GpuOutlier",
         Scenario("four GPUs under load, one drawing 35% less power than its peers for 12 minutes",
                  lambda t: four_gpus((95, 96, 94, 95), (650, 660, 655, 420)), 12),
         Scenario("one of four GPUs idle (low clocks and power, as an idle GPU has), the rest under load",
                  lambda t: four_gpus((95, 96, 94, 0), (650, 660, 655, 70)), 12),
         (Scenario("four GPUs under load within 8% of each other", lambda t: four_gpus((95, 96, 94, 95),
                                                                                    (650, 610, 655, 640)), 12),)),
    Case("GpuNeedsInspection",
         Scenario("an Xid calling for a reboot in a third boot within 30 days",
                  lambda t: [g("llm_agent_gpu_xid_reboot_boots", {**GPU, "pci_bus_id": "00000000:17:00.0"}, 3)], 1),
         Scenario("the same Xid after one reboot (a second boot): a reboot may still fix it",
                  lambda t: [g("llm_agent_gpu_xid_reboot_boots", {**GPU, "pci_bus_id": "00000000:17:00.0"}, 2)], 1)),
    Case("GpuMissing",
         Scenario("a GPU listed before is gone", lambda t: [g("llm_agent_gpu_missing", {"pci_bus_id": "0", "UUID": "x"}, 1)], 1),
         Scenario("every GPU listed", lambda t: [g("llm_agent_gpu_missing", {"pci_bus_id": "0", "UUID": "x"}, 0)], 1)),
    Case("GpuNvlinkErrors",
         Scenario("NVLink recovery errors rising", per_minute("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", GPU, 1), 5),
         Scenario("old recovery errors, none new", per_minute("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", GPU, 0), 15)),
    Case("GpuXidActionRequired",
         Scenario("an Xid calling for a reset a minute ago",
                  lambda t: [g("llm_agent_gpu_xid_last_event_timestamp_seconds", {**GPU, "severity": "critical"},
                               T0 + t - 60)], 1),
         Scenario("the same Xid 20 minutes ago",
                  lambda t: [g("llm_agent_gpu_xid_last_event_timestamp_seconds", {**GPU, "severity": "critical"},
                               T0 + t - 1200)], 1)),
    Case("GpuXidRecurring",
         Scenario("an actionable Xid logged 3 times in the hour",
                  lambda t: [c("llm_agent_gpu_xid_events_total", {**GPU, "xid": "79", "action": "reset_gpu"},
                               1 + min(2, t // 300))], 20),
         Scenario("one actionable Xid (GpuXidActionRequired's page)",
                  lambda t: [c("llm_agent_gpu_xid_events_total", {**GPU, "xid": "79", "action": "reset_gpu"}, 1)], 20)),
    Case("GpuXidError",
         Scenario("NVML counts an Xid and the kernel log cannot be read",
                  lambda t: per_minute("llm_agent_gpu_nvml_xid_events_total", {**GPU, "xid": "79"}, 1)(t) +
                  [g("llm_agent_kernel_log_up", {}, 0)], 5),
         Scenario("the kernel log is read (it pages with the action instead)",
                  lambda t: per_minute("llm_agent_gpu_nvml_xid_events_total", {**GPU, "xid": "79"}, 1)(t) +
                  [g("llm_agent_kernel_log_up", {}, 1)], 5)),
    Case("GpuEccUncorrectable",
         Scenario("a new uncorrectable ECC error", per_minute("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", GPU, 1), 3),
         Scenario("errors from before the window, none new", per_minute("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", GPU, 0), 15)),
    Case("GpuRowRemapFailure",
         Scenario("a row remap failed", lambda t: gpu(ROW_REMAP_FAILURE=1), 1),
         Scenario("no failure", lambda t: gpu(ROW_REMAP_FAILURE=0), 1)),
    Case("GpuRowRemapPending",
         Scenario("a remap pending for 11 minutes", lambda t: gpu(ROW_REMAP_PENDING=1), 11),
         Scenario("pending 5 minutes, then the reset that applies it", after(300, gpu(ROW_REMAP_PENDING=1),
                                                                               gpu(ROW_REMAP_PENDING=0)), 15)),
    Case("GpuPcieLinkNarrow",
         Scenario("x8 in an x16 slot for 11 minutes", lambda t: gpu(PCIE_LINK_WIDTH=8, PCIE_MAX_LINK_WIDTH=16), 11),
         Scenario("full width", lambda t: gpu(PCIE_LINK_WIDTH=16, PCIE_MAX_LINK_WIDTH=16), 11)),
    Case("GpuPcieLinkSlow",
         Scenario("gen 3 of 5 while 90% busy for 11 minutes",
                  lambda t: gpu(PCIE_LINK_GEN=3, PCIE_MAX_LINK_GEN=5, GPU_UTIL=90), 11),
         Scenario("an idle GPU that dropped its link to gen 1 to save power",
                  lambda t: gpu(PCIE_LINK_GEN=1, PCIE_MAX_LINK_GEN=5, GPU_UTIL=0), 15)),
    Case("GpuMemoryHigh",
         Scenario("95% of GPU memory used for 11 minutes", lambda t: gpu(FB_USED=76000, FB_FREE=4000), 11),
         Scenario("85% used (a model and its KV cache)", lambda t: gpu(FB_USED=68000, FB_FREE=12000), 15)),
    Case("GpuUtilizationLow",
         Scenario("10% busy for 40 minutes", lambda t: gpu(GPU_UTIL=10), 40),
         Scenario("60% busy", lambda t: gpu(GPU_UTIL=60), 40)),
    Case("GpuUtilizationHigh",
         Scenario("99% busy for 40 minutes", lambda t: gpu(GPU_UTIL=99), 40),
         Scenario("90% busy: a well-used GPU", lambda t: gpu(GPU_UTIL=90), 40)),
    Case("GpuTemperatureHigh",
         Scenario("90 C for 6 minutes", lambda t: gpu(GPU_TEMP=90), 6),
         Scenario("90 C for 3 minutes, then 70", after(180, gpu(GPU_TEMP=90), gpu(GPU_TEMP=70)), 8)),
    Case("GpuThrottled",
         Scenario("hardware slowdown for 6 minutes",
                  lambda t: [g("llm_agent_gpu_clock_event_reasons", {**GPU, "reason": "hw_slowdown"}, 1)], 6),
         Scenario("held at its power cap (not a fault: GpuPowerAtLimit's business)",
                  lambda t: [g("llm_agent_gpu_clock_event_reasons", {**GPU, "reason": "sw_power_cap"}, 1)], 8)),
    Case("GpuPowerAtLimit",
         Scenario("99% of its power limit for 16 minutes", lambda t: gpu(POWER_USAGE=693, POWER_MGMT_LIMIT=700), 16),
         Scenario("90% of its limit", lambda t: gpu(POWER_USAGE=630, POWER_MGMT_LIMIT=700), 20)),
    Case("HostMemoryHigh",
         Scenario("5% of memory available for 6 minutes",
                  lambda t: [g("node_memory_MemAvailable_bytes", {}, 5), g("node_memory_MemTotal_bytes", {}, 100)], 6),
         Scenario("20% available",
                  lambda t: [g("node_memory_MemAvailable_bytes", {}, 20), g("node_memory_MemTotal_bytes", {}, 100)], 8)),
    Case("HostCpuHigh",
         Scenario("95% busy for 16 minutes", cpu(0.05), 16),
         Scenario("50% busy", cpu(0.5), 20)),
    Case("HostDiskFull",
         Scenario("95% full for 6 minutes",
                  lambda t: [g("node_filesystem_avail_bytes", FS, 5), g("node_filesystem_size_bytes", FS, 100)], 6),
         Scenario("80% full",
                  lambda t: [g("node_filesystem_avail_bytes", FS, 20), g("node_filesystem_size_bytes", FS, 100)], 8)),
    Case("AgentCollectorFailing",
         Scenario("a collector failing for 6 minutes", lambda t: [g("llm_agent_collector_success", {"collector": "x"}, 0)], 6),
         Scenario("one failing cycle now and then",
                  lambda t: [g("llm_agent_collector_success", {"collector": "x"}, 0 if int(t) % 600 == 0 else 1)], 15)),
    Case("AgentOutboxBacklog",
         Scenario("a notification waiting 15 minutes", lambda t: [g("llm_agent_outbox_oldest_age_seconds", {"channel": "x"}, 900)], 2),
         Scenario("a channel retrying for 5 minutes",
                  lambda t: [g("llm_agent_outbox_oldest_age_seconds", {"channel": "x"}, 300)], 5)),
    Case("AgentRemoteWriteBehind",
         Scenario("a receiver away for 15 minutes", lambda t: [g("llm_agent_remote_write_lag_seconds", {"remote_name": "x"},
                                                                 900)], 2),
         Scenario("a receiver away for 5 minutes, the backlog sent since",
                  lambda t: [g("llm_agent_remote_write_lag_seconds", {"remote_name": "x"}, 300)], 5)),
    Case("AgentHistoryNotWritten",
         Scenario("history writes failing for 6 minutes", per_minute("llm_agent_disk_history_write_errors_total", {}, 1), 7),
         Scenario("an old failure, none since", per_minute("llm_agent_disk_history_write_errors_total", {}, 0), 20)),
    Case("FabricManagerDown",
         Scenario("nv-fabricmanager not running for 2 minutes", lambda t: [g("llm_agent_fabric_manager_up", {}, 0)], 2),
         Scenario("restarted within 30 seconds", after(30, [g("llm_agent_fabric_manager_up", {}, 0)],
                                                        [g("llm_agent_fabric_manager_up", {}, 1)]), 3)),
    Case("InfinibandLinkDown",
         Scenario("an active port goes down for 2 minutes", after(300, [g("node_infiniband_state_id", IB, 4)],
                                                                   [g("node_infiniband_state_id", IB, 1)]), 8),
         Scenario("a port never cabled (down all along)", lambda t: [g("node_infiniband_state_id", IB, 1)], 10)),
    Case("InfinibandLinkFlapping",
         Scenario("link_downed rising", per_minute("node_infiniband_link_downed_total", IB, 1), 3),
         Scenario("old link downs, none new", per_minute("node_infiniband_link_downed_total", IB, 0), 15)),
    Case("InfinibandRateDegraded",
         Scenario("200 Gb/s, then 100 for 6 minutes", after(600, [g("node_infiniband_rate_bytes_per_second", IB, 25e9)],
                                                             [g("node_infiniband_rate_bytes_per_second", IB, 12.5e9)]), 16),
         Scenario("a port that was always 100 Gb/s",
                  lambda t: [g("node_infiniband_rate_bytes_per_second", IB, 12.5e9)], 16)),
]


def table() -> str:
    from agent.config import default_config
    from agent.rules.loader import load_rules

    severity = {r.name: r.severity for r in load_rules(default_config()).alerts}
    lines = ["| rule | severity | fires on | never fires on |", "|---|---|---|---|"]
    lines += [f"| `{case.rule}` | {severity[case.rule]} | {case.fires.what} | "
              f"{'; '.join(m.what for m in case.near_misses)} |" for case in CASES]
    return "\n".join(lines) + "\n"


def page() -> str:
    return ("# Alert quality: what each default rule fires on, and what it never fires on\n\n"
            "Every default rule has a scenario that must fire it and a near miss that must not, run on the\n"
            "shipped rules by the real rule engine (`tests/unit/test_alert_quality.py`; the cases are in\n"
            "`tests/support/alert_matrix.py`, and this page is generated from them: `python -m\n"
            "tests.support.alert_matrix`). The target's life (never up, restarting, down, gone) is also\n"
            "tested against the real daemon and real llama-servers (`tests/integration/test_target_life.py`).\n\n"
            + table())


if __name__ == "__main__":
    Path(PAGE).write_text(page())
    sys.stdout.write(f"wrote {PAGE}\n")
