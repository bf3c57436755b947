"""What the history file holds, in memory, for the store, its sealer and its readers:

- `SeriesIndex`: every stored series (id -> SeriesInfo), by its sorted labels, counted per
  metric name; one lock, since the cycle adds series, the sealer moves their `last` and
  forgets old ones, and readers copy the list.
- `Layouts`: each cycle's row is the values of a layout (the series ids in order), stored once
  and named by an id; which layout the newest row used; each layout's positions (`Positions`),
  built when a read asks and kept within a budget of bytes (a churning target makes a layout
  a cycle).

The store, the sealer (seal.py) and the readers (reader.py) use these through their methods
only; none reaches into another's attributes.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
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


class Positions:
    """Where each series of one layout sits in its rows: the layout's series ids in ascending
    order beside their places, looked up by bisection. 12 bytes a series: the dict of ints it
    replaces took ~80, so only four layouts were kept (0.4 MiB at 1,200 series), and a head
    holding more layouts than that rebuilt every one for every read (a history-rules round
    spent half its time so)."""

    __slots__ = ("ids", "places")

    def __init__(self, ids: Iterable[int]):
        layout = array("q", ids)
        order = sorted(range(len(layout)), key=layout.__getitem__)
        self.ids = array("q", [layout[i] for i in order])
        self.places = array("i", order)  # a place is below 2**31: a row that long would be 16 GiB

    def get(self, sid: int) -> Optional[int]:
        """The series' place in the layout's rows, or None when the layout lacks it."""
        i = bisect_left(self.ids, sid)
        return self.places[i] if i < len(self.ids) and self.ids[i] == sid else None

    def __contains__(self, sid: int) -> bool:
        return self.get(sid) is not None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return len(self.ids) * (self.ids.itemsize + self.places.itemsize)


NO_POSITIONS = Positions(())


class Layouts:
    KEPT_BYTES = 1 << 20  # the layouts' positions kept, at most (the last one asked for is always kept)

    def __init__(self) -> None:
        self._by_blob: Dict[bytes, int] = {}
        self._ids: Dict[int, array] = {}
        self._positions: "OrderedDict[int, Positions]" = OrderedDict()
        self._kept = 0  # their bytes
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

    def readable(self, lid: int, vals: object) -> bool:
        """Whether a head row of layout `lid` holding `vals` can be read: its layout known, its
        length that layout's (a damaged row is left out, by the seal and by every read)."""
        ids = self._ids.get(lid)
        return ids is not None and type(vals) is bytes and len(vals) == 8 * len(ids)

    def known(self) -> List[int]:
        return list(self._ids)

    def positions(self, lid: int) -> Positions:
        """Where each series sits in layout `lid`'s rows (empty for an unknown layout); kept
        within KEPT_BYTES, the least recently asked for dropped first (any thread)."""
        with self._lock:
            found = self._positions.get(lid)
            if found is not None:
                self._positions.move_to_end(lid)
                return found
        ids = self._ids.get(lid)
        if ids is None:
            return NO_POSITIONS
        found = Positions(ids)
        with self._lock:
            if lid not in self._positions:  # (another thread may have built it meanwhile)
                self._positions[lid] = found
                self._kept += found.nbytes
            while self._kept > self.KEPT_BYTES and len(self._positions) > 1:
                self._kept -= self._positions.popitem(last=False)[1].nbytes
        return found

    def forget(self, lids: Iterable[int]) -> None:
        for lid in lids:
            arr = self._ids.pop(lid, None)
            if arr is not None:
                self._by_blob.pop(arr.tobytes(), None)
            with self._lock:
                dropped = self._positions.pop(lid, None)
                self._kept -= dropped.nbytes if dropped is not None else 0

    def clear(self) -> None:
        self._by_blob.clear()
        self._ids.clear()
        with self._lock:
            self._positions.clear()
            self._kept = 0
        self.current, self.current_id = (), 0
