"""The host collector: pure mapping on captured psutil values, and the real psutil here."""

from collections import namedtuple

from agent.collectors.host import HostCollector, HostReadings, MountWatch, host_families
from agent.model import Snapshot

CpuTimes = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
VMem = namedtuple("svmem", "total available percent used free active inactive buffers cached shared slab")
Swap = namedtuple("sswap", "total used free percent sin sout")
Part = namedtuple("sdiskpart", "device mountpoint fstype opts")
Usage = namedtuple("sdiskusage", "total used free percent")
Net = namedtuple("snetio", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")
Disk = namedtuple("sdiskio", "read_count write_count read_bytes write_bytes read_time write_time read_merged_count "
                             "write_merged_count busy_time")


def test_node_exporter_names_from_psutil_values():
    r = HostReadings(
        per_cpu=[CpuTimes(10, 0, 5, 100, 1, 0, 0.5, 0, 0, 0)] * 2, load=(0.5, 0.4, 0.3),
        memory=VMem(32e9, 20e9, 37.5, 12e9, 8e9, 0, 0, 1e9, 5e9, 0, 0), swap=Swap(2e9, 0, 2e9, 0, 0, 0),
        filesystems=[(Part("/dev/nvme0n1p1", "/", "ext4", "rw"), Usage(1000, 600, 300, 66.7))],
        net={"eth0": Net(100, 200, 1, 2, 0, 0, 3, 0)},
        disks={"nvme0n1": Disk(10, 20, 4096, 8192, 1500, 2500, 0, 0, 3000)}, boot_time=1.7e9)
    snap = Snapshot(0.0, tuple(host_families(r)))
    assert snap.value("node_cpu_seconds_total", cpu="1", mode="idle") == 100
    assert len(snap.samples("node_cpu_seconds_total")) == 16  # 8 modes x 2 CPUs, guest not double-counted
    assert snap.value("node_load1") == 0.5
    assert snap.value("node_memory_MemAvailable_bytes") == 20e9
    assert snap.value("node_filesystem_avail_bytes", mountpoint="/") == 300  # non-root (f_bavail)
    assert snap.value("node_filesystem_free_bytes", mountpoint="/") == 400  # incl. root's reserve
    assert snap.value("node_network_receive_bytes_total", device="eth0") == 200
    assert snap.value("node_network_receive_drop_total", device="eth0") == 3
    assert snap.value("node_disk_io_time_seconds_total", device="nvme0n1") == 3.0
    assert snap.value("node_disk_read_bytes_total", device="nvme0n1") == 4096


def test_real_host_readings():
    c = HostCollector(["tmpfs"], "^/(dev|proc|sys)($|/)", "^lo$")
    snap = Snapshot(0.0, tuple(c.collect()))
    assert snap.samples("node_cpu_seconds_total")
    assert snap.value("node_memory_MemTotal_bytes") > 0
    assert all(s.label("fstype") != "tmpfs" for s in snap.samples("node_filesystem_size_bytes"))
    assert all(s.label("device") != "lo" for s in snap.samples("node_network_receive_bytes_total"))
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
