"""kernelfiles.KernelFile: a file kept open reads what the file holds now, whole up to its
limit, and b"" once it is gone; then the path is opened again."""

import os
import subprocess
import sys
import time

from agent.collectors.kernelfiles import KernelFile


def test_reads_what_the_file_holds_now_whole_up_to_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a" * 10)
    f = KernelFile(str(path), limit=20000)
    assert f.read() == b"a" * 10
    with open(path, "r+b") as w:  # the same file, rewritten in place: the open one sees it
        w.write(b"b" * 9000)
    assert f.read() == b"b" * 9000  # more than the first buffer: read again, larger
    with open(path, "r+b") as w:
        w.write(b"c" * 30000)
    assert f.read() == b"c" * 20000  # never more than the limit
    f.close()


def test_a_missing_file_reads_empty_until_it_appears(tmp_path):
    path = tmp_path / "later"
    f = KernelFile(str(path))
    assert f.read() == b""
    path.write_bytes(b"here")
    assert f.read() == b"here"


def test_an_exited_process_reads_empty():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        f = KernelFile(f"/proc/{child.pid}/stat")
        assert f.read().startswith(f"{child.pid} (".encode())
    finally:
        child.kill()
        child.wait()
    assert f.read() == b""  # reaped: the kept file answers ESRCH, read as gone


def test_a_kept_proc_file_sees_cpu_time_move():
    f = KernelFile("/proc/self/stat")
    cpu_ticks = lambda: sum(int(x) for x in f.read().rsplit(b")", 1)[1].split()[11:13])  # noqa: E731 utime, stime
    start = cpu_ticks()
    t = time.process_time()
    while time.process_time() - t < 3 / os.sysconf("SC_CLK_TCK"):
        pass
    assert cpu_ticks() > start


def test_open_fds_counts_what_a_listing_counts(monkeypatch):
    from agent.collectors.kernelfiles import open_fds

    # a quiet process of our own (this one's threads open and close files while the suite runs)
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nfiles = [open('/dev/null') for _ in range(7)]\n"
                              "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        fd_dir = f"/proc/{child.pid}/fd"
        listed = len(os.listdir(fd_dir))
        assert listed >= 10 and open_fds(fd_dir) == listed
        real_stat = os.stat
        monkeypatch.setattr(os, "stat", lambda p: real_stat(p) if p != fd_dir else os.stat_result((0,) * 10))
        assert open_fds(fd_dir) == listed  # a kernel before 6.2 (a size of 0): listed
    finally:
        child.kill()
        child.wait()
