"""A fake `pynvml` shaped after the real one (nvidia-ml-py), for driving the NVML collector.

Constants and the NVMLError class hierarchy are taken from the real module, so
`NVMLError(NVML_ERROR_NOT_SUPPORTED)` is the real `NVMLError_NotSupported`, exactly what the
collector meets on a real host. Only the device functions are simulated, from `FakeGpu`
descriptions: a reading set to None raises NotSupported, `lost=True` makes every call on
that GPU raise GpuIsLost, and `driver_loaded=False` makes nvmlInit raise DriverNotLoaded.
"""

from __future__ import annotations

import queue
import time
import types
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pynvml as real

NVMLError = real.NVMLError


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    pci_bus_id: str = "00000000:17:00.0"
    minor: int = 0
    util: Tuple[int, int] = (87, 35)  # gpu %, memory %
    fb: Optional[Tuple[int, int, int, int]] = (81559 << 20, 58000 << 20, 23000 << 20, 559 << 20)  # total, used, free, reserved
    memory_v2: bool = True
    temp: Optional[int] = 45
    memory_temp: Optional[int] = 52
    power_mw: Optional[int] = 312_000
    power_limit_mw: Optional[int] = 700_000
    energy_mj: Optional[int] = 123_456_789
    clocks: Tuple[int, int] = (1980, 2619)  # SM, memory MHz
    fan: Optional[int] = None  # data-centre boards have no fan reading
    pcie_replay: Optional[int] = 0
    pcie_link: Optional[Tuple[int, int, int, int]] = (5, 16, 5, 16)  # current gen, width, max gen, width
    pcie_kbps: Optional[Tuple[int, int]] = (1200, 350)  # TX, RX KB/s
    violation_ns: Optional[Tuple[int, int]] = (1_500_000_000, 250_000_000)  # power, thermal (ns since driver load)
    enc_dec: Optional[Tuple[int, int]] = (0, 12)  # encoder, decoder utilisation %
    retired_pages: Optional[Tuple[int, int, bool]] = None  # SBE pages, DBE pages, pending (Ampere+: row remapping)
    # per link: (enabled, {counter: value}); None: no NVLink (PCIe boards)
    gpm: Optional[Dict[str, float]] = None  # NVML_GPM_METRIC_* name -> value; None: no GPM (pre-Hopper)
    # MIG: None = the board has no MIG (NotSupported); else its GPU instances per slot (None: an empty
    # slot) as (instance id, profile, used bytes, total bytes)
    mig: Optional[List[Optional[Tuple[int, str, int, int]]]] = None
    nvlinks: Optional[List[Tuple[bool, Dict[int, int]]]] = field(default_factory=lambda: [
        (True, {0: 2, 1: 0, 2: 5, 3: 1}), (True, {0: 1, 1: 1, 2: 0, 3: 0}), (False, {})])
    ecc: Optional[Dict[Tuple[int, int], int]] = field(default_factory=lambda: {(0, 0): 3, (1, 0): 0, (0, 1): 10, (1, 1): 0})
    remapped_rows: Optional[Tuple[int, int, int, int]] = (0, 0, 0, 0)
    throttle: Optional[int] = 0
    processes: List[Tuple[int, Optional[int]]] = field(default_factory=list)  # (pid, bytes or None)
    # (pid, timestamp us, sm, memory, encoder, decoder); None: NotSupported (as on pre-Volta boards)
    process_utilization: Optional[List[Tuple[int, int, int, int, int, int]]] = field(default_factory=list)
    lost: bool = False
    errors: Dict[str, int] = field(default_factory=dict)  # function name -> NVML error code to raise
    # function name -> what a call waits for before it answers, as a wedged driver makes it: a
    # threading.Event (until it is set: set it to end the hang) or seconds
    hangs: Dict[str, object] = field(default_factory=dict)


# Pids beyond Linux's largest (pid_max at most 2^22): no process on any host has them, so what
# the agent reads about them from /proc (name, cgroup) is the same everywhere.
NO_SUCH_PID = (1 << 22) + 4242


class _Handle:
    def __init__(self, index: int):
        self.index = index
        self.value = 0x1000 + index  # like a ctypes pointer's address


class _MigHandle:
    """A MIG device handle: the parent GPU's index and the slot."""

    def __init__(self, index: int, slot: int):
        self.index, self.slot = index, slot
        self.value = 0x2000 + index * 64 + slot


class FakeNvml(types.ModuleType):
    """The fake module. Tests hold it to change state: `gpus`, `driver_loaded`, `inject_xid()`."""

    def __init__(self, gpus: List[FakeGpu], driver_loaded: bool = True, library_found: bool = True,
                 driver_version: str = "550.54.15"):
        super().__init__("pynvml")
        for name in dir(real):
            if name.startswith(("NVML_", "NVMLError", "nvmlMemory_v", "nvmlEventType", "nvmlClocksEventReason",
                                "nvmlClocksThrottleReason")):
                setattr(self, name, getattr(real, name))
        self.gpus = gpus
        self.gpm_samples_live = 0  # allocated and not freed: a leak test
        self.gpm_taken = 0
        self.driver_loaded = driver_loaded
        self.library_found = library_found
        self.driver_version = driver_version
        self.init_calls = 0
        self.initialized = False
        self._sets: List[types.SimpleNamespace] = []  # live event sets, each with its own queue, as NVML's
        self._refs = 0  # nvmlInit is reference counted: NVML shuts down at the last nvmlShutdown
        self.freed_under_wait = 0  # an event set freed while a thread waited on it (a crash on a real driver)

    # -- helpers ----------------------------------------------------------------------------

    def _raise(self, code: int) -> None:
        raise real.NVMLError(code)

    def _check_init(self) -> None:
        if not self.initialized:
            self._raise(real.NVML_ERROR_UNINITIALIZED)
        if not self.driver_loaded:
            self._raise(real.NVML_ERROR_DRIVER_NOT_LOADED)

    def _gpu(self, handle: _Handle, fn: str) -> FakeGpu:
        self._check_init()
        gpu = self.gpus[handle.index]
        if gpu.lost:
            self._raise(real.NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.errors:
            self._raise(gpu.errors[fn])
        hang = gpu.hangs.get(fn)
        if hang is not None:
            if isinstance(hang, (int, float)):
                time.sleep(hang)
            else:
                hang.wait()  # type: ignore[attr-defined]
        return gpu

    def _value(self, value, code: int = real.NVML_ERROR_NOT_SUPPORTED):
        if value is None:
            self._raise(code)
        return value

    def break_event_wait(self, code: int = real.NVML_ERROR_UNKNOWN) -> None:
        """The next nvmlEventSetWait fails with `code` (a driver error mid-run)."""
        for event_set in list(self._sets):
            event_set.events.put(code)

    def inject_xid(self, index: int, xid: int) -> None:
        """Simulate the driver reporting XID `xid` on GPU `index`: every set registered for it gets it."""
        for event_set in list(self._sets):
            if index in event_set.registered:
                event_set.events.put(types.SimpleNamespace(device=_Handle(index), eventType=real.nvmlEventTypeXidCriticalError,
                                                           eventData=xid, gpuInstanceId=0, computeInstanceId=0))

    # -- library ----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if not self.library_found:
            self._raise(real.NVML_ERROR_LIBRARY_NOT_FOUND)
        if not self.driver_loaded:
            self._raise(real.NVML_ERROR_DRIVER_NOT_LOADED)
        self._refs += 1
        self.initialized = True

    def nvmlShutdown(self) -> None:
        """As NVML: one nvmlShutdown per nvmlInit; the library shuts down at the last."""
        self._refs = max(0, self._refs - 1)
        self.initialized = self._refs > 0

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._check_init()
        return "12." + self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check_init()
        if index >= len(self.gpus):
            self._raise(real.NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            self._raise(real.NVML_ERROR_GPU_IS_LOST)
        return _Handle(index)

    # -- identity -----------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, h):
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, h):
        g = self._gpu(h, "nvmlDeviceGetName")
        if isinstance(h, _MigHandle):
            return f"{g.name} MIG {g.mig[h.slot][1]}"
        return g.name

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=self._gpu(h, "nvmlDeviceGetPciInfo").pci_bus_id)

    def nvmlDeviceGetMinorNumber(self, h):
        return self._gpu(h, "nvmlDeviceGetMinorNumber").minor

    # -- readings -----------------------------------------------------------------------------

    def nvmlDeviceGetClockInfo(self, h, kind):
        g = self._gpu(h, "nvmlDeviceGetClockInfo")
        return g.clocks[0] if kind == real.NVML_CLOCK_SM else g.clocks[1]

    def nvmlDeviceGetTemperature(self, h, sensor):
        return self._value(self._gpu(h, "nvmlDeviceGetTemperature").temp)

    def nvmlDeviceGetFieldValues(self, h, field_ids):
        g = self._gpu(h, "nvmlDeviceGetFieldValues")
        out = []
        for fid in field_ids:
            value = g.memory_temp if fid == real.NVML_FI_DEV_MEMORY_TEMP else None
            ret = real.NVML_SUCCESS if value is not None else real.NVML_ERROR_NOT_SUPPORTED
            out.append(types.SimpleNamespace(fieldId=fid, nvmlReturn=ret, value=types.SimpleNamespace(uiVal=value or 0)))
        return out

    def nvmlDeviceGetPowerUsage(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj)

    def nvmlDeviceGetUtilizationRates(self, h):
        gpu, mem = self._gpu(h, "nvmlDeviceGetUtilizationRates").util
        return types.SimpleNamespace(gpu=gpu, memory=mem)

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        if isinstance(h, _MigHandle):
            _, _, used, total = g.mig[h.slot]
            return types.SimpleNamespace(total=total, used=used, free=total - used)
        total, used, free, reserved = self._value(g.fb)
        if version is not None:
            if not g.memory_v2:
                self._raise(real.NVML_ERROR_FUNCTION_NOT_FOUND)
            return types.SimpleNamespace(version=version, total=total, used=used, free=free, reserved=reserved)
        return types.SimpleNamespace(total=total, used=used + reserved, free=free)

    def nvmlDeviceGetFanSpeed(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetFanSpeed").fan)

    def nvmlDeviceGetPcieReplayCounter(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetPcieReplayCounter").pcie_replay)

    def nvmlDeviceGetProcessUtilization(self, h, last_seen):
        samples = self._value(self._gpu(h, "nvmlDeviceGetProcessUtilization").process_utilization)
        newer = [s for s in samples if s[1] > last_seen]
        if not newer:  # the real call: no sample since last_seen is NVML_ERROR_NOT_FOUND
            self._raise(real.NVML_ERROR_NOT_FOUND)
        return [types.SimpleNamespace(pid=p, timeStamp=t, smUtil=sm, memUtil=mem, encUtil=enc, decUtil=dec)
                for p, t, sm, mem, enc, dec in newer]

    def nvmlDeviceGetPcieThroughput(self, h, counter):
        tx, rx = self._value(self._gpu(h, "nvmlDeviceGetPcieThroughput").pcie_kbps)
        return tx if counter == real.NVML_PCIE_UTIL_TX_BYTES else rx

    def nvmlDeviceGetViolationStatus(self, h, policy):
        power, thermal = self._value(self._gpu(h, "nvmlDeviceGetViolationStatus").violation_ns)
        return types.SimpleNamespace(referenceTime=0, violationTime=power if policy == real.NVML_PERF_POLICY_POWER
                                     else thermal)

    def nvmlDeviceGetEncoderUtilization(self, h):
        return [self._value(self._gpu(h, "nvmlDeviceGetEncoderUtilization").enc_dec)[0], 167000]

    def nvmlDeviceGetDecoderUtilization(self, h):
        return [self._value(self._gpu(h, "nvmlDeviceGetDecoderUtilization").enc_dec)[1], 167000]

    def nvmlDeviceGetRetiredPages(self, h, cause):
        sbe, dbe, _ = self._value(self._gpu(h, "nvmlDeviceGetRetiredPages").retired_pages)
        return list(range(sbe if cause == real.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS else dbe))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h):
        return int(self._value(self._gpu(h, "nvmlDeviceGetRetiredPagesPendingStatus").retired_pages)[2])

    def nvmlDeviceGetNvLinkState(self, h, link):
        links = self._value(self._gpu(h, "nvmlDeviceGetNvLinkState").nvlinks)
        if link >= len(links):  # the real call: a link the GPU does not have
            self._raise(real.NVML_ERROR_INVALID_ARGUMENT)
        return real.NVML_FEATURE_ENABLED if links[link][0] else real.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, h, link, counter):
        links = self._value(self._gpu(h, "nvmlDeviceGetNvLinkErrorCounter").nvlinks)
        return links[link][1][counter]

    # GPM, shaped as the real calls: a sample is allocated, filled, and two of them give metrics
    def nvmlGpmQueryDeviceSupport(self, h):
        return types.SimpleNamespace(version=1, isSupportedDevice=int(self._gpu(h, "nvmlGpmQueryDeviceSupport").gpm
                                                                      is not None))

    def nvmlGpmSampleAlloc(self):
        self.gpm_samples_live += 1
        return types.SimpleNamespace(gpu=None, taken=0)

    def nvmlGpmSampleGet(self, h, sample):
        self._gpu(h, "nvmlGpmSampleGet")
        self.gpm_taken += 1
        sample.gpu, sample.taken = h.index, self.gpm_taken
        return sample

    def nvmlGpmSampleFree(self, sample):
        self.gpm_samples_live -= 1

    def c_nvmlGpmMetricsGet_t(self):
        metric = lambda: types.SimpleNamespace(metricId=0, nvmlReturn=real.NVML_SUCCESS, value=0.0)  # noqa: E731
        return types.SimpleNamespace(version=0, numMetrics=0, sample1=None, sample2=None,
                                     metrics=[metric() for _ in range(real.NVML_GPM_METRIC_MAX)])

    def nvmlGpmMetricsGet(self, request):
        assert request.version == real.NVML_GPM_METRICS_GET_VERSION and request.sample1.taken < request.sample2.taken
        values = self.gpus[request.sample2.gpu].gpm or {}
        by_id = {getattr(real, name): v for name, v in values.items()}
        for m in request.metrics[:request.numMetrics]:
            if m.metricId in by_id:
                m.value = by_id[m.metricId]
            else:  # the real call: a metric this GPU cannot compute has its own error
                m.nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
        return request

    def nvmlDeviceGetMigMode(self, h):
        g = self._gpu(h, "nvmlDeviceGetMigMode")
        mode = real.NVML_DEVICE_MIG_ENABLE if self._value(g.mig) else real.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return len(self._value(self._gpu(h, "nvmlDeviceGetMaxMigDeviceCount").mig))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, slot):
        g = self._gpu(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        if g.mig is None or slot >= len(g.mig) or g.mig[slot] is None:
            self._raise(real.NVML_ERROR_NOT_FOUND)
        return _MigHandle(h.index, slot)

    def nvmlDeviceGetGpuInstanceId(self, h):
        return self._gpu(h, "nvmlDeviceGetGpuInstanceId").mig[h.slot][0]

    def nvmlGpmMigSampleGet(self, h, instance, sample):
        self.nvmlGpmSampleGet(h, sample)
        sample.instance = instance
        return sample

    def nvmlSystemGetCudaDriverVersion(self):
        self._check_init()
        return 12040

    # PCIe link: the real module's four calls (current and maximum generation and width)
    def nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetCurrPcieLinkGeneration").pcie_link)[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetCurrPcieLinkWidth").pcie_link)[1]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetMaxPcieLinkGeneration").pcie_link)[2]

    def nvmlDeviceGetMaxPcieLinkWidth(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetMaxPcieLinkWidth").pcie_link)[3]

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        ecc = self._value(self._gpu(h, "nvmlDeviceGetTotalEccErrors").ecc)
        return ecc[(error_type, counter_type)]

    def nvmlDeviceGetRemappedRows(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetRemappedRows").remapped_rows)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._value(self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").throttle)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        g = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=mem, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
                for pid, mem in g.processes]

    # -- events -------------------------------------------------------------------------------

    def nvmlEventSetCreate(self):
        self._check_init()
        event_set = types.SimpleNamespace(registered=[], events=queue.Queue(), waiting=0)
        self._sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, h, event_types, event_set):
        self._gpu(h, "nvmlDeviceRegisterEvents")
        event_set.registered.append(h.index)

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        event_set.waiting += 1
        try:
            event = event_set.events.get(timeout=timeout_ms / 1000.0)
        except queue.Empty:
            self._raise(real.NVML_ERROR_TIMEOUT)
        finally:
            event_set.waiting -= 1
        if isinstance(event, int):
            self._raise(event)
        return event

    def nvmlEventSetFree(self, event_set):
        if event_set.waiting:
            self.freed_under_wait += 1
        if event_set in self._sets:
            self._sets.remove(event_set)


def three_gpus() -> List[FakeGpu]:
    """The named scenario: GPU 0 healthy, GPU 1 without power readings, GPU 2 lost."""
    return [
        FakeGpu(uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000", pci_bus_id="00000000:17:00.0", minor=0,
                processes=[(NO_SUCH_PID, 56 << 30), (NO_SUCH_PID + 1, None)]),
        FakeGpu(name="NVIDIA A10", uuid="GPU-bbbbbbbb-1111-1111-1111-111111111111", pci_bus_id="00000000:31:00.0",
                minor=1, power_mw=None, energy_mj=None, memory_temp=None, fan=30, throttle=0x44,
                ecc=None, remapped_rows=None, memory_v2=False),
        FakeGpu(uuid="GPU-cccccccc-2222-2222-2222-222222222222", pci_bus_id="00000000:b1:00.0", minor=2, lost=True),
    ]
