"""NVIDIA's kernel messages: the Xid catalogue (every code NVIDIA documents, 1-172), the kmsg
record and NVRM line parsers on captured lines (tests/fixtures/kmsg: old and new Xid formats,
MIG, Xid 154, SXid, "fallen off the bus"), the position kept across restarts so a replayed ring
buffer is not counted twice, the GPU labels joined by PCI address, and the Xid rules."""

import os
import random
import shutil
from pathlib import Path

import pytest

from agent.collectors.kernel import (SEVERITY_OF, KernelCollector, KmsgSource, XidEvents, catalog, describe,
                                     parse_event, parse_record, pci_key)
from agent.model import Snapshot, gauge
from tests.support.default_rules import fire

FIX = Path(__file__).parent.parent / "fixtures" / "kmsg" / "nvidia.kmsg"


def test_the_catalogue_has_every_documented_code_with_an_action():
    codes = catalog()
    assert sorted(codes) == list(range(1, 173)), "NVIDIA's Ampere-and-newer catalogue documents Xid 1 to 172"
    for code, info in codes.items():
        assert info.action in SEVERITY_OF, code
        assert info.severity == SEVERITY_OF[info.action] or info.meaning == "Unused", code
        assert info.name and info.meaning
    assert (describe(79).action, describe(48).action, describe(95).action) == ("reboot_node", "reset_gpu", "reset_gpu")
    assert (describe(13).action, describe(94).action, describe(63).action) == ("restart_app", "restart_app", "none")
    assert describe(54).action == "check_power_cooling" and describe(999).action == "contact_support"


def test_records_and_events_from_captured_lines():
    lines = FIX.read_text().splitlines()
    records = [r for r in (parse_record(line) for line in lines) if r]
    assert [r.seq for r in records] == list(range(1000, 1012)), "continuation lines are not records"
    events = [e for e in (parse_event(r.message) for r in records) if e]
    assert [(e.kind, e.pci, e.code) for e in events] == [
        ("xid", "0000:17:00", 13), ("xid", "0000:17:00", 43), ("xid", "0000:31:00", 48), ("xid", "0000:31:00", 154),
        ("xid", "0000:31:00", 94), ("sxid", "0000:05:00", 12028), ("xid", "0000:b1:00", 79), ("off_bus", "0000:b1:00", 0)]
    assert events[3].recovery == "reset_gpu"
    assert parse_record("6,5,100,-;a\\x0ab").message == "a\nb"
    assert pci_key("00000000:3B:00.0") == pci_key("0000:3b:00") == "0000:3b:00"


def test_parsers_never_raise_on_fuzzed_input():
    rng = random.Random(11)
    pieces = ["NVRM: Xid (", "PCI:", "0000:17:00", "): ", "13", ",", ";", "6,", "12,", "-", "SXid (", "GPU ", "at ",
              "has fallen off the bus", "\\x0a", "\\xzz", "é", "\x00", " ", "154", "recovery action changed from 0x0 (None) to 0x2 ("]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        parse_record(text)
        parse_event(text)


@pytest.fixture
def kmsg(tmp_path):
    path = tmp_path / "kmsg"
    shutil.copy(FIX, path)
    boot = tmp_path / "boot_id"
    boot.write_text("boot-a\n")
    state = tmp_path / "state"
    state.mkdir()
    return path, str(state), str(boot)


def test_a_restart_does_not_count_the_replayed_ring_buffer_again(kmsg):
    path, state, boot = kmsg
    first = KmsgSource(str(path), state, boot)
    assert len(first.read()) == 12
    first.save()
    first.close()
    again = KmsgSource(str(path), state, boot)  # the agent restarted: the same records are read again
    assert again.read() == [], "already seen"
    with open(path, "a") as f:
        f.write("3,1012,1200000000,-;NVRM: Xid (PCI:0000:17:00): 31, pid=1, MMU Fault\n")
    assert [r.seq for r in again.read()] == [1012]
    again.save()
    Path(boot).write_text("boot-b\n")  # a reboot: sequence numbers start again, everything is new
    assert len(KmsgSource(str(path), state, boot).read()) == 13


def test_the_collector_and_the_gpu_labels(kmsg):
    path, state, boot = kmsg
    c = KernelCollector(KmsgSource(str(path), state, boot))
    fams = c.collect()
    snap = Snapshot(0.0, tuple(fams))
    assert snap.value("llm_agent_kernel_log_up") == 1 and snap.value("llm_agent_kernel_records_total") == 12
    assert snap.value("llm_agent_kernel_xid_events_total", pci_bus_id="0000:31:00", xid="48") == 1
    assert snap.value("llm_agent_kernel_sxid_events_total", sxid="12028") == 1
    assert snap.value("llm_agent_kernel_gpu_fallen_off_bus_total", pci_bus_id="0000:b1:00") == 1
    assert snap.value("llm_agent_kernel_gpu_recovery_action", pci_bus_id="0000:31:00", action="reset_gpu") == 1
    up = gauge("llm_agent_gpu_up", "")
    up.add({"gpu": "0", "UUID": "GPU-a", "pci_bus_id": "00000000:17:00.0", "Hostname": "h"}, 1)
    up.add({"gpu": "1", "UUID": "GPU-b", "pci_bus_id": "00000000:31:00.0", "Hostname": "h"}, 1)
    derived = Snapshot(0.0, tuple(XidEvents().derive(Snapshot(0.0, tuple(fams) + (up,)))))
    [dbe] = [s for s in derived.samples("llm_agent_gpu_xid_events_total") if s.label("xid") == "48"]
    assert (dbe.label("gpu"), dbe.label("UUID"), dbe.label("action"), dbe.label("severity")) == \
        ("1", "GPU-b", "reset_gpu", "critical")
    assert dbe.label("name") == "ROBUST_CHANNEL_GPU_ECC_DBE" and "Double Bit ECC" in dbe.label("meaning")
    [gone] = [s for s in derived.samples("llm_agent_gpu_xid_events_total") if s.label("xid") == "79"]
    assert gone.label("gpu") == "" and gone.label("pci_bus_id") == "0000:b1:00", "a GPU NVML no longer lists"
    c.close()


def test_an_unreadable_log_is_said_once_as_info_not_a_failure(tmp_path):
    c = KernelCollector(KmsgSource(str(tmp_path / "nope"), str(tmp_path)))
    snap = Snapshot(0.0, tuple(c.collect()))
    assert snap.value("llm_agent_kernel_log_up") == 0
    assert [p.severity for p in c.problems] == ["info"] and "nope" in c.problems[0].message


def test_the_real_kernel_log_when_this_machine_lets_us_read_it(tmp_path):
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here")
    source = KmsgSource("/dev/kmsg", str(tmp_path))
    records = source.read()
    assert source.error == "" and records and all(r.seq >= 0 for r in records)
    source.save()
    source.close()
    again = KmsgSource("/dev/kmsg", str(tmp_path))
    assert all(r.seq > records[-1].seq for r in again.read()), "nothing read twice across a restart"
    again.close()


def xid_frames(code, action, severity, times, count_from=1):
    labels = {"gpu": "0", "UUID": "u", "pci_bus_id": "0000:17:00", "Hostname": "h", "xid": str(code), "name": "N",
              "meaning": "M", "action": action, "severity": severity}
    return [(t, [gauge("llm_agent_gpu_xid_events_total", "").add(labels, count_from + i),
                 gauge("llm_agent_gpu_xid_last_event_timestamp_seconds", "").add(labels, t)])
            for i, t in enumerate(times)]


def test_xid_rules_page_what_needs_action_and_escalate_what_recurs():
    names = ("GpuXidActionRequired", "GpuXidRecurring")
    assert fire(names, xid_frames(48, "reset_gpu", "critical", [1000])) == [("GpuXidActionRequired", "firing")]
    assert fire(names, xid_frames(13, "restart_app", "warning", [1000])) == [], "an application fault is not a page"
    recurring = xid_frames(13, "restart_app", "warning", [1000, 1600, 2200])
    assert fire(names, recurring) == [("GpuXidRecurring", "firing")]
    assert fire(names, xid_frames(43, "none", "info", [1000, 1600, 2200])) == []


def test_check_lists_each_gpus_xids_with_the_action(kmsg):
    from agent.check import build_report, render_report

    path, state, boot = kmsg
    c = KernelCollector(KmsgSource(str(path), state, boot))
    up = gauge("llm_agent_gpu_up", "").add({"gpu": "1", "UUID": "GPU-b", "pci_bus_id": "00000000:31:00.0",
                                            "modelName": "H100"}, 1)
    fams = tuple(c.collect()) + (up,)
    snap = Snapshot(0.0, fams + tuple(XidEvents().derive(Snapshot(0.0, fams))))
    text = render_report(build_report(snap, "h", "test"))
    assert "CRITICAL Xid 48 x1 ROBUST_CHANNEL_GPU_ECC_DBE: Double Bit ECC Error" in text and "-> reset_gpu" in text
    assert "GPU at PCI 0000:b1:00 (not listed by NVML): CRITICAL Xid 79" in text and "-> reboot_node" in text
    c.close()


def test_journald_is_the_fallback_and_keeps_its_cursor(tmp_path):
    """journalctl here has no journal to read (no journald in this container), so a stand-in
    script prints captured `journalctl -k -o json` lines, honouring --after-cursor as it does."""
    from agent.collectors.kernel import JournalSource, parse_journal_line

    lines = (FIX.parent / "journal.jsonl").read_text()
    fake = tmp_path / "journalctl"
    fake.write_text("#!/usr/bin/env python3\nimport sys\nlines = open(%r).read().splitlines()\n"
                    "args = sys.argv\nafter = args[args.index('--after-cursor') + 1] if '--after-cursor' in args else None\n"
                    "if after: lines = lines[[i for i, l in enumerate(lines) if after in l][0] + 1:]\n"
                    "print('\\n'.join(lines))\n" % str(FIX.parent / "journal.jsonl"))
    fake.chmod(0o755)
    boot = tmp_path / "boot_id"
    boot.write_text("b1")
    assert parse_journal_line(lines.splitlines()[1])[2].startswith("NVRM: Xid (PCI:0000:17:00): 48,")
    assert parse_journal_line("not json") is None and parse_journal_line('{"MESSAGE": "x"}') is None
    source = JournalSource(str(tmp_path), str(fake), str(boot))
    c = KernelCollector(source)
    snap = Snapshot(0.0, tuple(c.collect()))
    assert snap.value("llm_agent_kernel_xid_events_total", xid="79") == 1
    assert snap.value("llm_agent_kernel_xid_events_total", xid="48") == 1, "a message of raw bytes"
    again = KernelCollector(JournalSource(str(tmp_path), str(fake), str(boot)))  # a restart: from the cursor
    assert Snapshot(0.0, tuple(again.collect())).samples("llm_agent_kernel_xid_events_total") == []


def test_a_missing_journalctl_is_an_error_not_a_crash(tmp_path):
    from agent.collectors.kernel import JournalSource

    source = JournalSource(str(tmp_path), str(tmp_path / "no-journalctl"))
    assert source.read() == [] and "journalctl" in source.error


def test_a_flood_of_made_up_addresses_and_codes_cannot_grow_the_series(tmp_path):
    """Issue 27: a kernel log flood of unique (PCI address, Xid) pairs made 20,000 critical
    alerts and stalled the cycle. 50,000 records over 5,000 addresses and wild codes: the Xid
    series are bounded by the addresses one host has, the rest counted as unknown."""
    path = tmp_path / "kmsg"
    with open(path, "w") as f:
        for i in range(50_000):
            f.write(f"3,{i + 1},{1_000_000 + i},-;NVRM: Xid (PCI:0000:{i % 5000 // 256:02x}:{i % 256:02x}): "
                    f"{[79, 48, 999_999][i % 3]}, pid=1, flood\n")
    boot = tmp_path / "boot_id"
    boot.write_text("boot\n")
    c = KernelCollector(KmsgSource(str(path), str(tmp_path), str(boot)))
    for _ in range(20):  # the source reads a bounded number of records a cycle
        fams = c.collect()
    snap = Snapshot(0.0, tuple(fams))
    series = snap.samples("llm_agent_kernel_xid_events_total")
    assert len(series) <= 32 * 3 + 3, len(series)
    assert sum(s.value for s in series) == snap.value("llm_agent_kernel_records_total") == 50_000
    assert snap.value("llm_agent_kernel_xid_events_total", pci_bus_id="unknown", xid="0") > 0
    assert snap.value("llm_agent_kernel_events_bucketed_total") > 40_000
    c.close()


def test_an_xid_calling_for_a_reboot_in_a_third_boot_needs_inspection(tmp_path):
    """Issue 30 (GPUd's rule): the same GPU logs an Xid that calls for a reboot (79, fallen off
    the bus) in three boots within 30 days: GpuNeedsInspection. The same boot read twice counts
    once; a restart_app Xid counts never; a boot older than 30 days no longer counts."""
    from agent.collectors.xidboots import WINDOW

    state = tmp_path / "state"
    state.mkdir()
    now = [1_000_000.0]

    def boot(name, lines):
        log, boot_id = tmp_path / f"kmsg-{name}", tmp_path / f"boot-{name}"
        log.write_text("".join(f"3,{i + 1},{1000 + i},-;NVRM: Xid (PCI:0000:17:00): {xid}, pid=1, x\n"
                               for i, xid in enumerate(lines)))
        boot_id.write_text(name + "\n")
        c = KernelCollector(KmsgSource(str(log), str(state), str(boot_id)), clock=lambda: now[0], state_dir=str(state))
        snap = Snapshot(0.0, tuple(c.collect()))
        c.close()
        return snap.value("llm_agent_kernel_xid_reboot_boots", pci_bus_id=pci_key("0000:17:00.0"))

    assert boot("a", [79, 79]) == 1  # twice in one boot: one boot
    assert boot("b", [13]) == 1  # a restart_app Xid: not a reboot's
    now[0] += 86400
    assert boot("c", [79]) == 2
    now[0] += 86400
    assert boot("d", [79]) == 3  # after two reboots: needs inspection
    labels = {"pci_bus_id": "00000000:17:00.0", "gpu": "0", "Hostname": "h"}
    frames = [(t, [gauge("llm_agent_gpu_xid_reboot_boots", "").add(labels, 3)]) for t in (0.0, 60.0)]
    assert ("GpuNeedsInspection", "firing") in fire(("GpuNeedsInspection",), frames)
    now[0] += WINDOW - 1.5 * 86400  # boot "a" has left the 30 days, "c" and "d" have not
    assert boot("e", [79]) == 3
