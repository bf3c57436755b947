"""InfiniBand / RoCE ports from a captured sysfs tree (tests/fixtures/sysfs): node_exporter's
names and units, counters a port does not keep omitted, parsers fuzzed; and the default fabric
rules on synthetic series (a port that goes down, flaps, renegotiates lower)."""

import random
from pathlib import Path

from agent.collectors.fabric import FabricCollector, parse_counter, parse_rate, parse_state, read_ports
from agent.model import Snapshot, counter, gauge
from tests.support.default_rules import fire

SYSFS = str(Path(__file__).parent.parent / "fixtures" / "sysfs")


def snap():
    c = FabricCollector(SYSFS)
    return Snapshot(0.0, tuple(c.collect())), c


def test_ports_under_node_exporter_names():
    s, c = snap()
    assert s.value("node_infiniband_state_id", device="mlx5_0", port="1") == 4
    assert s.value("node_infiniband_physical_state_id", device="mlx5_0", port="1") == 5
    assert s.value("node_infiniband_rate_bytes_per_second", device="mlx5_0", port="1") == 400e9 / 8
    assert s.value("node_infiniband_port_data_received_bytes_total", device="mlx5_0") == 1048576 * 4, "4-octet words"
    assert s.value("node_infiniband_link_downed_total", device="mlx5_0") == 2
    assert s.value("node_infiniband_symbol_error_total", device="mlx5_0") == 7
    assert s.family("node_infiniband_link_downed_total").type == "counter"
    assert s.samples("node_infiniband_unicast_packets_received_total") == [], "N/A (no PMA): omitted, not 0"
    assert s.value("node_infiniband_port_info", device="mlx5_1", link_layer="Ethernet") == 1, "RoCE"
    assert s.value("node_infiniband_state_id", device="mlx5_1") == 1
    assert c.problems == []


def test_a_missing_tree_is_no_ports_and_no_error(tmp_path):
    assert read_ports(str(tmp_path)) == []
    assert FabricCollector(str(tmp_path)).collect() == []


def test_parsers():
    assert parse_state("4: ACTIVE\n") == 4 and parse_state("") is None and parse_state("ACTIVE") is None
    assert parse_rate("100 Gb/sec (4X EDR)") == 12.5e9 and parse_rate("2.5 Gb/sec (1X SDR)") == 2.5e9 / 8
    assert parse_rate("junk") is None
    assert parse_counter("123\n") == 123 and parse_counter("N/A (no PMA)") is None and parse_counter("-1") is None
    rng = random.Random(3)
    alphabet = "0123456789: ./GbsecNA()\n\x00é-"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        for parse in (parse_state, parse_rate, parse_counter):
            parse(text)  # never raises


def port(state, rate=50e9, downed=0):
    labels = {"device": "mlx5_0", "port": "1"}
    return [gauge("node_infiniband_state_id", "").add(labels, state),
            gauge("node_infiniband_rate_bytes_per_second", "").add(labels, rate),
            counter("node_infiniband_link_downed_total", "").add(labels, downed)]


def test_fabric_rules_on_synthetic_series():
    names = ("InfinibandLinkDown", "InfinibandLinkFlapping", "InfinibandRateDegraded")
    healthy = [(t, port(4)) for t in range(0, 600, 15)]
    assert fire(names, healthy) == []
    down = healthy + [(t, port(1)) for t in range(600, 720, 15)]
    assert ("InfinibandLinkDown", "firing") in fire(names, down)
    never_up = [(t, port(1)) for t in range(0, 600, 15)]
    assert fire(names, never_up) == [], "an unused port is not an outage"
    flap = healthy + [(600, port(4, downed=1))]
    assert fire(names, flap) == [("InfinibandLinkFlapping", "firing")]
    slower = healthy + [(t, port(4, rate=25e9)) for t in range(600, 1000, 15)]
    assert fire(names, slower) == [("InfinibandRateDegraded", "firing")]


def test_fabric_manager_is_watched_only_where_there_are_nvswitches(tmp_path):
    from agent.collectors.fabric import FabricCollector as Fabric

    empty = Fabric(SYSFS, str(tmp_path), fm_running=lambda: False)
    s = Snapshot(0.0, tuple(empty.collect()))
    assert s.samples("llm_agent_fabric_manager_up") == [] and empty.problems == [], "no NVSwitch: nothing to say"
    for i in range(4):
        (tmp_path / f"nvidia-nvswitch{i}").touch()
    (tmp_path / "nvidia-nvswitchctl").touch()
    down = Fabric(SYSFS, str(tmp_path), fm_running=lambda: False)
    s = Snapshot(0.0, tuple(down.collect()))
    assert s.value("llm_agent_nvswitch_devices") == 4 and s.value("llm_agent_fabric_manager_up") == 0
    assert [p.severity for p in down.problems] == ["critical"]
    up = Fabric(SYSFS, str(tmp_path), fm_running=lambda: True)
    assert Snapshot(0.0, tuple(up.collect())).value("llm_agent_fabric_manager_up") == 1
    frames = [(t, [gauge("llm_agent_fabric_manager_up", "").add({}, 0)]) for t in range(0, 120, 15)]
    assert fire(("FabricManagerDown",), frames) == [("FabricManagerDown", "firing")]


def test_fabric_manager_followed_by_its_process_and_searched_for_at_most_every_rescan(tmp_path):
    """A real process called nv-fabricmanager (sleep under that name): found, followed, its death
    seen at once, and the process table searched again only every `rescan` seconds."""
    import os
    import shutil
    import subprocess

    from agent.collectors.fabric import FabricManagerWatch

    fm = tmp_path / "nv-fabricmanager"
    os.symlink(shutil.which("sleep"), fm)
    now = [0.0]
    watch = FabricManagerWatch(rescan=30, clock=lambda: now[0])
    proc = subprocess.Popen([str(fm), "60"])
    try:
        assert watch()
        proc.kill()
        proc.wait()
        assert not watch(), "its death is seen in the same cycle"
        proc = subprocess.Popen([str(fm), "60"])
        now[0] = 10.0
        assert not watch(), "searched again only after `rescan` seconds"
        now[0] = 31.0
        assert watch()
    finally:
        proc.kill()
        proc.wait()


def test_nvswitches_counted_again_only_every_few_minutes(tmp_path):
    from agent.collectors.fabric import SWITCHES_REFRESH
    from agent.collectors.fabric import FabricCollector as Fabric

    now = [0.0]
    c = Fabric(SYSFS, str(tmp_path), fm_running=lambda: True, clock=lambda: now[0])
    assert Snapshot(0.0, tuple(c.collect())).samples("llm_agent_nvswitch_devices") == []
    (tmp_path / "nvidia-nvswitch0").touch()
    assert Snapshot(0.0, tuple(c.collect())).samples("llm_agent_nvswitch_devices") == []
    now[0] = SWITCHES_REFRESH
    assert Snapshot(0.0, tuple(c.collect())).value("llm_agent_nvswitch_devices") == 1
