"""InfiniBand and RoCE ports from sysfs, under node_exporter's `node_infiniband_*` names, so its
dashboards and rules work unchanged: port state, physical state, rate, data and error counters;
and on an NVSwitch host (HGX/DGX), whether NVIDIA Fabric Manager runs.

Read from `[collectors.fabric] sysfs_root` (default /sys): `class/infiniband/<device>/ports/
<port>/{state,phys_state,rate,link_layer}` and `counters/*` (`hw_counters` are not read). A
counter the adapter does not keep reads "N/A (no PMA)" and is omitted; port_rcv_data and
port_xmit_data count 4-octet words, as the InfiniBand spec says, and are exported in bytes.
Every parser here is pure and tested on a captured tree (tests/fixtures/sysfs).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..model import COUNTER, GAUGE, MetricFamily, Problem
from .kernelfiles import read_small
from ..plugins import Context, register
import psutil

log = logging.getLogger(__name__)

# sysfs counter file -> (node_exporter name after node_infiniband_, multiplier)
COUNTERS: Dict[str, Tuple[str, int]] = {
    "link_downed": ("link_downed_total", 1),
    "link_error_recovery": ("link_error_recovery_total", 1),
    "port_rcv_data": ("port_data_received_bytes_total", 4),
    "port_xmit_data": ("port_data_transmitted_bytes_total", 4),
    "port_rcv_packets": ("port_packets_received_total", 1),
    "port_xmit_packets": ("port_packets_transmitted_total", 1),
    "port_rcv_errors": ("port_errors_received_total", 1),
    "port_rcv_discards": ("port_discards_received_total", 1),
    "port_xmit_discards": ("port_discards_transmitted_total", 1),
    "port_rcv_constraint_errors": ("port_constraint_errors_received_total", 1),
    "port_xmit_constraint_errors": ("port_constraint_errors_transmitted_total", 1),
    "port_xmit_wait": ("port_transmit_wait_total", 1),
    "port_rcv_remote_physical_errors": ("port_receive_remote_physical_errors_total", 1),
    "port_rcv_switch_relay_errors": ("port_receive_switch_relay_errors_total", 1),
    "symbol_error": ("symbol_error_total", 1),
    "excessive_buffer_overrun_errors": ("excessive_buffer_overrun_errors_total", 1),
    "local_link_integrity_errors": ("local_link_integrity_errors_total", 1),
    "VL15_dropped": ("vl15_dropped_total", 1),
    "unicast_rcv_packets": ("unicast_packets_received_total", 1),
    "unicast_xmit_packets": ("unicast_packets_transmitted_total", 1),
    "multicast_rcv_packets": ("multicast_packets_received_total", 1),
    "multicast_xmit_packets": ("multicast_packets_transmitted_total", 1),
}
HELP = {
    "state_id": "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer).",
    "physical_state_id": "Physical state of the InfiniBand port (1: sleep, 2: polling, 3: disabled, 4: port "
                         "configuration training, 5: link up, 6: link error recovery, 7: phy test).",
    "rate_bytes_per_second": "Maximum signal transfer rate of the port, in bytes per second.",
}
_RATE = re.compile(r"^\s*([0-9.]+)\s*Gb/sec")


def parse_state(text: str) -> Optional[int]:
    """'4: ACTIVE' -> 4."""
    m = re.match(r"^\s*(\d+)\s*:", text)
    return int(m.group(1)) if m else None


def parse_rate(text: str) -> Optional[float]:
    """'100 Gb/sec (4X EDR)' -> bytes per second."""
    m = _RATE.match(text)
    return float(m.group(1)) * 1e9 / 8 if m else None


def parse_counter(text: str) -> Optional[int]:
    """A counter file's number; None for 'N/A (no PMA)' and anything else that is not one."""
    text = text.strip()
    return int(text) if text.isdigit() else None


@dataclass
class Port:
    device: str
    port: str
    state: Optional[int] = None
    phys_state: Optional[int] = None
    rate: Optional[float] = None
    link_layer: str = ""
    counters: Dict[str, float] = field(default_factory=dict)  # node_exporter name -> value


def read_ports(sysfs_root: str) -> List[Port]:
    """Every port of every InfiniBand (or RoCE) device under `sysfs_root`."""
    base = os.path.join(sysfs_root, "class", "infiniband")
    try:
        devices = sorted(os.listdir(base))
    except OSError:
        return []
    out = []
    for device in devices:
        ports_dir = os.path.join(base, device, "ports")
        try:
            ports = sorted(os.listdir(ports_dir), key=lambda p: (len(p), p))
        except OSError:
            continue
        for port in ports:
            d = os.path.join(ports_dir, port)
            p = Port(device, port)
            p.state = parse_state(read_small(os.path.join(d, "state")))
            p.phys_state = parse_state(read_small(os.path.join(d, "phys_state")))
            p.rate = parse_rate(read_small(os.path.join(d, "rate")))
            p.link_layer = read_small(os.path.join(d, "link_layer")).strip()
            for name, (metric, scale) in COUNTERS.items():
                value = parse_counter(read_small(os.path.join(d, "counters", name), 4096))
                if value is not None:
                    p.counters[metric] = float(value * scale)
            out.append(p)
    return out


def families(ports: List[Port]) -> List[MetricFamily]:
    fams: Dict[str, MetricFamily] = {}

    def add(name: str, kind: str, help_text: str, labels: Dict[str, str], value: float) -> None:
        full = "node_infiniband_" + name
        fam = fams.get(full) or fams.setdefault(full, MetricFamily(full, kind, help_text))
        fam.add(labels, value)

    for p in ports:
        labels = {"device": p.device, "port": p.port}
        if p.state is not None:
            add("state_id", GAUGE, HELP["state_id"], labels, p.state)
        if p.phys_state is not None:
            add("physical_state_id", GAUGE, HELP["physical_state_id"], labels, p.phys_state)
        if p.rate is not None:
            add("rate_bytes_per_second", GAUGE, HELP["rate_bytes_per_second"], labels, p.rate)
        if p.link_layer:
            add("port_info", GAUGE, "The port's link layer (InfiniBand or Ethernet: RoCE); always 1.",
                {**labels, "link_layer": p.link_layer}, 1)
        for metric, value in sorted(p.counters.items()):
            add(metric, COUNTER, f"The port's {metric.replace('_total', '').replace('_', ' ')} counter (sysfs).",
                labels, value)
    return list(fams.values())


SWITCHES_REFRESH = 300.0  # seconds between counts of /dev/nvidia-nvswitch*


def nvswitches(dev_root: str) -> int:
    """NVSwitch devices on this host (HGX/DGX boards): /dev/nvidia-nvswitch0, 1, ..."""
    try:
        return sum(1 for name in os.listdir(dev_root) if re.fullmatch(r"nvidia-nvswitch\d+", name))
    except OSError:
        return 0


class FabricManagerWatch:
    """Whether NVIDIA Fabric Manager (nv-fabricmanager) runs: without it an NVSwitch system's
    GPUs cannot talk over NVLink and CUDA jobs fail to start. The process found is followed
    (one /proc read a cycle); the process table is searched again only when it is gone, and
    then at most every `rescan` seconds (a search reads every process)."""

    def __init__(self, rescan: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.rescan = rescan
        self.clock = clock
        self._proc: Optional[Any] = None
        self._next_scan = 0.0

    def __call__(self) -> bool:

        if self._proc is not None and self._proc.is_running():
            return True
        self._proc = None
        now = self.clock()
        if now < self._next_scan:
            return False
        self._next_scan = now + self.rescan
        for proc in psutil.process_iter(["name"]):
            if (proc.info.get("name") or "") == "nv-fabricmanager":
                self._proc = proc
                return True
        return False


class FabricCollector:
    name = "fabric"

    def __init__(self, sysfs_root: str = "/sys", dev_root: str = "/dev",
                 fm_running: Optional[Callable[[], bool]] = None, clock: Callable[[], float] = time.monotonic):
        self.sysfs_root = sysfs_root
        self.dev_root = dev_root
        self.fm_running = fm_running or FabricManagerWatch(clock=clock)
        self.clock = clock
        self.problems: List[Problem] = []
        self._switches = 0
        self._switches_at = -SWITCHES_REFRESH

    def _fabric_manager(self) -> List[MetricFamily]:
        now = self.clock()
        if now - self._switches_at >= SWITCHES_REFRESH:  # /dev is long; NVSwitches are not hot-plugged
            self._switches, self._switches_at = nvswitches(self.dev_root), now
        switches = self._switches
        if not switches:
            return []  # no NVSwitch: Fabric Manager has nothing to do here
        up = self.fm_running()
        if not up:
            self.problems.append(Problem("critical", "fabric manager", f"{switches} NVSwitch(es) and no nv-fabricmanager "
                                         "running: multi-GPU jobs cannot use NVLink",
                                         "systemctl start nvidia-fabricmanager (its version must match the driver's)"))
        return [MetricFamily("llm_agent_nvswitch_devices", GAUGE, "NVSwitch devices on this host.").add({}, switches),
                MetricFamily("llm_agent_fabric_manager_up", GAUGE, "Whether NVIDIA Fabric Manager runs (1) on this "
                                                                   "NVSwitch host.").add({}, 1 if up else 0)]

    def collect(self) -> List[MetricFamily]:
        self.problems = []
        fabric_manager = self._fabric_manager()
        ports = read_ports(self.sysfs_root)
        for p in ports:
            if p.state is not None and p.state != 4 and p.phys_state == 5:
                self.problems.append(Problem("warning", f"fabric {p.device}/{p.port}",
                                             f"link up but the port is not active (state {p.state})",
                                             "check the subnet manager (opensm / UFM)"))
        return families(ports) + fabric_manager


@register("fabric", "collectors.fabric")
def _build(ctx: Context) -> Optional[FabricCollector]:
    c = ctx.config.collectors.fabric
    return FabricCollector(c.sysfs_root, c.dev_root) if c.enabled else None
