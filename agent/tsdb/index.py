"""What the history file holds, in memory, for the store, its sealer and its readers:

- `SeriesIndex`: every stored series (id -> SeriesInfo), by its sorted labels, counted per
  metric name; one lock, since the cycle adds series, the sealer moves their `last` and
  forgets old ones, and readers copy the list.
- `Layouts`: each cycle's row is the values of a layout (the series ids in order), stored once
  and named by an id; which layout the newest row used; each layout's positions, built when a
  seal or a read asks and only the last few kept (a churning target makes a layout a cycle).

The store, the sealer (seal.py) and the readers (reader.py) use these through their methods
only; none reaches into another's attributes.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from ..labels import Labels

Point = Tuple[float, float]


class SeriesInfo:
    """One stored series. Slotted and without a dict of its labels: a 32-target host stores
    60,000 series, and each byte here is 60 KB of resident memory."""

    __slots__ = ("id", "name", "labels", "counter", "first", "last")

    def __init__(self, id: int, labels: Labels, counter: bool, first: float, last: float):
        self.id = id
        self.labels = labels  # sorted, with __name__
        self.name = dict(labels).get("__name__", "")
        self.counter = counter  # rollups read as `last` (a counter's value), not as the average
        self.first = first
        self.last = last  # the last sealed sample (the head may hold later ones)

    @property
    def as_dict(self) -> Dict[str, str]:
        return dict(self.labels)

    def __repr__(self) -> str:
        return f"SeriesInfo({self.id}, {self.labels!r})"


@dataclass
class AlertEvent:
    at: float
    state: str  # pending | firing | resolved | inactive (a pending alert that cleared before firing)
    labels: Dict[str, str]
    annotations: Dict[str, str]
    value: float
    fingerprint: str = ""


class SeriesIndex:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._by_id: Dict[int, SeriesInfo] = {}
        self._by_key: Dict[Labels, int] = {}  # sorted labels with __name__ (the series' own tuple) -> id
        self._per_name: Dict[str, int] = {}  # stored series per metric name: one churning metric cannot take them all

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, info: SeriesInfo) -> None:
        with self.lock:
            self._by_id[info.id] = info
            self._by_key[info.labels] = info.id
            self._per_name[info.name] = self._per_name.get(info.name, 0) + 1

    def id_of(self, labels: Labels) -> Optional[int]:
        return self._by_key.get(labels)

    def get(self, sid: int) -> Optional[SeriesInfo]:
        return self._by_id.get(sid)

    def count_of(self, name: str) -> int:
        return self._per_name.get(name, 0)

    def all(self) -> List[SeriesInfo]:
        """A copy of the list, for a reader on any thread."""
        with self.lock:
            return list(self._by_id.values())

    def by_id(self) -> Dict[int, SeriesInfo]:
        """The live mapping (the cycle's thread only; readers use `all()`)."""
        return self._by_id

    def sealed_until(self, pairs: Iterable[Tuple[float, int]]) -> None:
        """(time of the last sealed sample, series id): each series' `last` moves on."""
        with self.lock:
            for t_last, sid in pairs:
                info = self._by_id.get(sid)
                if info is not None:
                    info.last = t_last

    def forget(self, ids: Iterable[int]) -> None:
        """Series retention dropped from the file."""
        with self.lock:
            for sid in ids:
                info = self._by_id.pop(sid, None)
                if info is not None:
                    self._per_name[info.name] = self._per_name.get(info.name, 1) - 1
                    self._by_key.pop(info.labels, None)

    def clear(self) -> None:
        with self.lock:
            self._by_id.clear()
            self._by_key.clear()
            self._per_name.clear()


class Layouts:
    KEPT_POSITIONS = 4  # a dict per layout: megabytes at 60,000 series

    def __init__(self) -> None:
        self._by_blob: Dict[bytes, int] = {}
        self._ids: Dict[int, array] = {}
        self._positions: "OrderedDict[int, Dict[int, int]]" = OrderedDict()
        self._lock = threading.Lock()  # positions are asked for from any thread
        self.current: Tuple[int, ...] = ()  # the newest row's series ids
        self.current_id = 0  # and its layout's id

    def remember(self, lid: int, blob: bytes) -> None:
        arr = array("q")
        arr.frombytes(blob)
        self._by_blob[blob] = lid
        self._ids[lid] = arr

    def id_of(self, blob: bytes) -> Optional[int]:
        return self._by_blob.get(blob)

    def ids(self, lid: int) -> Optional[array]:
        return self._ids.get(lid)

    def known(self) -> List[int]:
        return list(self._ids)

    def positions(self, lid: int) -> Dict[int, int]:
        """series id -> its place in layout `lid`'s rows ({} for an unknown layout); the last
        few are kept (any thread)."""
        with self._lock:
            found = self._positions.get(lid)
            if found is not None:
                self._positions.move_to_end(lid)
                return found
        ids = self._ids.get(lid)
        found = {sid: i for i, sid in enumerate(ids)} if ids is not None else {}
        with self._lock:
            self._positions[lid] = found
            while len(self._positions) > self.KEPT_POSITIONS:
                self._positions.popitem(last=False)
        return found

    def forget(self, lids: Iterable[int]) -> None:
        for lid in lids:
            arr = self._ids.pop(lid, None)
            if arr is not None:
                self._by_blob.pop(arr.tobytes(), None)
            with self._lock:
                self._positions.pop(lid, None)

    def clear(self) -> None:
        self._by_blob.clear()
        self._ids.clear()
        with self._lock:
            self._positions.clear()
        self.current, self.current_id = (), 0
