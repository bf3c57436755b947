"""The host under node_exporter's names for the subset collected: /proc read directly
(procfiles.py says why), psutil for the mount table and the boot time.

`host_families()` is pure: it turns one cycle's readings into families, so tests feed it
captured values. `HostCollector` only reads.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil

from .. import regex
from ..model import MetricFamily, counter, gauge
from .kernelfiles import KernelFile
from .procfiles import STAT_MODES, parse_diskstats, parse_meminfo, parse_net_dev, parse_stat_cpus
from ..plugins import Context, register

MEMINFO_FIELDS = ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree")
NET_COUNTERS = ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets",
                "receive_errs", "transmit_errs", "receive_drop", "transmit_drop")
DISK_COUNTERS = (("reads_completed", "The total number of reads completed successfully."),
                 ("writes_completed", "The total number of writes completed successfully."),
                 ("read_bytes", "The total number of bytes read successfully."),
                 ("written_bytes", "The total number of bytes written successfully."),
                 ("read_time_seconds", "The total number of seconds spent by all reads."),
                 ("write_time_seconds", "The total number of seconds spent by all writes."),
                 ("io_time_seconds", "Total seconds spent doing I/Os."))


@dataclass
class Filesystem:
    """One mount's statvfs(2), in bytes."""

    device: str
    fstype: str
    mountpoint: str
    size: float
    free: float  # root's view: f_bfree
    avail: float  # everyone else's: f_bavail


@dataclass
class HostReadings:
    """Everything read in one cycle (procfiles.py's parsers' results)."""

    per_cpu: Sequence[Tuple[str, Tuple[float, ...]]] = ()  # (cpu, seconds in each of STAT_MODES)
    load: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    memory: Dict[str, float] = field(default_factory=dict)  # /proc/meminfo, bytes
    filesystems: List[Filesystem] = field(default_factory=list)
    net: Dict[str, Dict[str, int]] = field(default_factory=dict)
    disks: Dict[str, Dict[str, float]] = field(default_factory=dict)
    boot_time: float = 0.0


def host_families(r: HostReadings) -> List[MetricFamily]:
    """node_exporter-named families from one cycle's readings."""
    cpu = counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.")
    for index, seconds in r.per_cpu:
        for mode, value in zip(STAT_MODES, seconds):
            cpu.add({"cpu": index, "mode": mode}, value)
    fams = [cpu]
    for n, v in zip((1, 5, 15), r.load):
        fams.append(gauge(f"node_load{n}", f"{n}m load average.").add({}, v))
    for name in MEMINFO_FIELDS:
        if name in r.memory:
            fams.append(gauge(f"node_memory_{name}_bytes", f"Memory information field {name}_bytes.")
                        .add({}, r.memory[name]))
    fams.extend(_filesystem_families(r.filesystems))
    fams.extend(_device_families("node_network_", "Network device statistic {}.", [(n, "") for n in NET_COUNTERS], r.net))
    fams.extend(_device_families("node_disk_", "{}", DISK_COUNTERS, r.disks))
    fams.append(gauge("node_boot_time_seconds", "Node boot time, in unixtime.").add({}, r.boot_time))
    return fams


def _filesystem_families(filesystems: List[Filesystem]) -> List[MetricFamily]:
    size = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.")
    free = gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.")
    avail = gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.")
    for fs in filesystems:
        lbl = {"device": fs.device, "fstype": fs.fstype, "mountpoint": fs.mountpoint}
        size.add(lbl, fs.size)
        free.add(lbl, fs.free)
        avail.add(lbl, fs.avail)
    return [size, free, avail]


def _device_families(prefix: str, help_format: str, specs: Sequence[Tuple[str, str]],
                     devices: Dict[str, Dict[str, Any]]) -> List[MetricFamily]:
    """A counter per statistic, a series per device (by name): network interfaces, disks."""
    fams = []
    for name, help_ in specs:
        fam = counter(f"{prefix}{name}_total", help_format.format(help_ or name))
        for dev, stats in sorted(devices.items()):
            if name in stats:
                fam.add({"device": dev}, stats[name])
        fams.append(fam)
    return fams


# /proc/stat, net/dev and diskstats grow with CPUs, interfaces and disks (a 256-CPU host's
# /proc/stat is ~100 KiB with its interrupt line); unreadable: those families come out empty
PROC_LIMIT = 4 << 20


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
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._files = {name: KernelFile(f"/proc/{name}", PROC_LIMIT) for name in ("net/dev", "stat", "meminfo", "diskstats")}

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
        """One round of reads."""
        filesystems = []
        for part in self._watched_partitions():
            try:
                st = os.statvfs(part.mountpoint)
            except OSError:  # a stale NFS mount or a permission wall: skip that one mount
                continue
            filesystems.append(Filesystem(part.device, part.fstype, part.mountpoint, st.f_blocks * st.f_frsize,
                                          st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize))
        net = parse_net_dev(self._files["net/dev"].read())
        net = {k: v for k, v in net.items() if not self.net_devices_exclude.search(k)}
        if not self._boot_time:  # fixed for the life of the kernel
            self._boot_time = psutil.boot_time()
        return HostReadings(
            per_cpu=parse_stat_cpus(self._files["stat"].read(), self._ticks), load=os.getloadavg(),
            memory=parse_meminfo(self._files["meminfo"].read()), filesystems=filesystems, net=net,
            disks=parse_diskstats(self._files["diskstats"].read()), boot_time=self._boot_time)

    def close(self) -> None:
        self._mounts.close()
        for f in self._files.values():
            f.close()

    def collect(self) -> List[MetricFamily]:
        return host_families(self.read())


@register("host", "collectors.host")
def _build(ctx: Context) -> Optional[HostCollector]:
    c = ctx.config
    if not c.collectors.host.enabled:
        return None
    return HostCollector(c.collectors.host.fs_types_exclude, c.collectors.host.mount_points_exclude,
                         c.collectors.host.net_devices_exclude)
