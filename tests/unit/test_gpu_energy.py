"""Issue 30: which model uses which GPU, and the energy per token of each model.

The NVML side is the real collector on the fake pynvml (energy counters, per-process lists and
utilisation samples as nvidia-ml-py returns them); the process side is real: a "server"
process with a child worker and a router's child naming its model on its command line, whose
ancestry is read from /proc as on a host.
"""

import subprocess
import sys

import pytest

from agent.collectors.gpu_energy import GpuEnergy
from agent.collectors.lineage import Lineage, parse_alias
from agent.collectors.nvml import NvmlCollector
from agent.config import CostSettings
from agent.model import Snapshot, counter, gauge
from tests.support.fake_pynvml import FakeGpu, FakeNvml

SLEEPER = "import subprocess, sys, time\n" \
          "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', *a.split()]) " \
          "for a in sys.argv[1:]]\n" \
          "print(' '.join(str(k.pid) for k in kids), flush=True)\n" \
          "time.sleep(600)\n"


@pytest.fixture
def server_with_children():
    """A target's process with children: a worker, and two router children naming their model."""
    parent = subprocess.Popen([sys.executable, "-c", SLEEPER, "worker", "--alias alpha", "--alias=beta"],
                              stdout=subprocess.PIPE, text=True)
    kids = [int(p) for p in parent.stdout.readline().split()]
    yield parent.pid, kids
    for pid in kids:
        subprocess.run(["kill", str(pid)])
    parent.kill()
    parent.wait()


def targets(name, process, served_models, made_tokens=None, *more):
    """What the target collectors and the engine deriver say of servers: (name, pid, models,
    tokens by model) after (name, pid, models, tokens)."""
    info, served = gauge("llm_agent_target_process_info", ""), gauge("llm_agent_target_info", "")
    made = counter("llm_agent_generation_tokens_total", "")
    for server, pid, models, tokens in ((name, process, served_models, made_tokens),) + more:
        info.add({"server": server, "pid": str(pid)}, 1)
        for m in models:
            served.add({"server": server, "model": m, "build": "b1"}, 1)
        for m, n in (tokens or {}).items():
            made.add({"server": server, "engine": "llamacpp", "model": m}, n)
    return [info, served, made]


class Box:
    """The NVML collector on a fake, and the deriver, advanced cycle by cycle."""

    def __init__(self, gpus, cost=None):
        self.fake = FakeNvml(gpus)
        self.nvml = NvmlCollector(self.fake, process_name=lambda pid: "python3", process_owner=lambda pid: {},
                                  xid_events=False)
        self.now = 1000.0
        self.deriver = GpuEnergy(cost or CostSettings(), clock=lambda: self.now)

    def cycle(self, extra, seconds=5.0):
        self.now += seconds
        view = Snapshot(self.now, tuple(self.nvml.collect()) + tuple(extra))
        return Snapshot(self.now, tuple(self.deriver.derive(view)))

    def close(self):
        self.nvml.close()


def test_which_model_uses_which_gpu_children_and_router_models_included(server_with_children):
    parent, (worker, alpha, beta) = server_with_children
    box = Box([FakeGpu(processes=[(worker, 30 << 30)], process_utilization=[(worker, 10, 80, 40, 0, 0)]),
               FakeGpu(processes=[(alpha, 8 << 30), (beta, 4 << 30), (999_999, 1 << 30)],
                       process_utilization=[(alpha, 10, 30, 5, 0, 0), (beta, 10, 10, 2, 0, 0)])])
    try:
        first = box.cycle(targets("vllm", parent, ["llama-70b"], None, ("router", 1, ["alpha", "beta"], None)))
        mem = {(s.label("gpu"), s.label("server"), s.label("model")): s.value
               for s in first.samples("llm_agent_model_gpu_memory_bytes")}
        # every child of vllm's process serves its one model, whatever alias a command line names;
        # the stranger (pid 999999) and pid 1's "router" own nothing here
        assert mem == {("0", "vllm", "llama-70b"): 30 << 30, ("1", "vllm", "llama-70b"): 12 << 30}
        snap = box.cycle(targets("router", parent, ["alpha", "beta"]))
        mem = {(s.label("gpu"), s.label("model")): s.value for s in snap.samples("llm_agent_model_gpu_memory_bytes")}
        assert mem == {("0", ""): 30 << 30, ("1", "alpha"): 8 << 30, ("1", "beta"): 4 << 30}, \
            "a router's children by the model their command line names; the worker names none of its models"
        [sm] = [s for s in first.samples("llm_agent_model_gpu_utilization_percent")
                if s.label("gpu") == "1" and s.label("engine") == "sm"]
        assert sm.value == 40 and sm.label("UUID") and sm.label("modelName"), "summed, with the GPU's own labels"
    finally:
        box.close()


def test_energy_split_by_sm_share_idle_counted_apart_and_per_token(server_with_children):
    parent, (worker, alpha, beta) = server_with_children
    gpu = FakeGpu(energy_mj=1_000_000, processes=[(alpha, 8 << 30), (beta, 4 << 30), (999_999, 1 << 30)],
                  process_utilization=[])
    box = Box([gpu], CostSettings(electricity_per_kwh=0.36))
    made = {"alpha": 0.0, "beta": 0.0}
    try:
        box.cycle(targets("router", parent, ["alpha", "beta"], made))  # the first reading: nothing to split
        t = 10
        for _ in range(12):  # a minute: 100 J per cycle, alpha 60% of the SM, beta 20%, a stranger 20%
            t += 1
            gpu.energy_mj += 100_000
            gpu.process_utilization = [(alpha, t, 60, 5, 0, 0), (beta, t, 20, 2, 0, 0), (999_999, t, 20, 1, 0, 0)]
            made = {"alpha": made["alpha"] + 30, "beta": made["beta"] + 4}
            snap = box.cycle(targets("router", parent, ["alpha", "beta"], made))
        assert snap.value("llm_agent_energy_joules_total", server="router", model="alpha") == pytest.approx(720)
        assert snap.value("llm_agent_energy_joules_total", server="router", model="beta") == pytest.approx(240)
        [idle] = snap.samples("llm_agent_gpu_idle_energy_joules_total")
        assert idle.value == pytest.approx(240) and idle.label("gpu") == "0", "the stranger's share is no model's"
        assert snap.value("llm_agent_energy_per_token_joules", server="router", model="alpha") == pytest.approx(2.0)
        assert snap.value("llm_agent_energy_per_token_joules", server="router", model="beta") == pytest.approx(5.0)
        # 2 J per token: 2,000 J per 1,000 tokens = 1/1800 kWh at 0.36 a kWh
        assert snap.value("llm_agent_energy_cost_per_1k_tokens", server="router", model="alpha",
                          currency="USD") == pytest.approx(0.0002)
        for _ in range(13):  # idle for a minute: no samples, GPU utilisation 0, no tokens
            gpu.energy_mj += 50_000
            gpu.process_utilization = []
            gpu.util = (0, 0)
            snap = box.cycle(targets("router", parent, ["alpha", "beta"], made))
        assert snap.samples("llm_agent_energy_per_token_joules") == [], "absent while idle"
        assert snap.value("llm_agent_energy_joules_total", server="router", model="alpha") == pytest.approx(720)
        assert snap.value("llm_agent_gpu_idle_energy_joules_total", gpu="0") == pytest.approx(240 + 13 * 50)
        gpu.energy_mj = 5  # the driver reloaded: its counter began again; nothing negative, nothing invented
        snap = box.cycle(targets("router", parent, ["alpha", "beta"], made))
        assert snap.value("llm_agent_gpu_idle_energy_joules_total", gpu="0") == pytest.approx(240 + 13 * 50)
    finally:
        box.close()


def test_a_busy_gpu_without_per_process_samples_is_split_by_memory(server_with_children):
    parent, (worker, alpha, beta) = server_with_children
    gpu = FakeGpu(energy_mj=0, processes=[(alpha, 3 << 30), (beta, 1 << 30)], process_utilization=None)
    box = Box([gpu])
    try:
        box.cycle(targets("router", parent, ["alpha", "beta"]))
        gpu.energy_mj += 400_000
        snap = box.cycle(targets("router", parent, ["alpha", "beta"]))
        assert snap.value("llm_agent_energy_joules_total", server="router", model="alpha") == pytest.approx(300)
        assert snap.value("llm_agent_energy_joules_total", server="router", model="beta") == pytest.approx(100)
    finally:
        box.close()


def test_a_model_gone_for_an_hour_leaves_the_counters():
    box = Box([FakeGpu(energy_mj=0, processes=[(4242, 1 << 30)], process_utilization=[(4242, 1, 50, 1, 0, 0)])])
    box.deriver.lineage = Lineage(read=lambda pid: (1, ""))
    try:
        box.cycle(targets("s", 4242, ["m"]))
        box.fake.gpus[0].energy_mj += 1000
        box.fake.gpus[0].process_utilization = [(4242, 2, 50, 1, 0, 0)]
        assert box.cycle(targets("s", 4242, ["m"])).value("llm_agent_energy_joules_total", server="s", model="m") == 1
        box.fake.gpus[0].processes = []
        assert box.cycle(targets("s", 4242, ["m"]), seconds=3601).samples("llm_agent_energy_joules_total") == []
    finally:
        box.close()


@pytest.mark.parametrize("cmdline,alias", [(b"llama-server\0--alias\0alpha\0--port\x000\0", "alpha"),
                                           (b"llama-server\0-a\0beta\0", "beta"), (b"x\0--alias=g h\0", "g h"),
                                           (b"llama-server\0--alias", ""), (b"", ""), (b"\xff\0--alias\0\xff", "\ufffd")])
def test_alias_read_from_a_command_line(cmdline, alias):
    assert parse_alias(cmdline) == alias


def test_a_pid_is_read_once_while_it_stays_and_forgotten_when_it_goes():
    reads = []
    tree = {10: (5, "m"), 5: (1, "")}
    lineage = Lineage(read=lambda pid: reads.append(pid) or tree.get(pid, (0, "")))
    assert lineage.owner(10, {5: "s"}) == ("s", "m")
    assert lineage.owner(10, {5: "s"}) == ("s", "m") and reads == [10]
    lineage.forget_unused()
    lineage.forget_unused()
    assert lineage.owner(10, {5: "s"}) == ("s", "m") and reads == [10, 10], "gone a cycle: read anew (pid reuse)"
    assert lineage.owner(10, {7: "t"}) is None, "not a target's descendant"
    loop = Lineage(read=lambda pid: (pid, ""))  # a process that is its own parent cannot hang the walk
    assert loop.owner(42, {7: "t"}) is None


def test_check_says_which_model_uses_each_gpu(server_with_children):
    from agent.check import build_report, render_report

    parent, (worker, alpha, beta) = server_with_children
    box = Box([FakeGpu(processes=[(alpha, 8 << 30), (beta, 4 << 30)],
                       process_utilization=[(alpha, 10, 30, 5, 0, 0), (beta, 10, 10, 2, 0, 0)])])
    try:
        extra = targets("router", parent, ["alpha", "beta"])
        view = Snapshot(box.now, tuple(box.nvml.collect()) + tuple(extra))
        snap = view.with_families(box.deriver.derive(view))
        report = build_report(snap, "h", "test")
        assert [(u["model"], u["memory_mib"], u["sm_percent"]) for u in report["gpus"][0]["used_by"]] == \
            [("alpha", 8192, 30), ("beta", 4096, 10)]
        text = render_report(report)
        assert "used by router (alpha): 8.0 GiB  SM 30%" in text and "used by router (beta): 4.0 GiB  SM 10%" in text
    finally:
        box.close()
