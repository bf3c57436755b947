"""Count XID errors from NVML's event API in a background thread.

XIDs are events, not state: polling `DCGM_FI_DEV_XID_ERRORS` once per cycle misses every XID
but the last. A thread blocked in `nvmlEventSetWait` sees each one and counts it by code.

Each wait lasts WAIT_MS: the thread wakes that often with nothing to do (a wake-up costs 0.1-0.2
ms of CPU on a small VM; at 1 s it was 5 a cycle, 5% of the agent's CPU, and at 5 s 1% still).
An event ends the wait at once, so its length delays no XID; it bounds only how long a closed
watcher's thread lives on. Closing does not wait for the wait to end: the event set is freed,
and NVML shut down, by whichever of the thread and close() comes last, so never under a wait in
progress.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple
from .. import threads

log = logging.getLogger(__name__)
WAIT_MS = 30000  # once every six cycles at the default interval


class XidWatcher:
    """Registers every handle for XID events and counts them per (gpu index, xid)."""

    def __init__(self, nvml: Any, handles: List[Tuple[int, Any]], wait_ms: int = WAIT_MS):
        self.nvml = nvml
        self.wait_ms = wait_ms  # how long one wait blocks: closing takes up to this long
        self.counts: Dict[Tuple[int, int], int] = {}
        self.last: Dict[int, int] = {}
        self.watched: List[int] = []
        self.error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ending = threading.Lock()  # orders the thread's exit against close()
        self._exited = False
        self._then: Optional[Callable[[], None]] = None  # what close() leaves to be done after the set is freed
        self._index_of = {}
        self._set = nvml.nvmlEventSetCreate()
        for index, handle in handles:
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, self._set)
            except nvml.NVMLError as e:  # NotSupported on some boards: that GPU just isn't watched
                log.info("gpu %d: XID events unavailable: %s", index, e)
                continue
            self._index_of[self._key(handle)] = index
            self.watched.append(index)
        self._thread = threads.daemon(self._loop, "nvml-xid")
        self._thread.start()

    @staticmethod
    def _key(handle: Any) -> Any:
        # ctypes handles compare by address, not identity
        return getattr(handle, "value", None) or getattr(getattr(handle, "contents", None), "value", None) or id(handle)

    def _loop(self) -> None:
        try:
            self._watch()
        finally:
            with self._ending:
                self._exited = True
                closing = self._stop.is_set()
            if closing:  # close() came while this thread waited: the release is this thread's
                self._release()

    def _watch(self) -> None:
        nvml = self.nvml
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(self._set, self.wait_ms)
            except nvml.NVMLError as e:
                if e.value == nvml.NVML_ERROR_TIMEOUT:
                    continue
                self.error = str(e)
                log.warning("XID event wait failed, XID counting stops: %s", e)
                return
            index = self._index_of.get(self._key(data.device), -1)
            xid = int(data.eventData)
            with self._lock:
                self.counts[(index, xid)] = self.counts.get((index, xid), 0) + 1
                self.last[index] = xid
            log.warning("gpu %d: XID %d", index, xid, extra={"GPU": str(index)})

    def snapshot(self) -> Tuple[Dict[Tuple[int, int], int], Dict[int, int]]:
        """Copies of (counts by (gpu, xid), last xid by gpu)."""
        with self._lock:
            return dict(self.counts), dict(self.last)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, then: Optional[Callable[[], None]] = None) -> None:
        """Stop watching, without waiting for a wait in progress; the event set is freed, and
        then `then` runs (the collector's nvmlShutdown), once no wait is in progress: here if
        the thread has ended, else by the thread as it ends (within wait_ms)."""
        with self._ending:
            self._stop.set()
            self._then = then
            if not self._exited:
                return  # the thread is inside nvmlEventSetWait: freeing the set now would crash it
        self._release()

    def _release(self) -> None:
        try:
            self.nvml.nvmlEventSetFree(self._set)
        except Exception as e:  # freeing at shutdown is best effort
            log.debug("nvmlEventSetFree: %s", e)
        if self._then is not None:
            try:
                self._then()
            except Exception as e:  # as above
                log.debug("after closing the XID watcher: %s", e)
