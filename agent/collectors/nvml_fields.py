"""What the NVML collector reads per GPU, under dcgm-exporter's names.

Each reader takes the pynvml module and a device handle and returns {metric: value}; it may
raise pynvml's NVMLError (NotSupported means: omit these metrics for this GPU). Units follow
dcgm-exporter, not Prometheus base units, so its dashboards work unchanged (FB in MiB,
power in W, energy in mJ, clocks in MHz).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

from ..model import COUNTER, GAUGE

MIB = 1 << 20

# metric -> (type, help)
METRICS: Dict[str, Tuple[str, str]] = {
    "DCGM_FI_DEV_SM_CLOCK": (GAUGE, "SM clock frequency in MHz."),
    "DCGM_FI_DEV_MEM_CLOCK": (GAUGE, "Memory clock frequency in MHz."),
    "DCGM_FI_DEV_GPU_TEMP": (GAUGE, "GPU temperature in degrees C."),
    "DCGM_FI_DEV_MEMORY_TEMP": (GAUGE, "Memory temperature in degrees C."),
    "DCGM_FI_DEV_POWER_USAGE": (GAUGE, "Power draw in W."),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": (GAUGE, "Enforced power management limit in W."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": (COUNTER, "Total energy consumed since the driver was loaded, in mJ."),
    "DCGM_FI_DEV_GPU_UTIL": (GAUGE, "GPU utilization in percent."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": (GAUGE, "Memory (copy engine) utilization in percent."),
    "DCGM_FI_DEV_FB_TOTAL": (GAUGE, "Framebuffer memory total in MiB."),
    "DCGM_FI_DEV_FB_FREE": (GAUGE, "Framebuffer memory free in MiB."),
    "DCGM_FI_DEV_FB_USED": (GAUGE, "Framebuffer memory used in MiB."),
    "DCGM_FI_DEV_FB_RESERVED": (GAUGE, "Framebuffer memory reserved by the driver in MiB."),
    "DCGM_FI_DEV_FAN_SPEED": (GAUGE, "Fan speed in percent of its maximum."),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": (COUNTER, "Total number of PCIe retries."),
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": (GAUGE, "PCIe bytes sent, in KB per second over NVML's 20 ms sample "
                                              "(dcgm-exporter declares it a counter; NVML gives a rate)."),
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": (GAUGE, "PCIe bytes received, in KB per second over NVML's 20 ms sample "
                                              "(dcgm-exporter declares it a counter; NVML gives a rate)."),
    "DCGM_FI_DEV_POWER_VIOLATION": (COUNTER, "Time the clocks were held down by the power limit, in us."),
    "DCGM_FI_DEV_THERMAL_VIOLATION": (COUNTER, "Time the clocks were held down by temperature, in us."),
    "DCGM_FI_DEV_ENC_UTIL": (GAUGE, "Encoder utilization in percent."),
    "DCGM_FI_DEV_DEC_UTIL": (GAUGE, "Decoder utilization in percent."),
    "DCGM_FI_DEV_RETIRED_SBE": (COUNTER, "Pages retired for multiple single-bit ECC errors (before row remapping)."),
    "DCGM_FI_DEV_RETIRED_DBE": (COUNTER, "Pages retired for double-bit ECC errors (before row remapping)."),
    "DCGM_FI_DEV_RETIRED_PENDING": (GAUGE, "Whether a page retirement waits for a reboot (1) or not (0)."),
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": (COUNTER, "NVLink flow-control CRC errors, all links."),
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": (COUNTER, "NVLink data CRC errors, all links."),
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": (COUNTER, "NVLink replay errors, all links."),
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": (COUNTER, "NVLink recovery errors, all links."),
    "llm_agent_gpu_nvlink_links_active": (GAUGE, "NVLink links up."),
    "DCGM_FI_DEV_PCIE_LINK_GEN": (GAUGE, "PCIe link generation now (it drops at idle to save power)."),
    "DCGM_FI_DEV_PCIE_LINK_WIDTH": (GAUGE, "PCIe link width now, in lanes."),
    "DCGM_FI_DEV_PCIE_MAX_LINK_GEN": (GAUGE, "Highest PCIe link generation the GPU and the slot can run."),
    "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH": (GAUGE, "Widest PCIe link the GPU and the slot can run, in lanes."),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": (COUNTER, "Single-bit (corrected) ECC errors since the last driver load."),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": (COUNTER, "Double-bit (uncorrected) ECC errors since the last driver load."),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": (COUNTER, "Single-bit (corrected) ECC errors over the GPU's lifetime."),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": (COUNTER, "Double-bit (uncorrected) ECC errors over the GPU's lifetime."),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": (COUNTER, "Rows remapped for correctable errors."),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": (COUNTER, "Rows remapped for uncorrectable errors."),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": (GAUGE, "Whether a row remapping has failed (1) or not (0)."),
    "DCGM_FI_DEV_ROW_REMAP_PENDING": (GAUGE, "Whether a row remapping is pending a GPU reset (1) or not (0)."),
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": (GAUGE, "Bitmask of the reasons the clocks are held down (NVML clocks event reasons)."),
}

# NVML clocks event (throttle) reason bits -> label value of llm_agent_gpu_clock_event_reasons
CLOCK_EVENT_REASONS: List[Tuple[int, str]] = [
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
]


def _clocks(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_SM_CLOCK": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
            "DCGM_FI_DEV_MEM_CLOCK": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)}


def _gpu_temp(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_GPU_TEMP": nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)}


def _memory_temp(nvml: Any, h: Any) -> Dict[str, float]:
    (field,) = nvml.nvmlDeviceGetFieldValues(h, [nvml.NVML_FI_DEV_MEMORY_TEMP])
    if field.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(field.nvmlReturn)
    return {"DCGM_FI_DEV_MEMORY_TEMP": field.value.uiVal}


def _power(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_POWER_USAGE": nvml.nvmlDeviceGetPowerUsage(h) / 1000.0}


def _power_limit(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_POWER_MGMT_LIMIT": nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0}


def _energy(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": nvml.nvmlDeviceGetTotalEnergyConsumption(h)}


def _utilization(nvml: Any, h: Any) -> Dict[str, float]:
    u = nvml.nvmlDeviceGetUtilizationRates(h)
    return {"DCGM_FI_DEV_GPU_UTIL": u.gpu, "DCGM_FI_DEV_MEM_COPY_UTIL": u.memory}


def _memory(nvml: Any, h: Any) -> Dict[str, float]:
    try:  # v2 also reports what the driver reserves (R510+)
        m = nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
        reserved = {"DCGM_FI_DEV_FB_RESERVED": m.reserved / MIB}
    except nvml.NVMLError as e:
        if e.value not in (nvml.NVML_ERROR_FUNCTION_NOT_FOUND, nvml.NVML_ERROR_NOT_SUPPORTED,
                           nvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
            raise
        m, reserved = nvml.nvmlDeviceGetMemoryInfo(h), {}
    return {"DCGM_FI_DEV_FB_TOTAL": m.total / MIB, "DCGM_FI_DEV_FB_FREE": m.free / MIB,
            "DCGM_FI_DEV_FB_USED": m.used / MIB, **reserved}


def _fan(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_FAN_SPEED": nvml.nvmlDeviceGetFanSpeed(h)}


def _pcie_replay(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_PCIE_REPLAY_COUNTER": nvml.nvmlDeviceGetPcieReplayCounter(h)}


def _pcie_link(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_PCIE_LINK_GEN": nvml.nvmlDeviceGetCurrPcieLinkGeneration(h),
            "DCGM_FI_DEV_PCIE_LINK_WIDTH": nvml.nvmlDeviceGetCurrPcieLinkWidth(h),
            "DCGM_FI_DEV_PCIE_MAX_LINK_GEN": nvml.nvmlDeviceGetMaxPcieLinkGeneration(h),
            "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH": nvml.nvmlDeviceGetMaxPcieLinkWidth(h)}


def _pcie_throughput(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_PCIE_TX_THROUGHPUT": nvml.nvmlDeviceGetPcieThroughput(h, nvml.NVML_PCIE_UTIL_TX_BYTES),
            "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": nvml.nvmlDeviceGetPcieThroughput(h, nvml.NVML_PCIE_UTIL_RX_BYTES)}


def _violations(nvml: Any, h: Any) -> Dict[str, float]:
    power = nvml.nvmlDeviceGetViolationStatus(h, nvml.NVML_PERF_POLICY_POWER).violationTime
    thermal = nvml.nvmlDeviceGetViolationStatus(h, nvml.NVML_PERF_POLICY_THERMAL).violationTime
    return {"DCGM_FI_DEV_POWER_VIOLATION": power / 1000.0, "DCGM_FI_DEV_THERMAL_VIOLATION": thermal / 1000.0}  # ns -> us


def _enc_dec(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_ENC_UTIL": nvml.nvmlDeviceGetEncoderUtilization(h)[0],
            "DCGM_FI_DEV_DEC_UTIL": nvml.nvmlDeviceGetDecoderUtilization(h)[0]}


def _retired_pages(nvml: Any, h: Any) -> Dict[str, float]:
    """Dynamic page retirement (Volta and Turing); Ampere and newer remap rows instead and say
    NotSupported here."""
    sbe = nvml.nvmlDeviceGetRetiredPages(h, nvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
    dbe = nvml.nvmlDeviceGetRetiredPages(h, nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    pending = nvml.nvmlDeviceGetRetiredPagesPendingStatus(h)
    return {"DCGM_FI_DEV_RETIRED_SBE": len(sbe), "DCGM_FI_DEV_RETIRED_DBE": len(dbe),
            "DCGM_FI_DEV_RETIRED_PENDING": 1 if pending else 0}


NVLINK_COUNTERS = (("NVML_NVLINK_ERROR_DL_CRC_FLIT", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"),
                   ("NVML_NVLINK_ERROR_DL_CRC_DATA", "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"),
                   ("NVML_NVLINK_ERROR_DL_REPLAY", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"),
                   ("NVML_NVLINK_ERROR_DL_RECOVERY", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"))


def _nvlink(nvml: Any, h: Any) -> Dict[str, float]:
    """Error counters summed over the links that are up (dcgm-exporter's *_TOTAL fields). A GPU
    without NVLink says NotSupported on link 0: omitted."""
    totals = {metric: 0.0 for _, metric in NVLINK_COUNTERS}
    active = 0
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        try:
            state = nvml.nvmlDeviceGetNvLinkState(h, link)
        except nvml.NVMLError as e:
            if link == 0 or e.value != nvml.NVML_ERROR_INVALID_ARGUMENT:
                raise
            break  # past the GPU's last link
        if state != nvml.NVML_FEATURE_ENABLED:
            continue
        active += 1
        for counter, metric in NVLINK_COUNTERS:
            totals[metric] += nvml.nvmlDeviceGetNvLinkErrorCounter(h, link, getattr(nvml, counter))
    return {**totals, "llm_agent_gpu_nvlink_links_active": active}


def _ecc(error_type: str, counter_type: str, metric: str) -> Callable[[Any, Any], Dict[str, float]]:
    def read(nvml: Any, h: Any) -> Dict[str, float]:
        return {metric: nvml.nvmlDeviceGetTotalEccErrors(h, getattr(nvml, error_type), getattr(nvml, counter_type))}
    return read


def _remapped_rows(nvml: Any, h: Any) -> Dict[str, float]:
    corr, unc, pending, failure = nvml.nvmlDeviceGetRemappedRows(h)
    return {"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": corr, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": unc,
            "DCGM_FI_DEV_ROW_REMAP_PENDING": 1 if pending else 0, "DCGM_FI_DEV_ROW_REMAP_FAILURE": 1 if failure else 0}


def clock_event_reasons(nvml: Any, h: Any) -> int:
    """The current clocks event reasons bitmask (the newer name first, then the old one)."""
    read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(read(h))


def _throttle(nvml: Any, h: Any) -> Dict[str, float]:
    return {"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": clock_event_reasons(nvml, h)}


# (name for logs, reader); each group is skipped on its own when unsupported
READERS: List[Tuple[str, Callable[[Any, Any], Dict[str, float]]]] = [
    ("clocks", _clocks),
    ("gpu temperature", _gpu_temp),
    ("memory temperature", _memory_temp),
    ("power usage", _power),
    ("power limit", _power_limit),
    ("energy", _energy),
    ("utilization", _utilization),
    ("memory", _memory),
    ("fan speed", _fan),
    ("pcie replay counter", _pcie_replay),
    ("pcie link", _pcie_link),
    ("pcie throughput", _pcie_throughput),
    ("violation time", _violations),
    ("encoder and decoder", _enc_dec),
    ("retired pages", _retired_pages),
    ("nvlink", _nvlink),
    ("ecc sbe volatile", _ecc("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL")),
    ("ecc dbe volatile", _ecc("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL")),
    ("ecc sbe aggregate", _ecc("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL")),
    ("ecc dbe aggregate", _ecc("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL")),
    ("remapped rows", _remapped_rows),
    ("clock event reasons", _throttle),
]
