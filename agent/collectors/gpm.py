"""DCGM's profiling metrics without DCGM: NVML's GPU Performance Monitoring (GPM, Hopper and
newer) turned into dcgm-exporter's `DCGM_FI_PROF_*` names and units, so "is the GPU actually
busy" (SM activity, tensor pipes, DRAM bandwidth) is on :9400 without the DCGM daemon.

GPM works on two samples: each cycle takes one and computes the metrics over the interval
since the previous cycle's (the first cycle only takes a sample). NVML gives percentages and
MiB/s; DCGM's profiling fields are ratios (0-1) and bytes per second, converted here. A GPU
that does not support GPM (nvmlGpmQueryDeviceSupport, or an older driver or pynvml) is left
out; a metric NVML cannot compute on a GPU (its own nvmlReturn) is omitted, never a zero.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)
MIB = 1 << 20

# (NVML GPM metric constant, DCGM field name, scale to DCGM's unit)
METRICS: List[Tuple[str, str, float]] = [
    ("NVML_GPM_METRIC_GRAPHICS_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_SM_UTIL", "DCGM_FI_PROF_SM_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_SM_OCCUPANCY", "DCGM_FI_PROF_SM_OCCUPANCY", 0.01),
    ("NVML_GPM_METRIC_ANY_TENSOR_UTIL", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_DRAM_BW_UTIL", "DCGM_FI_PROF_DRAM_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_FP64_UTIL", "DCGM_FI_PROF_PIPE_FP64_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_FP32_UTIL", "DCGM_FI_PROF_PIPE_FP32_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_FP16_UTIL", "DCGM_FI_PROF_PIPE_FP16_ACTIVE", 0.01),
    ("NVML_GPM_METRIC_PCIE_TX_PER_SEC", "DCGM_FI_PROF_PCIE_TX_BYTES", MIB),
    ("NVML_GPM_METRIC_PCIE_RX_PER_SEC", "DCGM_FI_PROF_PCIE_RX_BYTES", MIB),
    ("NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC", "DCGM_FI_PROF_NVLINK_TX_BYTES", MIB),
    ("NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC", "DCGM_FI_PROF_NVLINK_RX_BYTES", MIB),
]
HELP = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics or compute engine was active (GPM).",
    "DCGM_FI_PROF_SM_ACTIVE": "Ratio of cycles an SM had at least one warp assigned (GPM).",
    "DCGM_FI_PROF_SM_OCCUPANCY": "Ratio of warps resident on an SM to its maximum (GPM).",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "Ratio of cycles any tensor pipe was active (GPM).",
    "DCGM_FI_PROF_DRAM_ACTIVE": "Ratio of cycles the memory interface was busy (GPM).",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": "Ratio of cycles the FP64 pipe was active (GPM).",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": "Ratio of cycles the FP32 pipe was active (GPM).",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": "Ratio of cycles the FP16 pipe was active (GPM).",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "PCIe bytes per second sent by the GPU (GPM).",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "PCIe bytes per second received by the GPU (GPM).",
    "DCGM_FI_PROF_NVLINK_TX_BYTES": "NVLink bytes per second sent, all links (GPM).",
    "DCGM_FI_PROF_NVLINK_RX_BYTES": "NVLink bytes per second received, all links (GPM).",
}


class GpmSampler:
    """One GPU's (or one MIG GPU instance's) GPM samples: `read()` each cycle returns the
    metrics since the last call."""

    def __init__(self, nvml: Any, handle: Any, gpu_instance: Optional[int] = None):
        self.nvml = nvml
        self.handle = handle
        self.gpu_instance = gpu_instance
        self.previous: Optional[Any] = None
        self.supported = bool(nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)

    def read(self) -> Dict[str, float]:
        nvml = self.nvml
        if not self.supported:
            return {}
        sample = nvml.nvmlGpmSampleAlloc()
        try:
            if self.gpu_instance is None:
                nvml.nvmlGpmSampleGet(self.handle, sample)
            else:
                nvml.nvmlGpmMigSampleGet(self.handle, self.gpu_instance, sample)
        except nvml.NVMLError:
            nvml.nvmlGpmSampleFree(sample)
            raise
        previous, self.previous = self.previous, sample
        if previous is None:
            return {}
        try:
            return self._metrics(previous, sample)
        finally:
            nvml.nvmlGpmSampleFree(previous)

    def _metrics(self, first: Any, second: Any) -> Dict[str, float]:
        nvml = self.nvml
        wanted = [(getattr(nvml, const), name, scale) for const, name, scale in METRICS if hasattr(nvml, const)]
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(wanted)
        request.sample1, request.sample2 = first, second
        for i, (metric_id, _, _) in enumerate(wanted):
            request.metrics[i].metricId = metric_id
        nvml.nvmlGpmMetricsGet(request)
        out = {}
        for i, (_, name, scale) in enumerate(wanted):
            m = request.metrics[i]
            if m.nvmlReturn == nvml.NVML_SUCCESS:
                out[name] = float(m.value) * scale
        return out

    def close(self) -> None:
        if self.previous is not None:
            try:
                self.nvml.nvmlGpmSampleFree(self.previous)
            except self.nvml.NVMLError:
                pass
            self.previous = None
