"""NVIDIA's kernel messages: Xids (with the catalogue's meaning and action), NVSwitch SXids and
"fallen off the bus", read from the kernel log as they happen, so an Xid logged before the
agent started, or one NVML's event API never reports, still counts.

`[collectors.kernel] kmsg_path` (default /dev/kmsg: one record per read, "pri,seq,usec,flags;
message"; a regular file in the same format works too, for tests); where it cannot be opened,
journald (`journalctl -k -b -o json` from a saved cursor). Reading starts where the
last run stopped: the last record's sequence number and the boot it belongs to are kept in
`state_dir/kmsg.json`, so records the ring buffer replays after a restart are neither counted
nor paged twice; on a new boot everything in the buffer is new. Without a state directory
(`llm-agent check`) everything still in the buffer is read: the recent Xids.

The parsers are pure and tested on captured lines (old and new Xid formats, MIG, SXid); the
`xid_events` deriver joins the events with NVML's GPU labels by PCI address, so each Xid is
`llm_agent_gpu_xid_events_total{gpu,UUID,...,xid,name,meaning,action,severity}`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple, Union

from ..config.load import tomllib
from ..model import MetricFamily, Problem, Snapshot, counter, gauge
from ..statefile import write_json
from .kernelfiles import read_small
from .xidboots import RebootXids
from ..plugins import Context, register, register_deriver
import shutil
import subprocess

log = logging.getLogger(__name__)

CATALOG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "xid_catalog.toml")
STATE_FILE = "kmsg.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
MAX_RECORDS = 20_000  # per cycle: a flood of kernel messages cannot stall a cycle
SEVERITY_OF = {"none": "info", "restart_app": "warning", "update_software": "warning", "reset_gpu": "critical",
               "reboot_node": "critical", "check_power_cooling": "critical", "contact_support": "critical"}

_XID = re.compile(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.\d)?(?: [^)]*)?\): (\d+),(.*)")
_SXID = re.compile(r"SXid \((?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.\d)?\): (\d+),(.*)")
_OFF_BUS = re.compile(r"NVRM: GPU (?:at )?(?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.\d)?:? "
                      r"(?:GPU )?has fallen off the bus")
_RECOVERY = re.compile(r"recovery action changed from 0x[0-9a-fA-F]+ \([^)]*\) to 0x[0-9a-fA-F]+ \(([^)]*)\)")
RECOVERY_ACTIONS = {"none": "none", "gpu reset required": "reset_gpu", "node reboot required": "reboot_node",
                    "drain p2p": "reset_gpu", "drain and reset": "reset_gpu"}


@dataclass(frozen=True)
class XidInfo:
    code: int
    name: str
    meaning: str
    nvidia: str  # NVIDIA's immediate resolution bucket, as published
    action: str
    severity: str


@lru_cache(maxsize=1)
def catalog() -> Dict[int, XidInfo]:
    with open(CATALOG_PATH, "rb") as f:
        doc = tomllib.load(f)
    return {int(k): XidInfo(int(k), v["name"], v["meaning"], v["nvidia"], v["action"], v["severity"])
            for k, v in doc.items()}


def describe(code: int) -> XidInfo:
    """The catalogue's entry; a code it does not know is contact_support (new drivers add codes)."""
    return catalog().get(code) or XidInfo(code, f"XID_{code}", "not in this agent's Xid catalogue", "",
                                          "contact_support", "critical")


def pci_key(address: str) -> str:
    """'0000:3b:00', '00000000:3B:00.0' -> '0000:3b:00': the kernel's and NVML's spellings alike."""
    parts = address.lower().split(".")[0].split(":")
    if len(parts) != 3:
        return address.lower()
    domain, bus, device = parts
    return f"{int(domain, 16):04x}:{bus}:{device}"


@dataclass(frozen=True)
class Record:
    seq: int
    usec: int
    message: str


def parse_record(line: str) -> Optional[Record]:
    """One /dev/kmsg record ("6,1234,5678901,-;message"); continuation lines (" KEY=value") and
    anything else give None."""
    head, sep, message = line.partition(";")
    if not sep:
        return None
    fields = head.split(",")
    if len(fields) < 4 or not fields[1].isdigit() or not fields[2].isdigit():
        return None
    text = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), message.rstrip("\n"))
    return Record(int(fields[1]), int(fields[2]), text)


@dataclass(frozen=True)
class Event:
    kind: str  # xid | sxid | off_bus
    pci: str  # pci_key form
    code: int = 0
    detail: str = ""
    recovery: str = ""  # Xid 154: the action it announces


def parse_event(message: str) -> Optional[Event]:
    m = _XID.search(message)
    if m:
        code, detail = int(m.group(2)), m.group(3).strip()
        recovery = ""
        if code == 154:
            r = _RECOVERY.search(detail)
            recovery = RECOVERY_ACTIONS.get(r.group(1).strip().lower(), "contact_support") if r else ""
        return Event("xid", pci_key(m.group(1)), code, detail[:300], recovery)
    m = _SXID.search(message)
    if m:
        return Event("sxid", pci_key(m.group(1)), int(m.group(2)), m.group(3).strip()[:300])
    m = _OFF_BUS.search(message)
    if m:
        return Event("off_bus", pci_key(m.group(1)))
    return None


class KmsgSource:
    """The kernel log, from where the last run stopped. /dev/kmsg is read record by record
    without blocking; a regular file line by line from the last offset."""

    def __init__(self, path: str, state_dir: str = "", boot_id_path: str = BOOT_ID):
        self.path = path
        self.state_path = os.path.join(state_dir, STATE_FILE) if state_dir else ""
        self.boot_id = read_small(boot_id_path).strip()
        self.last_seq = -1
        self._saved_seq = -1
        self._fd: Optional[int] = None
        self._offset = 0
        self._buffer = b""
        self.error = ""
        self._load()

    def _load(self) -> None:
        if not self.state_path or not os.path.exists(self.state_path):
            return
        try:
            with open(self.state_path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("boot_id") == self.boot_id:  # the sequence restarts with every boot
                self.last_seq = self._saved_seq = int(doc["seq"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("kernel log: %s unreadable (%s); reading the whole ring buffer once", self.state_path, e)

    def save(self) -> None:
        if not self.state_path or self.last_seq == self._saved_seq:
            return
        if _save_position(self.state_path, {"seq": self.last_seq, "boot_id": self.boot_id}):
            self._saved_seq = self.last_seq

    def open(self) -> bool:
        if self._fd is not None:
            return True
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            self.error = f"{self.path}: {e.strerror}" + (" (the agent needs root or CAP_SYSLOG to read it)"
                                                          if e.errno in (errno.EACCES, errno.EPERM) else "")
            return False
        self.error = ""
        return True

    def read(self, limit: int = MAX_RECORDS) -> List[Record]:
        """The new records since the last call (at most `limit`)."""
        if not self.open():
            return []
        assert self._fd is not None
        regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        lines = self._read_file() if regular else self._read_device(limit)
        out = []
        for line in lines:
            record = parse_record(line)
            if record is None or record.seq <= self.last_seq:
                continue  # a continuation line, or a record already seen (a restart's replay)
            self.last_seq = record.seq
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def _read_device(self, limit: int) -> List[str]:
        assert self._fd is not None
        lines: List[str] = []
        for _ in range(2 * limit):  # bounded even if every read said EPIPE
            if len(lines) >= limit:
                break
            try:
                data = os.read(self._fd, 8192)  # /dev/kmsg: one record per read
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # records were overwritten before we read them: go on
                    continue
                self.error = f"{self.path}: {e.strerror}"
                os.close(self._fd)
                self._fd = None
                break
            if not data:
                break
            lines.append(data.decode("utf-8", "replace"))
        return lines

    def _read_file(self) -> List[str]:
        assert self._fd is not None
        os.lseek(self._fd, self._offset, os.SEEK_SET)
        chunk = os.read(self._fd, 1 << 20)
        self._offset += len(chunk)
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        return [c.decode("utf-8", "replace") for c in complete]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def parse_journal_line(line: str) -> Optional[Tuple[str, int, str]]:
    """One line of `journalctl -o json`: (cursor, microseconds since boot, message), or None.
    MESSAGE may be a list of byte values (a message that is not valid UTF-8)."""
    try:
        doc = json.loads(line)
        message = doc.get("MESSAGE", "")
        if isinstance(message, list):
            message = bytes(int(b) & 0xFF for b in message).decode("utf-8", "replace")
        return str(doc["__CURSOR"]), int(doc.get("__MONOTONIC_TIMESTAMP", 0)), str(message)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class JournalSource:
    """The fallback where /dev/kmsg cannot be opened: the kernel's messages of this boot from
    journald (`journalctl -k -b -o json`), from the cursor the last run saved. Same interface
    as KmsgSource."""

    def __init__(self, state_dir: str = "", journalctl: str = "journalctl", boot_id_path: str = BOOT_ID,
                 timeout: float = 5.0):
        self.state_path = os.path.join(state_dir, STATE_FILE) if state_dir else ""
        self.journalctl = journalctl
        self.timeout = timeout
        self.boot_id = read_small(boot_id_path).strip()
        self.cursor = ""
        self._saved = ""
        self._seq = 0
        self.error = ""
        if self.state_path and os.path.exists(self.state_path):
            try:
                with open(self.state_path, encoding="utf-8") as f:
                    doc = json.load(f)
                if doc.get("boot_id") == self.boot_id:
                    self.cursor = self._saved = str(doc.get("cursor", ""))
            except (OSError, ValueError, TypeError):
                pass

    def read(self, limit: int = MAX_RECORDS) -> List[Record]:

        args = [self.journalctl, "-k", "-b", "-o", "json", "--no-pager", "-n", str(limit)]
        if self.cursor:
            args += ["--after-cursor", self.cursor]
        try:
            out = subprocess.run(args, capture_output=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.error = f"journalctl: {e}"
            return []
        if out.returncode != 0:
            self.error = f"journalctl: {out.stderr.decode('utf-8', 'replace').strip()[:200]}"
            return []
        self.error = ""
        records = []
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            parsed = parse_journal_line(line)
            if parsed is None:
                continue
            self.cursor, usec, message = parsed
            self._seq += 1
            records.append(Record(self._seq, usec, message))
        return records

    def save(self) -> None:
        if not self.state_path or self.cursor == self._saved:
            return
        if _save_position(self.state_path, {"cursor": self.cursor, "boot_id": self.boot_id}):
            self._saved = self.cursor

    def close(self) -> None:
        pass


def open_source(kmsg_path: str, state_dir: str) -> Union[KmsgSource, JournalSource]:
    """/dev/kmsg where it can be opened, else journald (when journalctl is there)."""

    source = KmsgSource(kmsg_path, state_dir)
    if source.open() or not shutil.which("journalctl") or os.path.isfile(kmsg_path):
        return source
    log.info("kernel log: %s unreadable (%s); reading the kernel's messages from journald", kmsg_path, source.error)
    return JournalSource(state_dir)


def _save_position(path: str, doc: Dict[str, object]) -> bool:
    """Where reading stopped, written atomically. A full disk costs at most a recount of the
    latest records after a restart, nothing worse: logged, not raised."""
    error = write_json(path, doc)
    if error:
        log.warning("kernel log: cannot save the position in %s: %s", path, error)
    return error is None


MAX_ADDRESSES = 32  # distinct PCI addresses counted by name: 8 GPUs and 6 NVSwitches, twice over
MAX_CODE = 1023  # NVIDIA's catalogue ends at 172; a larger number is no Xid the driver logs
MAX_SXID = 99_999  # NVSwitch SXids are five digits
UNKNOWN = "unknown"


class KernelCollector:
    """Counts NVIDIA's kernel events by PCI address (the xid_events deriver adds GPU labels)."""

    name = "kernel"

    def __init__(self, source: Union[KmsgSource, JournalSource], clock=time.time, state_dir: str = ""):
        self.source = source
        self.clock = clock
        self.reboots = RebootXids(state_dir, source.boot_id, clock)
        self.problems: List[Problem] = []
        self.records = 0
        self.xids: Dict[Tuple[str, int], int] = {}
        self.last_xid: Dict[Tuple[str, int], float] = {}
        self.sxids: Dict[Tuple[str, int], int] = {}
        self.off_bus: Dict[str, int] = {}
        self.recovery: Dict[str, str] = {}  # PCI -> the last Xid 154's action
        self._addresses: set = set()  # the PCI addresses counted under their own name (MAX_ADDRESSES)
        self.bucketed = 0
        self._boot = time.time() - _uptime()

    def collect(self) -> List[MetricFamily]:
        self.problems = []
        records = self.source.read()
        self.records += len(records)
        for record in records:
            event = parse_event(record.message)
            if event is None:
                continue
            when = self._boot + record.usec / 1e6
            event = self._bounded(event)
            if event.kind == "xid":
                key = (event.pci, event.code)
                self.xids[key] = self.xids.get(key, 0) + 1
                self.last_xid[key] = max(self.last_xid.get(key, 0.0), when)
                if event.recovery:
                    self.recovery[event.pci] = event.recovery
                if event.pci != UNKNOWN and (describe(event.code).action == "reboot_node"
                                             or event.recovery == "reboot_node"):
                    self.reboots.note(event.pci)
            elif event.kind == "sxid":
                self.sxids[(event.pci, event.code)] = self.sxids.get((event.pci, event.code), 0) + 1
            else:
                self.off_bus[event.pci] = self.off_bus.get(event.pci, 0) + 1
        self.source.save()
        up = gauge("llm_agent_kernel_log_up", "Whether the kernel log ([collectors.kernel] kmsg_path) is read (1).")
        if self.source.error:
            self.problems.append(Problem("info", "kernel log", f"cannot read {self.source.error}",
                                         "Xids are counted from NVML events only; run the agent as root or give "
                                         "it CAP_SYSLOG (the packaged unit does)"))
            return [up.add({}, 0)]
        xids = counter("llm_agent_kernel_xid_events_total", "NVIDIA Xids in the kernel log, by PCI address and code.")
        last = gauge("llm_agent_kernel_xid_last_event_timestamp_seconds", "When the last Xid of a code was logged.")
        for (pci, code), n in sorted(self.xids.items()):
            xids.add({"pci_bus_id": pci, "xid": str(code)}, n)
            last.add({"pci_bus_id": pci, "xid": str(code)}, self.last_xid[(pci, code)])
        sxids = counter("llm_agent_kernel_sxid_events_total", "NVSwitch SXids in the kernel log, by switch and code.")
        for (pci, code), n in sorted(self.sxids.items()):
            sxids.add({"pci_bus_id": pci, "sxid": str(code)}, n)
        off = counter("llm_agent_kernel_gpu_fallen_off_bus_total", "'GPU has fallen off the bus' kernel messages.")
        for pci, n in sorted(self.off_bus.items()):
            off.add({"pci_bus_id": pci}, n)
        action = gauge("llm_agent_kernel_gpu_recovery_action", "The recovery action the last Xid 154 announced (1).")
        for pci, what in sorted(self.recovery.items()):
            action.add({"pci_bus_id": pci, "action": what}, 1)
        boots = gauge("llm_agent_kernel_xid_reboot_boots", "Boots within 30 days in which the device logged an Xid "
                                                          "that calls for a reboot, this one included.")
        for pci, n in sorted(self.reboots.counts().items()):
            boots.add({"pci_bus_id": pci}, n)
        return [up.add({}, 1), counter("llm_agent_kernel_records_total", "Kernel log records read.").add({}, self.records),
                counter("llm_agent_kernel_events_bucketed_total",
                        "Kernel events counted under pci_bus_id=\"unknown\" or xid=\"0\": past the addresses or codes "
                        "one host can have (a flood of made-up ones cannot grow the series).").add({}, self.bucketed),
                xids, last, sxids, off, action, boots]

    def _bounded(self, event: "Event") -> "Event":
        """The event under a bounded key: at most MAX_ADDRESSES PCI addresses (a host's GPUs and
        NVSwitches, with room to spare), then "unknown"; a code past MAX_CODE is 0. Xid series
        are bounded by the devices that exist, whatever the log says."""
        pci, code = event.pci, event.code
        if pci not in self._addresses:
            if len(self._addresses) < MAX_ADDRESSES:
                self._addresses.add(pci)
            else:
                pci = UNKNOWN
        if not 0 <= code <= (MAX_CODE if event.kind == "xid" else MAX_SXID):
            code = 0
        if (pci, code) != (event.pci, event.code):
            self.bucketed += 1
            return Event(event.kind, pci, code, event.detail, event.recovery)
        return event

    def close(self) -> None:
        self.source.close()


def _uptime() -> float:
    try:
        return float(read_small("/proc/uptime").split()[0])
    except (IndexError, ValueError):
        return 0.0


class XidEvents:
    """The deriver: each kernel Xid with its GPU's labels (NVML's, by PCI address) and the
    catalogue's name, meaning, action and severity."""

    name = "xid_events"
    reads = ("llm_agent_kernel_xid_events_total", "llm_agent_kernel_xid_last_event_timestamp_seconds",
             "llm_agent_kernel_xid_reboot_boots", "llm_agent_gpu_up")

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        gpus = {pci_key(s.label("pci_bus_id")): dict(s.labels) for s in view.samples("llm_agent_gpu_up")
                if s.label("pci_bus_id")}
        events = counter("llm_agent_gpu_xid_events_total", "Xids from the kernel log per GPU and code, with NVIDIA's "
                                                           "name, meaning and the action it calls for.")
        last = gauge("llm_agent_gpu_xid_last_event_timestamp_seconds", "When the GPU last logged an Xid of this code.")
        for source, target in (("llm_agent_kernel_xid_events_total", events),
                               ("llm_agent_kernel_xid_last_event_timestamp_seconds", last)):
            for s in view.samples(source):
                info = describe(int(s.label("xid")))
                labels = gpus.get(pci_key(s.label("pci_bus_id")), {"pci_bus_id": s.label("pci_bus_id")})
                target.add({**labels, "xid": s.label("xid"), "name": info.name, "meaning": info.meaning,
                            "action": info.action, "severity": info.severity}, s.value)
        boots = gauge("llm_agent_gpu_xid_reboot_boots", "Boots within 30 days in which this GPU logged an Xid that "
                                                       "calls for a reboot, this one included (3: GpuNeedsInspection).")
        for s in view.samples("llm_agent_kernel_xid_reboot_boots"):
            boots.add(gpus.get(pci_key(s.label("pci_bus_id")), {"pci_bus_id": s.label("pci_bus_id")}), s.value)
        return [f for f in (events, last, boots) if f.samples]


@register("kernel", "collectors.kernel", keep=True)  # kept across a reload: the open log and its counts
def _build(ctx: Context) -> Optional[KernelCollector]:
    c = ctx.config.collectors.kernel
    if not c.enabled:
        return None
    return KernelCollector(open_source(c.kmsg_path, ctx.state_dir), state_dir=ctx.state_dir)


@register_deriver("xid_events")
def _build_deriver(ctx: Context) -> XidEvents:
    return XidEvents()
