"""A fake `pynvml` shaped after the real one (nvidia-ml-py), for driving the NVML collector.

Constants and the NVMLError class hierarchy are taken from the real module, so
`NVMLError(NVML_ERROR_NOT_SUPPORTED)` is the real `NVMLError_NotSupported`, exactly what the
collector meets on a real host. Only the device functions are simulated, from `FakeGpu`
descriptions: a reading set to None raises NotSupported, `lost=True` makes every call on
that GPU raise GpuIsLost, and `driver_loaded=False` makes nvmlInit raise DriverNotLoaded.
"""

from __future__ import annotations

import queue
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
    ecc: Optional[Dict[Tuple[int, int], int]] = field(default_factory=lambda: {(0, 0): 3, (1, 0): 0, (0, 1): 10, (1, 1): 0})
    remapped_rows: Optional[Tuple[int, int, int, int]] = (0, 0, 0, 0)
    throttle: Optional[int] = 0
    processes: List[Tuple[int, Optional[int]]] = field(default_factory=list)  # (pid, bytes or None)
    # (pid, timestamp us, sm, memory, encoder, decoder); None: NotSupported (as on pre-Volta boards)
    process_utilization: Optional[List[Tuple[int, int, int, int, int, int]]] = field(default_factory=list)
    lost: bool = False
    errors: Dict[str, int] = field(default_factory=dict)  # function name -> NVML error code to raise


# Pids beyond Linux's largest (pid_max at most 2^22): no process on any host has them, so what
# the agent reads about them from /proc (name, cgroup) is the same everywhere.
NO_SUCH_PID = (1 << 22) + 4242


class _Handle:
    def __init__(self, index: int):
        self.index = index
        self.value = 0x1000 + index  # like a ctypes pointer's address


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
        self.driver_loaded = driver_loaded
        self.library_found = library_found
        self.driver_version = driver_version
        self.init_calls = 0
        self.initialized = False
        self._events: "queue.Queue" = queue.Queue()

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
        return gpu

    def _value(self, value, code: int = real.NVML_ERROR_NOT_SUPPORTED):
        if value is None:
            self._raise(code)
        return value

    def break_event_wait(self, code: int = real.NVML_ERROR_UNKNOWN) -> None:
        """The next nvmlEventSetWait fails with `code` (a driver error mid-run)."""
        self._events.put(code)

    def inject_xid(self, index: int, xid: int) -> None:
        """Simulate the driver reporting XID `xid` on GPU `index`."""
        self._events.put(types.SimpleNamespace(device=_Handle(index), eventType=real.nvmlEventTypeXidCriticalError,
                                               eventData=xid, gpuInstanceId=0, computeInstanceId=0))

    # -- library ----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if not self.library_found:
            self._raise(real.NVML_ERROR_LIBRARY_NOT_FOUND)
        if not self.driver_loaded:
            self._raise(real.NVML_ERROR_DRIVER_NOT_LOADED)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.initialized = False

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
        return self._gpu(h, "nvmlDeviceGetName").name

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
        return types.SimpleNamespace(registered=[])

    def nvmlDeviceRegisterEvents(self, h, event_types, event_set):
        self._gpu(h, "nvmlDeviceRegisterEvents")
        event_set.registered.append(h.index)

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        try:
            event = self._events.get(timeout=timeout_ms / 1000.0)
        except queue.Empty:
            self._raise(real.NVML_ERROR_TIMEOUT)
        if isinstance(event, int):
            self._raise(event)
        return event

    def nvmlEventSetFree(self, event_set):
        pass


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
