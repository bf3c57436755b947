"""The host through psutil, under node_exporter's names for the subset collected.

`host_families()` is pure: it turns psutil's result objects into families, so tests feed it
captured values. `HostCollector` only calls psutil.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil

from .. import regex
from ..model import MetricFamily, counter, gauge
from .registry import Context, register

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass
class HostReadings:
    """Everything psutil returned in one cycle."""

    per_cpu: Sequence[Any] = ()
    load: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    memory: Any = None
    swap: Any = None
    filesystems: List[Tuple[Any, Any]] = field(default_factory=list)  # (partition, usage)
    net: Dict[str, Any] = field(default_factory=dict)
    disks: Dict[str, Any] = field(default_factory=dict)
    boot_time: float = 0.0


def host_families(r: HostReadings) -> List[MetricFamily]:
    """node_exporter-named families from one cycle's readings."""
    cpu = counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.")
    for i, times in enumerate(r.per_cpu):
        for mode in CPU_MODES:
            if hasattr(times, mode):
                cpu.add({"cpu": str(i), "mode": mode}, getattr(times, mode))
    fams = [cpu]
    for n, v in zip((1, 5, 15), r.load):
        fams.append(gauge(f"node_load{n}", f"{n}m load average.").add({}, v))
    if r.memory is not None:
        for name, attr in (("MemTotal", "total"), ("MemAvailable", "available"), ("MemFree", "free"),
                           ("Buffers", "buffers"), ("Cached", "cached")):
            if hasattr(r.memory, attr):
                fams.append(gauge(f"node_memory_{name}_bytes", f"Memory information field {name}_bytes.")
                            .add({}, getattr(r.memory, attr)))
    if r.swap is not None:
        fams.append(gauge("node_memory_SwapTotal_bytes", "Memory information field SwapTotal_bytes.").add({}, r.swap.total))
        fams.append(gauge("node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes.").add({}, r.swap.free))
    fams.extend(_filesystem_families(r.filesystems))
    fams.extend(_net_families(r.net))
    fams.extend(_disk_families(r.disks))
    fams.append(gauge("node_boot_time_seconds", "Node boot time, in unixtime.").add({}, r.boot_time))
    return fams


def _filesystem_families(filesystems: List[Tuple[Any, Any]]) -> List[MetricFamily]:
    size = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.")
    free = gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.")
    avail = gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.")
    for part, usage in filesystems:
        lbl = {"device": part.device, "fstype": part.fstype, "mountpoint": part.mountpoint}
        size.add(lbl, usage.total)
        # psutil's `free` is what non-root users get (statvfs f_bavail); root's extra is total-used
        free.add(lbl, usage.total - usage.used)
        avail.add(lbl, usage.free)
    return [size, free, avail]


def _net_families(net: Dict[str, Any]) -> List[MetricFamily]:
    specs = (("receive_bytes", "bytes_recv"), ("transmit_bytes", "bytes_sent"),
             ("receive_packets", "packets_recv"), ("transmit_packets", "packets_sent"),
             ("receive_errs", "errin"), ("transmit_errs", "errout"),
             ("receive_drop", "dropin"), ("transmit_drop", "dropout"))
    fams = []
    for name, attr in specs:
        fam = counter(f"node_network_{name}_total", f"Network device statistic {name}.")
        for dev, c in sorted(net.items()):
            fam.add({"device": dev}, getattr(c, attr))
        fams.append(fam)
    return fams


def _disk_families(disks: Dict[str, Any]) -> List[MetricFamily]:
    specs = (("reads_completed", "read_count", 1, "The total number of reads completed successfully."),
             ("writes_completed", "write_count", 1, "The total number of writes completed successfully."),
             ("read_bytes", "read_bytes", 1, "The total number of bytes read successfully."),
             ("written_bytes", "write_bytes", 1, "The total number of bytes written successfully."),
             ("read_time_seconds", "read_time", 0.001, "The total number of seconds spent by all reads."),
             ("write_time_seconds", "write_time", 0.001, "The total number of seconds spent by all writes."),
             ("io_time_seconds", "busy_time", 0.001, "Total seconds spent doing I/Os."))
    fams = []
    for name, attr, scale, help_ in specs:
        fam = counter(f"node_disk_{name}_total", help_)
        for dev, c in sorted(disks.items()):
            if hasattr(c, attr):
                fam.add({"device": dev}, getattr(c, attr) * scale)
        fams.append(fam)
    return fams


class MountWatch:
    """Whether the mount table may have changed since the last look. psutil.disk_partitions()
    parses /proc/self/mounts and resolves every device (the host collector's costliest call);
    the kernel marks an open /proc/self/mounts with POLLPRI when something is mounted or
    unmounted (proc(5)), so the list is read again only then, and every `refresh` seconds in
    case polling is not available (another OS, a kernel without it)."""

    def __init__(self, path: str = "/proc/self/mounts", refresh: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.refresh = refresh
        self.clock = clock
        self._next = 0.0
        self._poll: Optional[Any] = None
        try:
            self._file: Optional[Any] = open(path, "rb")
            self._poll = select.poll()
            self._poll.register(self._file, select.POLLPRI | select.POLLERR)
        except (OSError, AttributeError):
            self._file = None

    def changed(self) -> bool:
        now = self.clock()
        if now >= self._next:
            self._next = now + self.refresh
            self._drain()
            return True
        return self._drain()

    def _drain(self) -> bool:
        if self._poll is None:
            return False
        return bool(self._poll.poll(0))  # reporting the change clears it (one event per change)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._poll = None


class HostCollector:
    """CPU, load, memory, real filesystems, network and disk I/O counters."""

    name = "host"

    def __init__(self, fs_types_exclude: Sequence[str] = (), mount_points_exclude: str = "^$",
                 net_devices_exclude: str = "^$"):
        self.fs_types_exclude = set(fs_types_exclude)
        self.mount_points_exclude = regex.compile(mount_points_exclude)  # RE2, as node_exporter's flags
        self.net_devices_exclude = regex.compile(net_devices_exclude)
        self.problems: List = []
        self._mounts = MountWatch()
        self._partitions: List[Any] = []
        self._boot_time = 0.0

    def _watched_partitions(self) -> List[Any]:
        """The mounts to report, read again only when the mount table changed."""
        if self._mounts.changed():
            seen = set()
            self._partitions = []
            for part in psutil.disk_partitions(all=False):
                if (part.fstype in self.fs_types_exclude or self.mount_points_exclude.search(part.mountpoint)
                        or part.mountpoint in seen):
                    continue
                seen.add(part.mountpoint)
                self._partitions.append(part)
        return self._partitions

    def read(self) -> HostReadings:
        """One round of psutil calls."""
        filesystems = []
        for part in self._watched_partitions():
            try:
                filesystems.append((part, psutil.disk_usage(part.mountpoint)))
            except OSError:  # a stale NFS mount or a permission wall: skip that one mount
                continue
        net = {k: v for k, v in psutil.net_io_counters(pernic=True).items() if not self.net_devices_exclude.search(k)}
        if not self._boot_time:  # fixed for the life of the kernel; psutil reads /proc/stat for it each call
            self._boot_time = psutil.boot_time()
        return HostReadings(
            per_cpu=psutil.cpu_times(percpu=True), load=psutil.getloadavg(), memory=psutil.virtual_memory(),
            swap=psutil.swap_memory(), filesystems=filesystems, net=net,
            disks=psutil.disk_io_counters(perdisk=True, nowrap=True) or {}, boot_time=self._boot_time)

    def close(self) -> None:
        self._mounts.close()

    def collect(self) -> List[MetricFamily]:
        return host_families(self.read())


@register("host", "collectors.host")
def _build(ctx: Context) -> Optional[HostCollector]:
    c = ctx.config
    if not c.collectors.host.enabled:
        return None
    return HostCollector(c.collectors.host.fs_types_exclude, c.collectors.host.mount_points_exclude,
                         c.collectors.host.net_devices_exclude)
