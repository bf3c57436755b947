"""Every GPU through NVML, under dcgm-exporter's names and labels.

Failure handling follows gpustat/nvitop: a field the GPU does not support is omitted (and
logged once); a lost GPU is `llm_agent_gpu_up 0` while the others carry on; a missing
library or driver is reported and retried with exponential backoff; a call that never returns
(a wedged driver) stalls only its GPU (nvmlcalls.py); NVML never takes the agent down. The
pynvml module is passed in, so tests drive this code with a fake.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..labels import Labels
from ..model import GAUGE, MetricFamily, Problem, Sample, counter, gauge, intern_labels
from .nvml_fields import CLOCK_EVENT_REASONS, METRICS, MIB, READERS
from .gpm import HELP as GPM_HELP, GpmSampler
from .gpu_inventory import GpuInventory
from .gpu_owner import owner
from .nvmlcalls import GpuReader
from ..plugins import Context, register
from .xid import WAIT_MS, XidWatcher
import psutil

log = logging.getLogger(__name__)

UP, UP_HELP = "llm_agent_gpu_up", "Whether the GPU answers NVML (1) or is lost or broken (0)."

# Errors after which a GPU's other readings cannot be trusted this cycle
_GPU_BROKEN = ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_UNKNOWN", "NVML_ERROR_RESET_REQUIRED", "NVML_ERROR_GPU_NOT_FOUND")
# Errors meaning the library as a whole is gone: re-initialise
_LIBRARY_GONE = ("NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH")
_HINTS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "libnvidia-ml.so.1 was not found: install the NVIDIA driver (or ignore this on a "
                                    "host without GPUs; [collectors.nvml] enabled = false silences it)",
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA kernel driver is not loaded: check `nvidia-smi` and `dmesg`, or `modprobe nvidia`",
    "NVML_ERROR_NO_PERMISSION": "no permission to open /dev/nvidia*: run the agent in the video group or allow the devices in its unit",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "the driver library and kernel module versions differ (a driver upgrade "
                                          "without reboot): reboot or reload the module",
}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class Gpu:
    index: int
    handle: Any
    labels: Dict[str, str]


class NvmlCollector:
    """Reads all GPUs each cycle; the XID thread counts events between cycles."""

    name = "nvml"

    def __init__(self, nvml: Any = None, hostname: str = "", xid_events: bool = True, process_memory: bool = True,
                 retry_max: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 process_name: Optional[Callable[[int], str]] = None, xid_wait_ms: int = WAIT_MS,
                 state_dir: str = "", expected_gpus: int = 0,
                 process_owner: Optional[Callable[[int], Dict[str, str]]] = None, call_wait: float = 2.0):
        if nvml is None:
            import pynvml  # start-up cost, and optional: only where NVML is used (nvidia-ml-py)

            nvml = pynvml
        self.nvml: Any = nvml
        # per-GPU readings in a thread that a call that never returns cannot take with it
        self.call_wait = call_wait  # how long a cycle waits for the GPUs' readings before calling a call stuck
        self.reader = GpuReader(self._read_gpu, key=lambda g: g.index)
        self.hostname = hostname
        self.xid_events = xid_events
        self.xid_wait_ms = xid_wait_ms
        self.process_memory = process_memory
        self.retry_max = retry_max
        self.clock = clock
        self.process_name = process_name or _process_name
        self.process_owner = process_owner or owner
        # pid -> its name and owner labels, kept while NVML keeps listing the pid: reading them is
        # two /proc files per process per GPU per cycle (the costliest part of this collector)
        # for something that does not change in a process's lifetime
        self._pids: Dict[int, Dict[str, str]] = {}
        self._pids_seen: Set[int] = set()
        self._utilization_seen: Dict[int, int] = {}  # per GPU: the last sample's timestamp (us)
        self._gpm_samplers: Dict[Tuple[int, Optional[int]], GpmSampler] = {}  # (GPU, MIG instance): last sample
        self.problems: List[Problem] = []
        self.inventory = GpuInventory(state_dir, expected_gpus)
        self.gpus: List[Gpu] = []
        self.init_error = ""
        self._initialized = False
        self._next_init = 0.0
        self._backoff = 1.0
        self._init_failures = 0
        self._logged: Set[Tuple[int, str, str]] = set()
        self._field_errors: Dict[str, int] = {}
        self._xid: Optional[XidWatcher] = None
        self._versions: Dict[str, str] = {}
        self._unsupported: Set[Tuple[int, str]] = set()  # static per GPU: stop asking
        self._error_names = {getattr(nvml, a): a for a in dir(nvml) if a.startswith("NVML_ERROR_")}  # the module's own

    def _err_name(self, e: Exception) -> str:
        value = getattr(e, "value", None)
        return self._error_names.get(value, f"NVML_ERROR_{value}")

    # -- initialisation with backoff --------------------------------------------------------

    def _ensure_init(self) -> bool:
        if self._initialized:
            return True
        now = self.clock()
        if now < self._next_init:
            return False
        try:
            self.nvml.nvmlInit()
            self._discover()
        except self.nvml.NVMLError as e:
            self._init_failed(self._err_name(e), str(e), now)
            return False
        self._initialized, self.init_error, self._backoff = True, "", 1.0
        log.info("NVML: %d GPU(s), driver %s", len(self.gpus), self._versions.get("driver_version", "?"))
        return True

    def _init_failed(self, err_name: str, message: str, now: float) -> None:
        self._init_failures += 1
        first = not self.init_error
        self.init_error = f"{message} ({err_name})"
        self._next_init = now + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max)
        (log.warning if first else log.debug)("NVML unavailable: %s; retrying in %.0fs", self.init_error,
                                              self._next_init - now)

    def _discover(self) -> None:
        nvml = self.nvml
        self._versions = {}
        self._unsupported.clear()
        for key, fn in (("driver_version", "nvmlSystemGetDriverVersion"), ("nvml_version", "nvmlSystemGetNVMLVersion")):
            try:
                self._versions[key] = _text(getattr(nvml, fn)())
            except (nvml.NVMLError, AttributeError):
                pass
        try:  # 12040 -> "12.4", as nvidia-smi shows it
            cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
            self._versions["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except (nvml.NVMLError, AttributeError, TypeError, ValueError):
            pass
        self.gpus = [self._describe(i) for i in range(nvml.nvmlDeviceGetCount())]
        if self.xid_events and self._xid is None:
            try:
                self._xid = XidWatcher(self.nvml, [(g.index, g.handle) for g in self.gpus if g.handle is not None],
                                       self.xid_wait_ms)
            except (nvml.NVMLError, AttributeError) as e:
                log.warning("NVML: XID events unavailable (%s); DCGM_FI_DEV_XID_ERRORS will be missing", e)

    def _describe(self, index: int) -> Gpu:
        nvml = self.nvml
        labels = {"gpu": str(index), "UUID": "", "pci_bus_id": "", "device": f"nvidia{index}",
                  "modelName": "", "Hostname": self.hostname}
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as e:
            self._once(index, "handle", str(e), "gpu %d: cannot get a handle: %s", index, e, level=logging.WARNING)
            return Gpu(index, None, labels)
        for key, read in (("UUID", lambda: nvml.nvmlDeviceGetUUID(handle)),
                          ("modelName", lambda: nvml.nvmlDeviceGetName(handle)),
                          ("pci_bus_id", lambda: nvml.nvmlDeviceGetPciInfo(handle).busId),
                          ("device", lambda: f"nvidia{nvml.nvmlDeviceGetMinorNumber(handle)}")):
            try:
                labels[key] = _text(read())
            except nvml.NVMLError as e:
                log.info("gpu %d: %s unavailable: %s", index, key, e)
        return Gpu(index, handle, labels)

    # -- the collect cycle -------------------------------------------------------------------

    def collect(self) -> List[MetricFamily]:
        self.problems = []
        nvml_up = gauge("llm_agent_nvml_up", "Whether NVML is initialised and answering (1) or not (0).")
        failures = counter("llm_agent_nvml_init_failures_total", "Failed attempts to initialise NVML.")
        failures.add({}, self._init_failures)
        if not self._ensure_init():
            hint = _HINTS.get(self.init_error.rsplit("(", 1)[-1].rstrip(")"), "")
            sev = "info" if "LIBRARY_NOT_FOUND" in self.init_error else "warning"
            self.problems.append(Problem(sev, "nvml", f"NVML unavailable: {self.init_error}", hint))
            return [nvml_up.add({}, 0), failures]
        families: Dict[str, MetricFamily] = {}
        self._pids_seen = set()
        try:
            for _gpu, (up, labels, values, more) in self.reader.readings(self.gpus, self.call_wait):
                self._family(families, UP, help=UP_HELP).samples.append(Sample(UP, labels, up))
                for name, value in values.items():
                    fam = families.get(name) or self._family(families, name)
                    fam.samples.append(Sample(name, labels, float(value)))
                for name, fam in more.items():
                    self._family(families, name, fam.type, fam.help).samples.extend(fam.samples)
            # a pid NVML stopped listing is forgotten: if the number comes back it is another process
            self._pids = {pid: found for pid, found in self._pids.items() if pid in self._pids_seen}
        except _LibraryGone as e:
            self._initialized = False
            self._init_failed(e.err_name, e.message, self.clock())
            self.problems.append(Problem("critical", "nvml", f"NVML stopped answering: {e.message}",
                                         _HINTS.get(e.err_name, "")))
            return [nvml_up.add({}, 0), failures]
        nvml_up.add({}, 1)
        extra = self._xid_watcher_health() + self._inventory() + self._stuck_calls()
        info = gauge("llm_agent_nvml_info", "NVML and driver versions; always 1.").add(self._versions, 1)
        errors = counter("llm_agent_nvml_field_errors_total", "NVML readings that failed with an unexpected error, by field.")
        for field_name, n in sorted(self._field_errors.items()):
            errors.add({"field": field_name}, n)
        return [nvml_up, failures, info, errors] + extra + list(families.values())

    def _read_gpu(self, gpu: Gpu) -> Tuple[float, Labels, Dict[str, float], Dict[str, MetricFamily]]:
        """One GPU's readings, in the reader's thread: whether it answers (1) or not (0), its
        labels, its one-series values by metric name, and its families of several series (clock
        reasons, XIDs, MIG instances, processes). The values become samples in the collector's
        families directly: a family per metric per GPU, merged after, cost more than the reads."""
        more: Dict[str, MetricFamily] = {}
        up, values = self._collect_gpu(gpu, more)
        return up, intern_labels(tuple(gpu.labels.items())), values, more

    def _stuck_calls(self) -> List[MetricFamily]:
        """The GPUs whose NVML call has not returned: which call, for how long."""
        stuck = gauge("llm_agent_nvml_call_stuck_seconds",
                      "Seconds an NVML call on this GPU has been running without returning (a wedged driver or GPU): "
                      "the GPU's other readings are left out, and it is not called again until the call returns.")
        by_index = {g.index: g for g in self.gpus}
        for index, call, seconds in self.reader.stuck_for():
            gpu = by_index.get(index)
            labels = gpu.labels if gpu is not None else {"gpu": str(index), "Hostname": self.hostname}
            stuck.add({**labels, "call": call.call}, seconds)
            self.problems.append(Problem("critical", f"gpu {index}", f"NVML's {call.call} has not returned for "
                                         f"{seconds:.0f} s: the driver or the GPU is wedged (nvidia-smi would hang too)",
                                         "dmesg for Xid errors; a GPU reset or a reboot is usually needed"))
        blocked = gauge("llm_agent_nvml_blocked_threads", "Threads blocked in an NVML call that has not returned "
                                                          "(at most one per stuck GPU).").add({}, self.reader.left_behind)
        return [stuck, blocked]

    def _inventory(self) -> List[MetricFamily]:
        """GPUs expected against GPUs NVML lists; each missing one by its PCI address."""
        visible = {g.labels["pci_bus_id"]: g.labels["UUID"] for g in self.gpus if g.labels["pci_bus_id"]}
        expected, missing = self.inventory.observe(visible)
        gone = gauge("llm_agent_gpu_missing", "A GPU seen before (state_dir/gpus.json) or expected "
                                              "([collectors.nvml] expected_gpus) that NVML no longer lists (1).")
        unknown = 0
        for pci, uuid in missing:
            unknown += pci == "?"
            slot = str(unknown) if pci == "?" else ""  # GPUs missing by count alone, told apart
            gone.add({"pci_bus_id": pci, "UUID": uuid, "Hostname": self.hostname, "slot": slot}, 1)
            where = f"at PCI {pci} ({uuid})" if pci != "?" else "(address unknown: only the expected count says so)"
            self.problems.append(Problem("critical", "gpu missing", f"a GPU {where} is missing: NVML lists "
                                         f"{len(self.gpus)} of {expected}",
                                         "dmesg for XID 79 ('fallen off the bus'); reseat or replace it, or delete "
                                         "state_dir/gpus.json if it was removed on purpose"))
        return [gauge("llm_agent_gpu_expected", "GPUs this host should have (learned, or [collectors.nvml] "
                                                "expected_gpus).").add({}, expected),
                gauge("llm_agent_gpu_visible", "GPUs NVML lists now.").add({}, len(self.gpus)), gone]

    def _xid_watcher_health(self) -> List[MetricFamily]:
        """Whether XIDs are being counted; a watcher thread that died is reported and restarted."""
        if not self.xid_events or self._xid is None:
            return []
        up = gauge("llm_agent_nvml_xid_watcher_up", "Whether XID events are being watched (1) or the watcher stopped (0).")
        if self._xid.alive():
            return [up.add({}, 1)]
        self.problems.append(Problem("warning", "nvml", f"XID event watching stopped ({self._xid.error or 'unknown'}); "
                                                        "XID errors are not counted until it restarts",
                                     "it is restarted each cycle; if this persists, check the driver (dmesg)"))
        dead, self._xid = self._xid, None
        dead.close()
        try:
            self._xid = XidWatcher(self.nvml, [(g.index, g.handle) for g in self.gpus if g.handle is not None],
                                   self.xid_wait_ms)
        except (self.nvml.NVMLError, AttributeError) as e:
            log.warning("NVML: restarting the XID watcher failed: %s", e)
        return [up.add({}, 0)]

    def _family(self, families: Dict[str, MetricFamily], name: str, mtype: str = GAUGE, help: str = "") -> MetricFamily:
        fam = families.get(name)
        if fam is None:
            if name in METRICS:
                mtype, help = METRICS[name]
            elif name in GPM_HELP:
                help = GPM_HELP[name]
            fam = families[name] = MetricFamily(name, mtype, help)
        return fam

    def _collect_gpu(self, gpu: Gpu, families: Dict[str, MetricFamily]) -> Tuple[float, Dict[str, float]]:
        """Whether the GPU answers, and its values; its other series into `families`."""
        if gpu.handle is None:  # lost at start-up: ask again, it may have been reset since
            described = self._describe(gpu.index)
            gpu.handle, gpu.labels = described.handle, described.labels
        if gpu.handle is None:
            self._gpu_problem(gpu, "has no NVML handle (lost at start-up?)")
            return 0.0, {}
        values: Dict[str, float] = {}
        for field_name, read in READERS:
            if (gpu.index, field_name) in self._unsupported:
                continue
            try:
                values.update(read(self.nvml, gpu.handle))
            except self.nvml.NVMLError as e:
                err_name = self._err_name(e)
                if err_name in _LIBRARY_GONE:
                    raise _LibraryGone(err_name, str(e)) from None
                if err_name in _GPU_BROKEN:
                    self._once(gpu.index, "gpu", err_name, "gpu %d is lost or broken: %s", gpu.index, e,
                               level=logging.WARNING)
                    self._gpu_problem(gpu, f"is lost or broken ({e})")
                    return 0.0, {}
                self._field_failed(gpu, field_name, err_name, e)
            except AttributeError as e:  # pynvml older than the function
                self._unsupported.add((gpu.index, field_name))
                self._once(gpu.index, field_name, "missing",
                           "gpu %d: %s unavailable in this pynvml (%s); upgrade nvidia-ml-py", gpu.index, field_name, e)
        values.update(self._gpm(gpu))
        if "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS" in values:
            self._clock_reasons(gpu, int(values["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"]), families)
        self._xid_families(gpu, families)
        self._mig(gpu, families)
        if self.process_memory:
            self._processes(gpu, families)
        return 1.0, values

    def _mig(self, gpu: Gpu, families: Dict[str, MetricFamily]) -> None:
        """With MIG on, each GPU instance's memory and GPM metrics, labelled as dcgm-exporter
        labels them (GPU_I_ID, GPU_I_PROFILE) beside the whole GPU's series."""
        nvml = self.nvml
        if (gpu.index, "mig") in self._unsupported:
            return
        try:
            current, _ = nvml.nvmlDeviceGetMigMode(gpu.handle)
            if current != nvml.NVML_DEVICE_MIG_ENABLE:
                return
            slots = nvml.nvmlDeviceGetMaxMigDeviceCount(gpu.handle)
        except (nvml.NVMLError, AttributeError) as e:  # no MIG on this board (NotSupported), or old bindings
            self._unsupported.add((gpu.index, "mig"))
            self._once(gpu.index, "mig", type(e).__name__, "gpu %d: MIG not available: %s", gpu.index, e)
            return
        for slot in range(slots):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
                instance = int(nvml.nvmlDeviceGetGpuInstanceId(mig))
                name = _text(nvml.nvmlDeviceGetName(mig))
                memory = nvml.nvmlDeviceGetMemoryInfo(mig)
            except nvml.NVMLError:
                continue  # an empty slot (NOT_FOUND), or one being reconfigured
            labels = {**gpu.labels, "GPU_I_PROFILE": name.rsplit("MIG ", 1)[-1] if "MIG " in name else "",
                      "GPU_I_ID": str(instance)}
            values = {"DCGM_FI_DEV_FB_USED": memory.used / MIB, "DCGM_FI_DEV_FB_FREE": memory.free / MIB,
                      "DCGM_FI_DEV_FB_TOTAL": memory.total / MIB}
            values.update(self._gpm(gpu, instance))
            for metric, value in values.items():
                self._family(families, metric).add(labels, value)

    def _gpm(self, gpu: Gpu, instance: Optional[int] = None) -> Dict[str, float]:
        """DCGM_FI_PROF_* from NVML's GPM (gpm.py), on GPUs that have it (Hopper and newer)."""
        if (gpu.index, "gpm") in self._unsupported:
            return {}
        key = (gpu.index, instance)
        try:
            sampler = self._gpm_samplers.get(key)
            if sampler is None or sampler.handle is not gpu.handle:  # first time, or a new handle after a re-init
                if sampler is not None:
                    sampler.close()
                sampler = self._gpm_samplers[key] = GpmSampler(self.nvml, gpu.handle, instance)
                if not sampler.supported:
                    self._unsupported.add((gpu.index, "gpm"))
                    self._once(gpu.index, "gpm", "unsupported", "gpu %d: no GPM (profiling metrics need Hopper or "
                                                                 "newer)", gpu.index)
                    return {}
            return sampler.read()
        except (self.nvml.NVMLError, AttributeError) as e:
            self._unsupported.add((gpu.index, "gpm"))
            self._once(gpu.index, "gpm", type(e).__name__, "gpu %d: GPM unavailable: %s", gpu.index, e)
            return {}

    def _field_failed(self, gpu: Gpu, field_name: str, err_name: str, e: Exception) -> None:
        if err_name in ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_NOT_FOUND"):
            self._unsupported.add((gpu.index, field_name))
            self._once(gpu.index, field_name, err_name, "gpu %d: %s not supported (%s); omitted",
                       gpu.index, field_name, e)
            return
        self._field_errors[field_name] = self._field_errors.get(field_name, 0) + 1
        self._once(gpu.index, field_name, err_name, "gpu %d: reading %s failed: %s (%s)",
                   gpu.index, field_name, e, _HINTS.get(err_name, err_name))

    def _once(self, index: int, field_name: str, why: str, msg: str, *args: Any, level: int = logging.INFO) -> None:
        if (index, field_name, why) not in self._logged:
            self._logged.add((index, field_name, why))
            log.log(level, msg, *args)

    def _gpu_problem(self, gpu: Gpu, what: str) -> None:
        name = f"GPU {gpu.index} ({gpu.labels['UUID']})" if gpu.labels["UUID"] else f"GPU {gpu.index}"
        self.problems.append(Problem("critical", f"gpu {gpu.index}", f"{name} {what}",
                                     "check `nvidia-smi` and `dmesg` for XID 79/48; the GPU needs a reset or reboot"))

    def _clock_reasons(self, gpu: Gpu, mask: int, families: Dict[str, MetricFamily]) -> None:
        fam = self._family(families, "llm_agent_gpu_clock_event_reasons",
                           help="Whether each clocks event (throttle) reason is active (1) or not (0).")
        for bit, reason in CLOCK_EVENT_REASONS:
            fam.add({**gpu.labels, "reason": reason}, 1 if mask & bit else 0)

    def _xid_families(self, gpu: Gpu, families: Dict[str, MetricFamily]) -> None:
        if self._xid is None or gpu.index not in self._xid.watched:
            return
        counts, last = self._xid.snapshot()
        self._family(families, "DCGM_FI_DEV_XID_ERRORS", help="Value of the last XID error seen (0: none since start).") \
            .add(gpu.labels, last.get(gpu.index, 0))
        by_code = self._family(families, "llm_agent_gpu_xid_errors_total", "counter",
                               "XID errors seen since the agent started, by code.")
        mine = sorted((xid, n) for (index, xid), n in counts.items() if index == gpu.index)
        for xid, n in mine:
            by_code.add({**gpu.labels, "xid": str(xid)}, n)
        # every code together, from 0: a series that exists before the first XID, so increase() sees it
        self._family(families, "llm_agent_gpu_nvml_xid_events_total", "counter",
                     "XID errors of any code NVML's event API reported since the agent started (the kernel log's, "
                     "with their meaning and action, are llm_agent_gpu_xid_events_total).").add(gpu.labels, sum(n for _, n in mine))

    def _processes(self, gpu: Gpu, families: Dict[str, MetricFamily]) -> None:
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle)
        except (self.nvml.NVMLError, AttributeError) as e:
            self._once(gpu.index, "processes", type(e).__name__, "gpu %d: process list unavailable: %s", gpu.index, e)
            return
        fam = self._family(families, "llm_agent_gpu_process_memory_bytes",
                           help="GPU memory used by each process, in bytes (omitted where the driver does not say); "
                                "with its systemd unit, container and Kubernetes pod where it has them.")
        labels_of = {}
        for p in procs:
            labels_of[p.pid] = {**gpu.labels, **self._identity(p.pid)}
            if p.usedGpuMemory is not None:
                fam.add(labels_of[p.pid], p.usedGpuMemory)
        self._process_utilization(gpu, labels_of, families)

    def _identity(self, pid: int) -> Dict[str, str]:
        """pid, process_name, unit, container_id, pod, namespace (gpu_owner.py): read once while
        the process stays on a GPU."""
        self._pids_seen.add(pid)
        found = self._pids.get(pid)
        if found is None:
            found = self._pids[pid] = {"pid": str(pid), "process_name": self.process_name(pid), **self.process_owner(pid)}
        return found

    def _process_utilization(self, gpu: Gpu, labels_of: Dict[int, Dict[str, str]],
                             families: Dict[str, MetricFamily]) -> None:
        """Each process's share of the SM, memory, encoder and decoder since the last cycle, as
        NVML samples it (nvmlDeviceGetProcessUtilization); none where the GPU does not keep them."""
        if (gpu.index, "process utilization") in self._unsupported:
            return
        since = self._utilization_seen.get(gpu.index, 0)
        try:
            samples = self.nvml.nvmlDeviceGetProcessUtilization(gpu.handle, since)
        except (self.nvml.NVMLError, AttributeError) as e:
            name = self._err_name(e) if isinstance(e, self.nvml.NVMLError) else "missing"
            if name != "NVML_ERROR_NOT_FOUND":  # NOT_FOUND: no samples since `since` (an idle GPU)
                self._unsupported.add((gpu.index, "process utilization"))
                self._once(gpu.index, "process utilization", name, "gpu %d: per-process utilisation unavailable: %s",
                           gpu.index, e)
            return
        fam = self._family(families, "llm_agent_gpu_process_utilization_percent",
                           help="Each process's utilisation of the GPU's engines (sm, memory, encoder, decoder) "
                                "over the last cycle, in percent, as NVML samples it.")
        latest: Dict[int, Any] = {}
        for sample in samples:
            if sample.pid in labels_of and (sample.pid not in latest or sample.timeStamp > latest[sample.pid].timeStamp):
                latest[sample.pid] = sample
            self._utilization_seen[gpu.index] = max(self._utilization_seen.get(gpu.index, 0), int(sample.timeStamp))
        for pid, sample in sorted(latest.items()):
            for engine, value in (("sm", sample.smUtil), ("memory", sample.memUtil), ("encoder", sample.encUtil),
                                  ("decoder", sample.decUtil)):
                fam.add({**labels_of[pid], "engine": engine}, value)

    def close(self) -> None:
        self.reader.close()
        for sampler in self._gpm_samplers.values():
            sampler.close()
        self._gpm_samplers.clear()
        shutdown = self._shutdown if self._initialized else None
        self._initialized = False
        if self._xid is not None:  # NVML shut down once its event wait has returned (XidWatcher.close)
            self._xid.close(then=shutdown)
            self._xid = None
        elif shutdown is not None:
            shutdown()

    def _shutdown(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


class _LibraryGone(Exception):
    def __init__(self, err_name: str, message: str):
        super().__init__(message)
        self.err_name = err_name
        self.message = message


def _process_name(pid: int) -> str:

    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return ""


@register("nvml", "collectors.nvml", keep=True)  # kept across a reload: XID counts and the event thread live on
def _build(ctx: Context) -> Optional[NvmlCollector]:
    c = ctx.config
    if not c.collectors.nvml.enabled:
        return None
    return NvmlCollector(ctx.nvml, hostname=c.hostname, xid_events=c.collectors.nvml.xid_events,
                         process_memory=c.collectors.nvml.process_memory, retry_max=c.collectors.nvml.retry_max,
                         state_dir=ctx.state_dir, expected_gpus=c.collectors.nvml.expected_gpus,
                         call_wait=min(2.0, c.collector_timeout / 2))
