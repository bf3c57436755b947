"""Which GPUs this host should have, so one that falls off the bus and is gone after a driver
reload or a reboot is noticed: a GPU that is simply absent from NVML's list sends no error.

The inventory is learned: every GPU NVML has listed (PCI address and UUID) is kept in
`state_dir/gpus.json`; one listed before and not now is missing. `[collectors.nvml]
expected_gpus` sets the count outright (then missing GPUs beyond the known ones are counted
without an address). A GPU removed on purpose is forgotten by deleting that file (or by
setting expected_gpus). Written atomically; an unreadable file is moved aside and relearned.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Tuple

from ..statefile import write_json

log = logging.getLogger(__name__)
FILE = "gpus.json"


class GpuInventory:
    def __init__(self, state_dir: str, expected: int = 0):
        self.path = os.path.join(state_dir, FILE) if state_dir else ""
        self.expected = expected
        self.known: Dict[str, str] = {}  # PCI bus id -> UUID
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    doc = json.load(f)
                self.known = {str(g["pci_bus_id"]): str(g.get("UUID", "")) for g in doc["gpus"]}
            except (OSError, ValueError, KeyError, TypeError) as e:
                aside = f"{self.path}.bad-{int(time.time())}"
                log.error("GPU inventory %s unreadable (%s); moved to %s, learning it again", self.path, e, aside)
                try:
                    os.replace(self.path, aside)
                except OSError:
                    pass

    def observe(self, visible: Dict[str, str]) -> Tuple[int, List[Tuple[str, str]]]:
        """(GPUs expected, the missing ones as (PCI bus id, UUID); "?" where only the count
        says one is missing). Learns the visible GPUs."""
        new = {k: v for k, v in visible.items() if k and self.known.get(k) != v}
        if new:
            self.known.update(new)
            self._save()
        missing = [(pci, uuid) for pci, uuid in sorted(self.known.items()) if pci not in visible]
        expected = max(self.expected, len(self.known)) if self.expected else len(self.known)
        unexplained = expected - len(visible) - len(missing)
        missing += [("?", "?")] * max(0, unexplained)
        return expected, missing

    def _save(self) -> None:
        if not self.path:
            return
        error = write_json(self.path, {"gpus": [{"pci_bus_id": k, "UUID": v} for k, v in sorted(self.known.items())]})
        if error:  # a full disk: keep learning in memory, try again when something changes
            log.warning("GPU inventory %s not saved: %s", self.path, error)
