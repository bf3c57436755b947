"""The host collector: pure parsers on captured /proc files, the mapping to node_exporter's
names, and the real files here."""

import os
from pathlib import Path

import pytest

from agent.collectors.host import Filesystem, HostCollector, HostReadings, MountWatch, host_families
from agent.collectors.procfiles import parse_diskstats, parse_meminfo, parse_net_dev, parse_stat_cpus
from agent.model import Snapshot

PROC = Path(__file__).parent.parent / "fixtures" / "procfs"  # captured on the development VM


def test_stat_gives_seconds_per_cpu_and_mode_without_the_total_line():
    cpus = parse_stat_cpus((PROC / "stat").read_bytes(), 100)
    assert [c for c, _ in cpus] == ["0", "1"]  # the aggregate `cpu` line is not a CPU
    assert cpus[0][1][:4] == (4106.28, 1016.43, 1405.61, 39767.84)  # user nice system idle, in seconds
    assert len(cpus[0][1]) == 8  # guest and guest_nice are inside user and nice already
    old = b"cpu  1 2 3 4\ncpu0 1 2 3 4\n"  # a 2.4 kernel printed four columns
    assert parse_stat_cpus(old, 100) == [("0", (0.01, 0.02, 0.03, 0.04))]


def test_meminfo_in_bytes_as_node_exporter_reads_it():
    mem = parse_meminfo((PROC / "meminfo").read_bytes())
    assert mem["MemTotal"] == 24684092 * 1024
    assert mem["Cached"] == 139992 * 1024  # raw Cached: psutil added SReclaimable to it
    assert mem["SwapTotal"] == 0
    assert mem["HugePages_Total"] == 0  # a count, not kB: not scaled


def test_net_dev_counters_per_interface():
    net = parse_net_dev((PROC / "net_dev").read_bytes())
    assert set(net) == {"lo", "ifb0", "ifb1", "eth0"}
    assert net["eth0"]["receive_bytes"] == 4107456750 and net["eth0"]["transmit_packets"] == 87376
    assert net["eth0"]["receive_drop"] == 0 and len(net["eth0"]) == 16


def test_diskstats_in_bytes_and_seconds():
    disks = parse_diskstats((PROC / "diskstats").read_bytes())
    assert "vda" in disks and "loop0" in disks
    vda = disks["vda"]
    assert vda["reads_completed"] == 1935104 and vda["read_bytes"] == 97298234 * 512
    assert vda["io_time_seconds"] == 416.184 and vda["write_time_seconds"] == 5887.64


@pytest.mark.parametrize("parse", [parse_meminfo, parse_net_dev, parse_diskstats, lambda b: parse_stat_cpus(b, 100)])
def test_parsers_skip_what_they_cannot_read(parse):
    import random
    rng = random.Random(7)
    for path in PROC.iterdir():
        text = bytearray(path.read_bytes())
        for _ in range(200):  # truncated, mangled, binary: lines left out, never an exception
            cut = text[: rng.randrange(len(text) + 1)]
            for _ in range(rng.randrange(4)):
                if cut:
                    cut[rng.randrange(len(cut))] = rng.randrange(256)
            parse(bytes(cut))


def test_node_exporter_names_from_readings():
    r = HostReadings(
        per_cpu=[("0", (10, 0, 5, 100, 1, 0, 0.5, 0)), ("1", (10, 0, 5, 100, 1, 0, 0.5, 0))], load=(0.5, 0.4, 0.3),
        memory={"MemTotal": 32e9, "MemAvailable": 20e9, "Cached": 5e9, "Slab": 1e9},
        filesystems=[Filesystem("/dev/nvme0n1p1", "ext4", "/", 1000, 400, 300)],
        net={"eth0": {"receive_bytes": 200, "receive_drop": 3, "transmit_bytes": 100}},
        disks={"nvme0n1": {"read_bytes": 4096, "io_time_seconds": 3.0}}, boot_time=1.7e9)
    snap = Snapshot(0.0, tuple(host_families(r)))
    assert snap.value("node_cpu_seconds_total", cpu="1", mode="idle") == 100
    assert len(snap.samples("node_cpu_seconds_total")) == 16  # 8 modes x 2 CPUs
    assert snap.value("node_load1") == 0.5
    assert snap.value("node_memory_MemAvailable_bytes") == 20e9
    assert snap.family("node_memory_Slab_bytes") is None  # the documented subset only
    assert snap.family("node_memory_SwapFree_bytes") is None  # a field the kernel did not print: omitted, not zero
    assert snap.value("node_filesystem_avail_bytes", mountpoint="/") == 300  # non-root (f_bavail)
    assert snap.value("node_filesystem_free_bytes", mountpoint="/") == 400  # incl. root's reserve
    assert snap.value("node_network_receive_bytes_total", device="eth0") == 200
    assert snap.value("node_network_receive_drop_total", device="eth0") == 3
    assert snap.value("node_disk_io_time_seconds_total", device="nvme0n1") == 3.0
    assert snap.value("node_disk_read_bytes_total", device="nvme0n1") == 4096
    assert snap.samples("node_disk_writes_completed_total") == []  # not read: no series


def test_real_host_readings():
    c = HostCollector(["tmpfs"], "^/(dev|proc|sys)($|/)", "^lo$")
    snap = Snapshot(0.0, tuple(c.collect()))
    assert snap.samples("node_cpu_seconds_total")
    assert snap.value("node_memory_MemTotal_bytes") > 0
    assert all(s.label("fstype") != "tmpfs" for s in snap.samples("node_filesystem_size_bytes"))
    assert all(s.label("device") != "lo" for s in snap.samples("node_network_receive_bytes_total"))
    root = snap.samples("node_filesystem_size_bytes")
    st = os.statvfs(root[0].label("mountpoint"))
    assert root[0].value == st.f_blocks * st.f_frsize
    c.close()


def test_mount_table_read_again_only_when_it_changes_or_every_refresh():
    now = [0.0]
    watch = MountWatch(refresh=300, clock=lambda: now[0])
    assert watch.changed()  # the first look reads it
    assert not watch.changed()
    now[0] = 301.0
    assert watch.changed()  # the safety net: read again every `refresh` seconds
    watch.close()
    blind = MountWatch("/nonexistent/mounts", refresh=300, clock=lambda: now[0])  # no poll: the refresh alone
    assert blind.changed() and not blind.changed()


MOUNT_CHANGE = """
import subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
from agent.collectors.host import MountWatch
watch = MountWatch(refresh=1e9)
assert watch.changed() and not watch.changed()
d = tempfile.mkdtemp()
subprocess.run(["mount", "-t", "tmpfs", "none", d], check=True)  # in this process's own mount namespace
print("after mount", watch.changed(), watch.changed())
subprocess.run(["umount", d], check=True)
print("after umount", watch.changed())
"""


def test_a_mount_is_noticed_at_once_through_poll():
    """A real mount in a private mount namespace (unshare -m): the host's table is untouched."""
    import shutil
    import subprocess
    import sys

    import pytest
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    root = __file__.rsplit("/tests/", 1)[0]
    out = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", MOUNT_CHANGE, root],
                         capture_output=True, text=True, timeout=30)
    if out.returncode and ("Operation not permitted" in out.stderr or "permission" in out.stderr.lower()):
        pytest.skip(f"no private mount namespace here: {out.stderr.strip()[:200]}")
    assert out.returncode == 0, out.stderr
    assert "after mount True False" in out.stdout
    assert "after umount True" in out.stdout
