"""Pure parsers of the /proc files the host collector reads, as node_exporter reads them.

Read directly rather than through psutil: psutil parsed /proc/meminfo twice and /proc/vmstat
once a cycle for five memory fields, and built a named tuple per CPU, disk and interface; the
host collector was the costliest thread of a cycle (bench_agent.py). The files are the
kernel's stable ABI (proc(5)); the values are node_exporter's: raw `Cached`, not psutil's
`Cached + SReclaimable`.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

# /proc/stat's per-CPU columns, in order (proc(5)); guest time is already inside user
STAT_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# /proc/net/dev's columns: 8 received, then 8 transmitted
NET_RECEIVE = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
NET_TRANSMIT = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")
SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own sector size


def parse_stat_cpus(text: bytes, ticks_per_second: float) -> List[Tuple[str, Tuple[float, ...]]]:
    """Per CPU (`cpu0`, `cpu1`...: the number as a string), seconds in each of STAT_MODES;
    a kernel that prints fewer columns gives fewer modes."""
    out = []
    for line in text.split(b"\n"):
        if not line.startswith(b"cpu") or line.startswith(b"cpu "):
            continue
        fields = line.split()
        try:
            out.append((fields[0][3:].decode("ascii"), tuple(int(v) / ticks_per_second for v in fields[1:9])))
        except (ValueError, UnicodeDecodeError):
            continue  # a line we cannot read is left out, never reported as zero
    return out


def parse_meminfo(text: bytes) -> Dict[str, float]:
    """Each field of /proc/meminfo in bytes (`MemTotal: 32 kB` -> 32768)."""
    out = {}
    for line in text.split(b"\n"):
        name, colon, rest = line.partition(b":")
        if not colon:
            continue
        fields = rest.split()
        try:
            value = int(fields[0])
        except (ValueError, IndexError):
            continue
        out[name.decode("ascii", "replace")] = float(value * 1024 if fields[1:] == [b"kB"] else value)
    return out


def parse_net_dev(text: bytes) -> Dict[str, Dict[str, int]]:
    """Per interface, `receive_<column>` and `transmit_<column>` counters."""
    out = {}
    for line in text.split(b"\n")[2:]:
        name, colon, rest = line.partition(b":")
        fields = rest.split()
        if not colon or len(fields) < 16:
            continue
        try:
            values = [int(v) for v in fields[:16]]
        except ValueError:
            continue
        counters = {f"receive_{c}": v for c, v in zip(NET_RECEIVE, values)}
        counters.update((f"transmit_{c}", v) for c, v in zip(NET_TRANSMIT, values[8:]))
        out[name.strip().decode("ascii", "replace")] = counters
    return out


def parse_diskstats(text: bytes) -> Dict[str, Dict[str, float]]:
    """Per block device, node_exporter's disk counters (bytes and seconds, not sectors and ms)."""
    out = {}
    for line in text.split(b"\n"):
        fields = line.split()
        if len(fields) < 14:
            continue
        try:
            v = [int(x) for x in fields[3:14]]
        except ValueError:
            continue
        out[fields[2].decode("ascii", "replace")] = {
            "reads_completed": v[0], "read_bytes": v[2] * SECTOR, "read_time_seconds": v[3] / 1000,
            "writes_completed": v[4], "written_bytes": v[6] * SECTOR, "write_time_seconds": v[7] / 1000,
            "io_time_seconds": v[9] / 1000}
    return out


def parse_ppid(text: bytes) -> int:
    """The parent pid in /proc/<pid>/stat (field 4); ValueError for a line that is not one."""
    end = text.rfind(b")")
    fields = text[end + 2:].split() if end >= 0 else []
    if len(fields) < 2:
        raise ValueError("not a /proc/<pid>/stat line")
    return int(fields[1])


class PidStat:
    """The fields of /proc/<pid>/stat the process collector reads, in clock ticks."""

    __slots__ = ("state", "utime", "stime", "threads", "start", "rss")

    def __init__(self, state: str, utime: int, stime: int, threads: int, start: int, rss: int):
        self.state = state
        self.utime = utime
        self.stime = stime
        self.threads = threads
        self.start = start  # ticks after boot
        self.rss = rss  # pages (what /proc/<pid>/statm says too: one file read, not two)


def parse_pid_stat(text: bytes) -> PidStat:
    """/proc/<pid>/stat; the command name may hold spaces and parentheses, so the fields are
    counted from its last `)`. Raises ValueError for a line that is not one."""
    end = text.rfind(b")")
    fields = text[end + 2:].split() if end >= 0 else []
    if len(fields) < 22:
        raise ValueError("not a /proc/<pid>/stat line")
    # fields[0] is field 3 of proc(5): state; utime 14, stime 15, num_threads 20, starttime 22, rss 24
    return PidStat(fields[0].decode("ascii", "replace"), int(fields[11]), int(fields[12]), int(fields[17]),
                   int(fields[19]), int(fields[21]))
