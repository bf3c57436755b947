"""Xids that come back after reboots (GPUd's rule): a GPU that logs an Xid calling for a reboot
(the catalogue's reboot_node, or an Xid 154 announcing one) in a third boot within 30 days,
after two reboots that were meant to fix it, needs hardware inspection, not a third reboot.

The boots are kept per PCI address in `state_dir/xid_boots.json` (at most 8 boots for each of
at most MAX_ADDRESSES addresses, older than 30 days forgotten), so the count survives the very
reboots it counts; written atomically, a full disk costs only the newest boot's note.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Callable, Dict, List, Tuple

from ..statefile import write_json

log = logging.getLogger(__name__)

BOOTS_FILE = "xid_boots.json"
WINDOW = 30 * 86400.0  # boots older than this no longer count
KEEP = 8  # boots remembered per address
MAX_ADDRESSES = 32


class RebootXids:
    """The boots in which each GPU logged an Xid that calls for a reboot."""

    def __init__(self, state_dir: str, boot_id: str, clock: Callable[[], float] = time.time):
        self.path = os.path.join(state_dir, BOOTS_FILE) if state_dir else ""
        self.boot_id = boot_id
        self.clock = clock
        self.boots: Dict[str, List[Tuple[str, float]]] = self._load()

    def _load(self) -> Dict[str, List[Tuple[str, float]]]:
        if not self.path or not os.path.exists(self.path):
            return {}
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            return {str(pci): [(str(b), float(t)) for b, t in boots][-KEEP:]
                    for pci, boots in list(doc.items())[:MAX_ADDRESSES]}
        except (OSError, ValueError, TypeError) as e:
            log.warning("%s unreadable (%s): Xid reboots are counted from this boot on", self.path, e)
            return {}

    def note(self, pci: str) -> None:
        """An Xid calling for a reboot on `pci`, in this boot."""
        boots = self.boots.get(pci)
        if boots is None:
            if len(self.boots) >= MAX_ADDRESSES:
                return
            boots = self.boots[pci] = []
        if any(b == self.boot_id for b, _ in boots):
            return
        boots.append((self.boot_id, self.clock()))
        del boots[:-KEEP]
        self._save()

    def counts(self) -> Dict[str, int]:
        """Per address: the boots within the window in which it logged such an Xid."""
        since = self.clock() - WINDOW
        return {pci: n for pci, boots in self.boots.items() if (n := sum(1 for _, t in boots if t >= since))}

    def _save(self) -> None:
        if not self.path:
            return
        error = write_json(self.path, self.boots)
        if error:
            log.warning("cannot save %s: %s", self.path, error)


__all__ = ["BOOTS_FILE", "RebootXids", "WINDOW"]
