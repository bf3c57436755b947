"""The NVML collector driven through a fake pynvml shaped after the real one, in scenarios
named after real failures; and the real pynvml on this GPU-less machine."""

import time

import pytest

from agent.collectors.nvml import NvmlCollector
from agent.model import Snapshot
from tests.support.clock import ManualClock
from tests.support.fake_pynvml import NO_SUCH_PID, FakeGpu, FakeNvml, three_gpus



def collect(collector):
    fams = collector.collect()
    return Snapshot(0.0, tuple(fams))


def gpus_with(snap, name):
    return sorted(s.label("gpu") for s in snap.samples(name))


@pytest.fixture
def three():
    fake = FakeNvml(three_gpus())
    c = NvmlCollector(fake, hostname="gpu-host-1", process_name=lambda pid: {NO_SUCH_PID: "llama-server"}.get(pid, ""),
                      xid_wait_ms=20)  # the event wait returns every 20 ms: XIDs are read back at once
    yield fake, c
    c.close()


def test_three_gpus_one_without_power_one_lost(three):
    fake, c = three
    snap = collect(c)
    assert snap.value("llm_agent_nvml_up") == 1
    assert {s.label("gpu"): s.value for s in snap.samples("llm_agent_gpu_up")} == {"0": 1, "1": 1, "2": 0}
    # GPU 1 has no power readings: omitted, not zero
    assert gpus_with(snap, "DCGM_FI_DEV_POWER_USAGE") == ["0"]
    assert gpus_with(snap, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") == ["0"]
    assert gpus_with(snap, "DCGM_FI_DEV_GPU_UTIL") == ["0", "1"]
    # the lost GPU has nothing but up 0
    assert all(s.label("gpu") != "2" for f in snap.families if f.name != "llm_agent_gpu_up" for s in f.samples)
    assert [p.subject for p in c.problems] == ["gpu 2"] and c.problems[0].severity == "critical"


def test_dcgm_names_units_and_labels(three):
    _, c = three
    snap = collect(c)
    s = snap.samples("DCGM_FI_DEV_FB_USED")[0]
    assert dict(s.labels) == {"gpu": "0", "UUID": "GPU-aaaaaaaa-0000-0000-0000-000000000000",
                              "pci_bus_id": "00000000:17:00.0", "device": "nvidia0",
                              "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "gpu-host-1"}
    assert s.value == 58000  # MiB
    assert snap.value("DCGM_FI_DEV_FB_RESERVED", gpu="0") == 559
    assert snap.value("DCGM_FI_DEV_POWER_USAGE", gpu="0") == 312.0  # W from mW
    assert snap.value("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu="0") == 123_456_789  # mJ as NVML gives
    assert snap.value("DCGM_FI_DEV_SM_CLOCK", gpu="0") == 1980
    assert snap.value("DCGM_FI_DEV_MEMORY_TEMP", gpu="0") == 52
    assert snap.value("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", gpu="0") == 3
    assert snap.family("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL").type == "counter"
    # GPU 1 predates memory info v2: no reserved figure, the rest from v1
    assert gpus_with(snap, "DCGM_FI_DEV_FB_RESERVED") == ["0"]
    assert gpus_with(snap, "DCGM_FI_DEV_FB_USED") == ["0", "1"]
    # fan: not supported on GPU 0 (omitted), supported on GPU 1
    assert gpus_with(snap, "DCGM_FI_DEV_FAN_SPEED") == ["1"]


def test_clock_event_reasons_decoded(three):
    _, c = three
    snap = collect(c)
    active = {s.label("reason") for s in snap.samples("llm_agent_gpu_clock_event_reasons")
              if s.label("gpu") == "1" and s.value == 1}
    assert active == {"sw_power_cap", "hw_thermal_slowdown"}
    assert snap.value("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", gpu="1") == 0x44


def test_process_memory_with_names_and_unknown_usage_omitted(three):
    _, c = three
    snap = collect(c)
    procs = [(s.label("pid"), s.label("process_name"), s.value) for s in snap.samples("llm_agent_gpu_process_memory_bytes")]
    assert procs == [(str(NO_SUCH_PID), "llama-server", 56 << 30)]


def test_a_dead_xid_watcher_is_reported_and_restarted(three):
    fake, c = three
    assert collect(c).value("llm_agent_nvml_xid_watcher_up") == 1
    watcher = c._xid
    fake.break_event_wait()
    watcher._thread.join(5)  # the event: the watcher's thread ended on the error
    snap = collect(c)
    assert snap.value("llm_agent_nvml_xid_watcher_up") == 0
    assert any("XID event watching stopped" in p.message for p in c.problems)
    assert collect(c).value("llm_agent_nvml_xid_watcher_up") == 1, "restarted"
    fake.inject_xid(1, 48)
    deadline = time.monotonic() + 5
    while not collect(c).samples("llm_agent_gpu_xid_errors_total") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collect(c).value("llm_agent_gpu_xid_errors_total", gpu="1", xid="48") == 1


def test_closing_never_waits_for_the_event_wait_nor_frees_under_it():
    """The watcher waits 5 s at a time (one wake-up a cycle); closing returns at once, and the
    event set is freed and NVML shut down only when the wait has returned, never under it. A
    reload's new collector, initialised meanwhile, keeps NVML (its init is counted)."""
    fake = FakeNvml(three_gpus())
    old = NvmlCollector(fake, xid_wait_ms=2000)
    collect(old)
    watcher = old._xid
    time.sleep(0.05)  # the watcher is inside its 2 s wait
    new = NvmlCollector(fake, xid_wait_ms=2000)
    collect(new)  # a reload: the new collector is built before the old is closed
    start = time.monotonic()
    old.close()
    assert time.monotonic() - start < 1, "closing waited for the event wait"
    assert fake.initialized and watcher._thread.is_alive()
    watcher._thread.join(10)
    assert fake.freed_under_wait == 0
    assert fake.initialized, "the old collector's shutdown must not end the new one's NVML"
    fake.inject_xid(1, 48)
    deadline = time.monotonic() + 10
    while not collect(new).samples("llm_agent_gpu_xid_errors_total") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert collect(new).value("llm_agent_gpu_xid_errors_total", gpu="1", xid="48") == 1
    new.close()
    new_watcher = new._xid
    assert new_watcher is None
    deadline = time.monotonic() + 10
    while fake.initialized and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not fake.initialized and fake.freed_under_wait == 0, "shut down once the last wait returned"


def test_xid_events_counted_by_code(three):
    fake, c = three
    collect(c)  # initialises NVML and starts the event thread
    for xid in (79, 79, 13):
        fake.inject_xid(0, xid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        snap = collect(c)
        if sum(s.value for s in snap.samples("llm_agent_gpu_xid_errors_total")) == 3:
            break
        time.sleep(0.05)
    counts = {s.label("xid"): s.value for s in snap.samples("llm_agent_gpu_xid_errors_total")}
    assert counts == {"79": 2, "13": 1}
    assert snap.value("DCGM_FI_DEV_XID_ERRORS", gpu="0") == 13  # the last one
    assert snap.value("DCGM_FI_DEV_XID_ERRORS", gpu="1") == 0


def test_gpu_lost_mid_run_then_others_carry_on(three):
    fake, c = three
    assert collect(c).value("llm_agent_gpu_up", gpu="0") == 1
    fake.gpus[0].lost = True
    snap = collect(c)
    assert snap.value("llm_agent_gpu_up", gpu="0") == 0
    assert snap.value("llm_agent_gpu_up", gpu="1") == 1
    # the lost GPU keeps its identity labels, so its alert names the right board
    lost = [s for s in snap.samples("llm_agent_gpu_up") if s.label("gpu") == "0"][0]
    assert lost.label("UUID") == "GPU-aaaaaaaa-0000-0000-0000-000000000000"
    assert gpus_with(snap, "DCGM_FI_DEV_GPU_UTIL") == ["1"]


def test_driver_not_loaded_is_reported_and_retried_with_backoff():
    fake = FakeNvml([FakeGpu()], driver_loaded=False)
    clock = ManualClock()
    c = NvmlCollector(fake, clock=clock, xid_events=False)
    snap = collect(c)
    assert snap.value("llm_agent_nvml_up") == 0
    assert "Driver Not Loaded" in c.problems[0].message and "modprobe nvidia" in c.problems[0].fix
    collect(c)
    assert fake.init_calls == 1  # backing off: no retry yet
    clock.now += 1.5
    collect(c)
    assert fake.init_calls == 2
    clock.now += 1.5  # the backoff doubled to 2s
    collect(c)
    assert fake.init_calls == 2
    fake.driver_loaded = True
    clock.now += 1.0
    snap = collect(c)
    assert snap.value("llm_agent_nvml_up") == 1 and snap.value("llm_agent_gpu_up", gpu="0") == 1
    assert snap.value("llm_agent_nvml_init_failures_total") == 2


def test_driver_unloaded_mid_run_reinitialises():
    fake = FakeNvml([FakeGpu()])
    clock = ManualClock()
    c = NvmlCollector(fake, clock=clock, xid_events=False)
    assert collect(c).value("llm_agent_nvml_up") == 1
    fake.driver_loaded = False
    snap = collect(c)
    assert snap.value("llm_agent_nvml_up") == 0
    assert c.problems[0].severity == "critical"
    fake.driver_loaded = True
    clock.now += 2
    assert collect(c).value("llm_agent_nvml_up") == 1


def test_unexpected_field_error_is_counted_and_omitted():
    fake = FakeNvml([FakeGpu(errors={"nvmlDeviceGetPowerUsage": FakeNvml([]).NVML_ERROR_NO_PERMISSION})])
    c = NvmlCollector(fake, xid_events=False)
    snap = collect(c)
    collect(c)
    snap = collect(c)
    assert snap.samples("DCGM_FI_DEV_POWER_USAGE") == []
    assert snap.value("llm_agent_nvml_field_errors_total", field="power usage") == 3
    assert snap.value("llm_agent_gpu_up", gpu="0") == 1


class OldBindings(FakeNvml):
    """nvidia-ml-py before 12.535 named the call ...ClocksThrottleReasons only."""

    nvmlDeviceGetCurrentClocksEventReasons = None

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self._gpu(h, "throttle").throttle


class AncientBindings(FakeNvml):
    """Bindings with neither call: the field is omitted, the GPU stays up."""

    nvmlDeviceGetCurrentClocksEventReasons = None


def test_old_bindings_use_the_old_call_name():
    snap = collect(NvmlCollector(OldBindings([FakeGpu(throttle=0x4)]), xid_events=False))
    assert snap.value("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", gpu="0") == 4


def test_missing_function_in_bindings_is_omitted():
    snap = collect(NvmlCollector(AncientBindings([FakeGpu()]), xid_events=False))
    assert snap.samples("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS") == []
    assert snap.value("llm_agent_gpu_up", gpu="0") == 1


def test_unsupported_fields_are_not_asked_again():
    fake = FakeNvml([FakeGpu(power_mw=None)])
    calls = []
    original = fake.nvmlDeviceGetPowerUsage
    fake.nvmlDeviceGetPowerUsage = lambda h: calls.append(1) or original(h)
    c = NvmlCollector(fake, xid_events=False)
    for _ in range(3):
        collect(c)
    assert len(calls) == 1


def real_nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_real_pynvml_reports_and_survives_with_or_without_a_gpu():
    """The real bindings: on a host without the driver they raise LibraryNotFound, which is
    reported as information with the fix; on a GPU host every GPU is read and up."""
    c = NvmlCollector(None, xid_events=False)
    snap = collect(c)
    if real_nvml_works():
        assert snap.value("llm_agent_nvml_up") == 1
        assert snap.samples("llm_agent_gpu_up") and all(s.value == 1 for s in snap.samples("llm_agent_gpu_up"))
        assert snap.samples("DCGM_FI_DEV_FB_USED")
    else:
        assert snap.value("llm_agent_nvml_up") == 0
        assert c.problems[0].subject == "nvml" and "libnvidia-ml.so.1" in c.problems[0].fix
        assert c.problems[0].severity == "info"
    c.close()


def test_pcie_link_current_and_maximum_under_dcgm_names(three):
    fake, c = three
    fake.gpus[1].pcie_link = None  # NotSupported: omitted
    fake.gpus[0].pcie_link = (4, 8, 5, 16)  # downtrained to Gen4 x8
    snap = collect(c)
    assert snap.value("DCGM_FI_DEV_PCIE_LINK_WIDTH", gpu="0") == 8
    assert snap.value("DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", gpu="0") == 16
    assert snap.value("DCGM_FI_DEV_PCIE_LINK_GEN", gpu="0") == 4
    assert gpus_with(snap, "DCGM_FI_DEV_PCIE_MAX_LINK_GEN") == ["0"]


def test_a_gpu_gone_after_a_restart_is_missing_by_its_pci_address(tmp_path):
    def run(gpus, expected=0):
        c = NvmlCollector(FakeNvml(gpus), hostname="h", state_dir=str(tmp_path), expected_gpus=expected,
                          xid_events=False)
        try:
            return collect(c), c
        finally:
            c.close()

    gpus = [FakeGpu(uuid=f"GPU-{i}", pci_bus_id=f"00000000:{0x17 + i:02x}:00.0", minor=i) for i in range(4)]
    snap, c = run(gpus)
    assert snap.value("llm_agent_gpu_expected") == 4 and snap.samples("llm_agent_gpu_missing") == []
    snap, c = run(gpus[:1] + gpus[2:])  # after a reboot GPU 1 is not listed any more
    [missing] = snap.samples("llm_agent_gpu_missing")
    assert missing.label("pci_bus_id") == "00000000:18:00.0" and missing.label("UUID") == "GPU-1"
    assert snap.value("llm_agent_gpu_visible") == 3 and snap.value("llm_agent_gpu_expected") == 4
    assert any(p.severity == "critical" and "00000000:18:00.0" in p.message for p in c.problems)
    snap, _ = run(gpus[:2], expected=6)  # the count says more are missing than were ever seen
    assert sorted((s.label("pci_bus_id"), s.label("slot")) for s in snap.samples("llm_agent_gpu_missing")) == \
        [("00000000:19:00.0", ""), ("00000000:1a:00.0", ""), ("?", "1"), ("?", "2")]
    (tmp_path / "gpus.json").write_text("{not json")
    snap, _ = run(gpus[:2])
    assert snap.samples("llm_agent_gpu_missing") == [], "an unreadable inventory is moved aside and relearned"
    assert list(tmp_path.glob("gpus.json.bad-*"))


def test_gpu_missing_and_pcie_rules_fire_on_their_inputs():
    from agent.model import gauge as g
    from tests.support.default_rules import fire

    labels = {"gpu": "0", "Hostname": "h"}
    link = [(t, [g("DCGM_FI_DEV_PCIE_LINK_WIDTH", "").add(labels, 8), g("DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", "").add(labels, 16),
                 g("DCGM_FI_DEV_PCIE_LINK_GEN", "").add(labels, 4), g("DCGM_FI_DEV_PCIE_MAX_LINK_GEN", "").add(labels, 5),
                 g("DCGM_FI_DEV_GPU_UTIL", "").add(labels, 90),
                 g("llm_agent_gpu_missing", "").add({"pci_bus_id": "x", "UUID": "u", "Hostname": "h", "slot": ""}, 1)])
            for t in range(0, 700, 30)]
    assert fire(("GpuPcieLinkNarrow", "GpuPcieLinkSlow", "GpuMissing"), link) == \
        [("GpuMissing", "firing"), ("GpuPcieLinkNarrow", "firing"), ("GpuPcieLinkSlow", "firing")]


def test_processes_carry_their_owner_and_their_utilisation():
    fake = FakeNvml([FakeGpu(processes=[(4242, 70 << 30), (4243, 1 << 30)],
                             process_utilization=[(4242, 100, 88, 40, 0, 0), (4242, 200, 91, 42, 0, 0),
                                                  (4243, 150, 3, 1, 0, 0)])])
    owners = {4242: {"pod": "vllm-0", "namespace": "inference", "container_id": "0123456789ab"},
              4243: {"unit": "sidecar.service"}}
    c = NvmlCollector(fake, process_name=lambda pid: "python3", process_owner=owners.get, xid_events=False)
    try:
        snap = collect(c)
        [mem] = [s for s in snap.samples("llm_agent_gpu_process_memory_bytes") if s.label("pid") == "4242"]
        assert mem.label("pod") == "vllm-0" and mem.label("namespace") == "inference" and mem.value == 70 << 30
        assert snap.value("llm_agent_gpu_process_utilization_percent", pid="4242", engine="sm") == 91, "the latest sample"
        assert snap.value("llm_agent_gpu_process_utilization_percent", pid="4243", unit="sidecar.service",
                          engine="memory") == 1
        assert collect(c).samples("llm_agent_gpu_process_utilization_percent") == [], "no new sample: NOT_FOUND, nothing"
        fake.gpus[0].process_utilization = None
        fake.gpus[0].processes = [(4242, 1)]
        collect(c)
        assert (0, "process utilization") in c._unsupported, "NotSupported: not asked again"
    finally:
        c.close()


def test_a_process_name_and_owner_are_read_once_while_it_stays_on_a_gpu():
    """Two /proc reads per process per GPU per cycle were this collector's largest cost; they are
    read once while NVML lists the pid, and again if the pid leaves and comes back (reused)."""
    reads = []
    names = {4242: "vllm"}
    fake = FakeNvml([FakeGpu(processes=[(4242, 1 << 30)]), FakeGpu(processes=[(4242, 1 << 30)])])
    c = NvmlCollector(fake, process_name=lambda pid: reads.append(pid) or names[pid], process_owner=lambda pid: {},
                      xid_events=False)
    try:
        for _ in range(3):
            collect(c)
        assert reads == [4242], "one read for a process on two GPUs over three cycles"
        for g in fake.gpus:
            g.processes = []
        collect(c)
        names[4242] = "python3"  # the number is reused by another program
        for g in fake.gpus:
            g.processes = [(4242, 1 << 30)]
        snap = collect(c)
        assert reads == [4242, 4242]
        assert {s.label("process_name") for s in snap.samples("llm_agent_gpu_process_memory_bytes")} == {"python3"}
    finally:
        c.close()


def test_violation_time_encoder_decoder_nvlink_and_versions_under_dcgm_names(three):
    fake, c = three
    snap = collect(c)
    assert snap.value("DCGM_FI_DEV_POWER_VIOLATION", gpu="0") == 1_500_000, "us, from NVML's ns"
    assert snap.value("DCGM_FI_DEV_THERMAL_VIOLATION", gpu="0") == 250_000
    assert snap.value("DCGM_FI_DEV_DEC_UTIL", gpu="0") == 12 and snap.value("DCGM_FI_DEV_ENC_UTIL", gpu="0") == 0
    assert snap.value("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", gpu="0") == 1200
    assert snap.value("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", gpu="0") == 350
    assert snap.value("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", gpu="0") == 5, "summed over the links up"
    assert snap.value("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", gpu="0") == 3
    assert snap.value("llm_agent_gpu_nvlink_links_active", gpu="0") == 2
    assert gpus_with(snap, "DCGM_FI_DEV_RETIRED_SBE") == [], "Ampere and newer remap rows: omitted"
    info = snap.samples("llm_agent_nvml_info")[0]
    assert info.label("cuda_driver_version") == "12.4" and info.label("driver_version") == "550.54.15"


def test_a_board_without_nvlink_and_one_with_page_retirement():
    fake = FakeNvml([FakeGpu(nvlinks=None, retired_pages=(3, 1, True))])
    c = NvmlCollector(fake, xid_events=False)
    try:
        snap = collect(c)
        assert snap.samples("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL") == []
        assert snap.value("DCGM_FI_DEV_RETIRED_SBE") == 3 and snap.value("DCGM_FI_DEV_RETIRED_DBE") == 1
        assert snap.value("DCGM_FI_DEV_RETIRED_PENDING") == 1
        assert (0, "nvlink") in c._unsupported, "NotSupported: not asked again"
    finally:
        c.close()


def test_gpm_gives_dcgm_profiling_metrics_from_two_samples_and_frees_them():
    h100 = FakeGpu(gpm={"NVML_GPM_METRIC_SM_UTIL": 87.5, "NVML_GPM_METRIC_ANY_TENSOR_UTIL": 40.0,
                        "NVML_GPM_METRIC_DRAM_BW_UTIL": 61.0, "NVML_GPM_METRIC_PCIE_TX_PER_SEC": 100.0,
                        "NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC": 2048.0})
    a10 = FakeGpu(name="NVIDIA A10", uuid="GPU-b", pci_bus_id="00000000:31:00.0", minor=1)  # no GPM
    fake = FakeNvml([h100, a10])
    c = NvmlCollector(fake, xid_events=False)
    try:
        assert collect(c).samples("DCGM_FI_PROF_SM_ACTIVE") == [], "one sample is not an interval"
        snap = collect(c)
        assert snap.value("DCGM_FI_PROF_SM_ACTIVE", gpu="0") == pytest.approx(0.875), "a ratio, as DCGM's"
        assert snap.value("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gpu="0") == pytest.approx(0.40)
        assert snap.value("DCGM_FI_PROF_PCIE_TX_BYTES", gpu="0") == 100 * 2**20, "bytes per second"
        assert snap.value("DCGM_FI_PROF_NVLINK_RX_BYTES", gpu="0") == 2048 * 2**20
        assert snap.samples("DCGM_FI_PROF_PIPE_FP64_ACTIVE") == [], "a metric NVML cannot compute is omitted"
        assert gpus_with(snap, "DCGM_FI_PROF_DRAM_ACTIVE") == ["0"], "the A10 has no GPM"
        for _ in range(5):
            collect(c)
        assert fake.gpm_samples_live == 1, "every sample but the latest freed"
    finally:
        c.close()
    assert fake.gpm_samples_live == 0


def test_mig_instances_are_labelled_as_dcgm_exporter_labels_them():
    gpu = FakeGpu(gpm={"NVML_GPM_METRIC_SM_UTIL": 50.0},
                  mig=[(1, "3g.40gb", 10 << 30, 40 << 30), None, (2, "1g.10gb", 1 << 30, 10 << 30)])
    plain = FakeGpu(uuid="GPU-b", pci_bus_id="00000000:31:00.0", minor=1)  # MIG NotSupported
    c = NvmlCollector(FakeNvml([gpu, plain]), xid_events=False)
    try:
        collect(c)
        snap = collect(c)
        by_instance = {(s.label("GPU_I_ID"), s.label("GPU_I_PROFILE")): s.value
                       for s in snap.samples("DCGM_FI_DEV_FB_USED") if s.label("gpu") == "0"}
        assert by_instance == {("", ""): 58000, ("1", "3g.40gb"): 10240, ("2", "1g.10gb"): 1024}, \
            "the whole GPU and each instance, the empty slot skipped"
        assert snap.value("DCGM_FI_PROF_SM_ACTIVE", GPU_I_ID="2") == pytest.approx(0.5)
        assert (1, "mig") in c._unsupported
    finally:
        c.close()


# -- a driver that hangs ----------------------------------------------------------------------------

def hung(call="nvmlDeviceGetPowerUsage", on=1, seconds=None):
    """Three GPUs, one of whose `call` blocks (until released, or for `seconds`)."""
    import threading

    gpus = three_gpus()
    release = threading.Event()
    gpus[on].lost = False
    gpus[on].hangs = {call: seconds if seconds is not None else release}
    fake = FakeNvml(gpus)
    return fake, release, NvmlCollector(fake, hostname="h", xid_events=False, call_wait=0.3)


def test_a_call_that_never_returns_stalls_only_its_gpu_and_pages():
    import threading

    fake, release, c = hung()
    try:
        before = threading.active_count()
        first = collect(c)
        # the other GPUs are read; the stuck one is left out and named with its call
        assert gpus_with(first, "DCGM_FI_DEV_GPU_TEMP") == ["0"]  # GPU 2 is the fixture's lost one
        stuck = first.samples("llm_agent_nvml_call_stuck_seconds")
        assert [(s.label("gpu"), s.label("call")) for s in stuck] == [("1", "nvmlDeviceGetPowerUsage")]
        assert stuck[0].value >= 0.25  # the call began just after the cycle's wait did
        assert any(p.severity == "critical" and "nvmlDeviceGetPowerUsage" in p.message for p in c.problems)
        for _ in range(5):  # cycles go on at their usual cost; no new call goes to the stuck GPU
            start = time.monotonic()
            snap = collect(c)
            assert time.monotonic() - start < 0.25
        assert snap.samples("llm_agent_nvml_call_stuck_seconds")[0].value > stuck[0].value
        assert snap.value("llm_agent_nvml_blocked_threads") == 1
        assert threading.active_count() <= before + 2  # one blocked reader and one working: no pile-up
    finally:
        release.set()
    time.sleep(0.2)
    after = collect(c)  # the call returned: the GPU is read again
    assert gpus_with(after, "DCGM_FI_DEV_GPU_TEMP") == ["0", "1"]
    assert after.samples("llm_agent_nvml_call_stuck_seconds") == []
    assert after.value("llm_agent_nvml_blocked_threads") == 0
    c.close()


def test_a_call_that_returns_after_a_long_while_is_stuck_meanwhile_then_read_again():
    fake, _, c = hung(call="nvmlDeviceGetTemperature", seconds=1.5)
    try:
        snap = collect(c)
        assert [s.label("call") for s in snap.samples("llm_agent_nvml_call_stuck_seconds")] == \
            ["nvmlDeviceGetTemperature"]
        fake.gpus[1].hangs = {}  # the driver recovers
        time.sleep(1.4)
        snap = collect(c)
        assert snap.samples("llm_agent_nvml_call_stuck_seconds") == []
        assert "1" in gpus_with(snap, "DCGM_FI_DEV_GPU_TEMP")
    finally:
        c.close()
