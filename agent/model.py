"""The data that crosses from collection to consumers: samples, metric families, snapshots.

Everything here is plain data. A collector builds `MetricFamily` objects; the runner merges
what every collector produced into one immutable `Snapshot` per cycle, and the exporter,
`check` and (later) the rule engine only ever read snapshots.
"""

from __future__ import annotations

import math
import sys
from dataclasses import InitVar, dataclass, field
from typing import Dict, Generic, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar

Labels = Tuple[Tuple[str, str], ...]

COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED = "counter", "gauge", "histogram", "summary", "untyped"
METRIC_TYPES = (COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED)


K = TypeVar("K")
V = TypeVar("V")


class CarryOver(Generic[K, V]):
    """A memo carried from one round (a scrape, a render) to the next: what the last round
    used is known in this one, the rest is dropped, so it never grows as series churn. A
    target's series are the same from one cycle to the next: their labels are parsed, relabeled
    and rendered once, and every consumer shares the same objects."""

    def __init__(self) -> None:
        self.known: Dict[K, V] = {}
        self.used: Dict[K, V] = {}

    def next_round(self) -> None:
        self.known, self.used = self.used, {}

    def end_round(self) -> None:
        """What this round did not use is dropped now, not a round later: between rounds the
        memo holds one round's entries, not two (megabytes on a 32-target host)."""
        self.known = {}

    def get(self, key: K) -> Optional[V]:
        found = self.known.get(key)
        if found is not None:
            self.used[key] = found
        return found

    def put(self, key: K, value: V) -> V:
        self.used[key] = value
        return value


class Sample:
    """One series value: full sample name (``foo_bucket`` for a histogram), labels, value."""

    __slots__ = ("name", "labels", "value")

    def __init__(self, name: str, labels: Labels, value: float):
        self.name = name
        self.labels = labels
        self.value = value

    def label(self, key: str, default: str = "") -> str:
        """The value of label `key`, or `default` when the sample has none."""
        for k, v in self.labels:
            if k == key:
                return v
        return default

    def __repr__(self) -> str:
        return f"Sample({self.name!r}, {dict(self.labels)!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        same_value = self.value == other.value or (math.isnan(self.value) and math.isnan(other.value))
        return self.name == other.name and self.labels == other.labels and same_value


class _LabelsTable:
    """One shared tuple per distinct label set, like sys.intern for strings.

    Why: the renderer's, the rule history's and the history file's memos are dicts keyed by
    label tuples. A collector that makes its label tuple afresh each cycle makes every one of
    those lookups compare the new tuple with last cycle's key pair by pair, reading memory gone
    cold in the 5 s between cycles; with the tuple shared, the comparison is `is`.
    bench_agent.py: -0.7 ms of the main thread's ~7 ms per cycle. Two generations bound it:
    when the newer fills, the older goes, so label sets that stopped coming (a churning
    label value) are forgotten within two fills. Thread-safe through the GIL's atomic dict
    operations (collectors call it from their lanes): a race costs one missed share, no error."""

    LIMIT = 16_384

    def __init__(self) -> None:
        self.current: Dict[Labels, Labels] = {}
        self.previous: Dict[Labels, Labels] = {}

    def __call__(self, labels: Labels) -> Labels:
        found = self.current.get(labels)
        if found is None:
            found = self.previous.get(labels, labels)
            if len(self.current) >= self.LIMIT:
                self.previous, self.current = self.current, {}
            self.current[labels] = found
        return found


intern_labels = _LabelsTable()


class Outline:
    """A list of samples' series, in order: their names and label tuples. A consumer that works
    out where each sample goes (a history's series ids, the rules' routes) keeps its answer with
    the outline it was for, and takes it again for the next cycle's samples that `fits` (most
    cycles): compared by `==` on two lists, mostly `is` on shared strings and tuples."""

    __slots__ = ("names", "labels")

    def __init__(self, samples: Sequence[Sample]):
        self.names = [s.name for s in samples]
        self.labels = [s.labels for s in samples]

    def fits(self, samples: Sequence[Sample]) -> bool:
        return [s.labels for s in samples] == self.labels and [s.name for s in samples] == self.names


class MetricFamily:
    """A named metric with a type, a help sentence and its samples. Each sample is named as the
    family is, or with a suffix (_total, _bucket, _sum, _count, _created; add() and the
    exposition parser make them so): the rules' history passes over a family by its name."""

    __slots__ = ("name", "type", "help", "samples")

    def __init__(self, name: str, type: str, help: str, samples: Optional[List[Sample]] = None):
        self.name = name
        self.type = type
        self.help = help
        self.samples: List[Sample] = samples if samples is not None else []

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> "MetricFamily":
        """Append a sample (labels in the given order); returns self so calls chain."""
        name = sys.intern(self.name + suffix) if suffix else self.name  # one `foo_bucket` string, as labels
        self.samples.append(Sample(name, intern_labels(tuple(labels.items())), float(value)))
        return self

    def __repr__(self) -> str:
        return f"MetricFamily({self.name!r}, {self.type!r}, {len(self.samples)} samples)"


def gauge(name: str, help: str) -> MetricFamily:
    """A new, empty gauge family."""
    return MetricFamily(name, GAUGE, help)


def counter(name: str, help: str) -> MetricFamily:
    """A new, empty counter family."""
    return MetricFamily(name, COUNTER, help)


@dataclass(frozen=True)
class Problem:
    """Something an operator should know, with what to do about it (shown by `check`)."""

    severity: str  # "critical" | "warning" | "info"
    subject: str  # what it is about: "target llama", "gpu 0", "nvml"
    message: str
    fix: str = ""


SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class CollectorStatus:
    """How one collector fared in one cycle."""

    name: str
    success: bool
    duration: float
    error: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything one cycle learned. Immutable once built; consumers only read it."""

    timestamp: float
    families: Tuple[MetricFamily, ...]
    collectors: Tuple[CollectorStatus, ...] = ()
    problems: Tuple[Problem, ...] = ()
    _index: Dict[str, MetricFamily] = field(default_factory=dict, init=False, compare=False, repr=False)
    # with_families' index, made from its parent's: a cycle makes a dozen snapshots of ~200 families
    _from: InitVar[Optional[Dict[str, MetricFamily]]] = None

    def __post_init__(self, _from: Optional[Dict[str, MetricFamily]]) -> None:
        if _from is not None:
            object.__setattr__(self, "_index", _from)
        else:
            self._index.update({f.name: f for f in self.families})

    def with_families(self, extra: Sequence[MetricFamily]) -> "Snapshot":
        """A copy with `extra` families appended (their names must be new)."""
        extra = tuple(extra)
        if not extra:
            return self
        index = self._index.copy()
        index.update({f.name: f for f in extra})
        return Snapshot(self.timestamp, self.families + extra, self.collectors, self.problems, index)

    def joined(self, extra: Sequence[MetricFamily]) -> "Snapshot":
        """A copy with `extra`'s samples added to the family of the same name (or as a new
        family): a fire drill's series beside the real ones."""
        if not extra:
            return self
        more = {f.name: f for f in extra}
        families = tuple(MetricFamily(f.name, f.type, f.help, f.samples + more.pop(f.name).samples)
                         if f.name in more else f for f in self.families)
        return Snapshot(self.timestamp, families + tuple(more.values()), self.collectors, self.problems)

    def family(self, name: str) -> Optional[MetricFamily]:
        """The family called `name`, or None."""
        return self._index.get(name)

    def sum_by(self, name: str, label: str) -> Dict[str, float]:
        """Samples of `name` summed by one label's value (per `server`: a router's models
        added up; a label whose values are unique just maps each to its value)."""
        out: Dict[str, float] = {}
        for s in self.samples(name):
            key = s.label(label)
            out[key] = out.get(key, 0.0) + s.value
        return out

    def samples(self, name: str) -> List[Sample]:
        """All samples of family `name`, or the samples called `name` of a histogram or
        summary family (``foo_count`` of ``foo``); empty when absent."""
        fam = self._index.get(name)
        if fam is not None:
            return fam.samples
        for suffix in ("_count", "_sum", "_bucket"):
            if name.endswith(suffix):
                fam = self._index.get(name[: -len(suffix)])
                if fam is not None:
                    return [s for s in fam.samples if s.name == name]
        return []

    def value(self, name: str, **labels: str) -> Optional[float]:
        """The value of the first sample of `name` whose labels include `labels`."""
        for s in self.samples(name):
            if all(s.label(k) == v for k, v in labels.items()):
                return s.value
        return None


def owned_names(fam: MetricFamily) -> set:
    """Every name the family claims in either format: its own, its samples', and its
    OpenMetrics family name (a counter `x_total` is family `x` there; a histogram owns its
    `_bucket`, `_sum`, `_count` and `_created`)."""
    names = {fam.name} | {s.name for s in fam.samples}
    if fam.type == COUNTER and fam.name.endswith("_total"):
        names.add(fam.name[:-6])
    if fam.type in (HISTOGRAM, SUMMARY):
        names |= {fam.name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
    return names


class Shapes:
    """What merge_families learnt of each family last time, by its name and its place among the
    families of that name (0: the first; the targets' passthrough families come one a target):
    its sample names and label tuples, and the names it owns, kept only where the merged family
    was repeat-free up to it. A family whose series are the same objects in the same order this
    time (label tuples and names are shared: intern_labels), after others of its name that were
    too, needs neither its owned names nor a set of its series made again: comparing two lists
    is mostly `is`. Holds the last merge's families only."""

    def __init__(self) -> None:
        self.last: Dict[Tuple[str, int], Tuple[str, List[str], List[Labels], set]] = {}
        self.now: Dict[Tuple[str, int], Tuple[str, List[str], List[Labels], set]] = {}
        # the whole last merge: its inputs' outline (_outline) and, where it dropped nothing, which
        # inputs made each family it returned; a merge whose inputs have that outline again is that
        # plan again (_replay), with no family looked at one by one
        self.outline: Optional[Tuple[list, ...]] = None
        self.plan: Optional[List[List[int]]] = None
        # what known() saw last: the shape it matched, or the new one (owned names not made yet)
        self._pending: Tuple[str, List[str], List[Labels], Optional[set]] = ("", [], [], None)

    def known(self, fam: MetricFamily, place: int = 0) -> Optional[set]:
        """The names a family owns if it has the shape it had last time at this place among the
        families of its name (repeat-free up to it), else None. Kept for next time only by
        learn(), once the merge has seen it repeat-free this time too."""
        names = [s.name for s in fam.samples]
        labels = [s.labels for s in fam.samples]
        was = self.last.get((fam.name, place))
        if was is not None and was[0] == fam.type and was[2] == labels and was[1] == names:
            self._pending = was
            return was[3]
        self._pending = (fam.type, names, labels, None)
        return None

    def learn(self, fam: MetricFamily, owned: set, place: int = 0) -> None:
        """`fam` (just looked at through known()) turned out repeat-free, with those before it."""
        mtype, names, labels, _ = self._pending
        self.now[(fam.name, place)] = (mtype, names, labels, owned)

    def end(self) -> None:
        self.last, self.now = self.now, {}


def merge_families(groups: Iterable[Sequence[MetricFamily]],
                   shapes: Optional[Shapes] = None) -> Tuple[List[MetricFamily], List[str]]:
    """Merge families from several collectors into one list with unique names and series.

    Two targets both export ``llamacpp:prompt_tokens_total``; the exposition must carry one
    TYPE line and no duplicate series (Prometheus rejects a whole scrape for either), so
    same-named families are joined, and a conflicting type, a repeated series, or a family
    whose names collide with another family's (a gauge `x_bucket` beside a histogram `x`) is
    dropped and described in the returned list of conflicts. Earlier groups win: the runner
    passes the agent's own families before the targets'. A family that only one collector
    made, without a repeated series, goes into the result as it is, not copied (a collector's
    families belong to the snapshots once returned); one that others add to is copied first,
    so the sources are never changed and can be merged again (the runner merges twice).
    `shapes`: what the last merge learnt (Shapes), for the runner's merges every cycle: inputs
    with last time's outline (names, types, series; most cycles) are last time's merge again,
    else each family proven as it was at its place, or looked at.
    """
    families = [fam for group in groups for fam in group]
    outline = _outline(families) if shapes is not None else None
    if shapes is not None and shapes.plan is not None and outline == shapes.outline:
        return _replay(families, shapes.plan), []  # (its shapes stay last time's: they hold)
    merge = _Merge(shapes)
    for fam in families:
        merge.add(fam)
    if shapes is not None:
        shapes.end()
        shapes.outline = outline
        shapes.plan = None if merge.conflicts else list(merge.sources.values())
    return list(merge.merged.values()), merge.conflicts


def _outline(families: List[MetricFamily]) -> Tuple[list, ...]:
    """All that merge_families decides by, in order: each family's name, type and sample count,
    each sample's name and label tuple (values and help lines decide nothing). Compared with
    last cycle's by `==` on lists, which is mostly `is` on shared strings and tuples."""
    return ([f.name for f in families], [f.type for f in families], [len(f.samples) for f in families],
            [s.name for f in families for s in f.samples], [s.labels for f in families for s in f.samples])


def _replay(families: List[MetricFamily], plan: List[List[int]]) -> List[MetricFamily]:
    """The merge that made `plan` (each result family: the inputs it was made of), on inputs with
    the same outline: a family one input made is that input itself; others are new families with
    their inputs' samples in order (the inputs are never changed)."""
    out = []
    for sources in plan:
        first = families[sources[0]]
        if len(sources) == 1:
            out.append(first)
            continue
        samples = list(first.samples)
        for i in sources[1:]:
            samples.extend(families[i].samples)
        out.append(MetricFamily(first.name, first.type, first.help, samples))
    return out


class _Merge:
    """One merge_families call's state: the families so far, who owns each name, each family's
    series (None: not made yet), which families are still a collector's own list, and per name
    how many families came, whether each was as last time (Shapes) and none repeated a series."""

    def __init__(self, shapes: Optional[Shapes]):
        self.shapes = shapes
        self.merged: Dict[str, MetricFamily] = {}
        self.claimed: Dict[str, str] = {}  # a name -> the family that owns it
        self.series: Dict[str, Optional[set]] = {}
        self.borrowed: set = set()  # passed through as their collector made them: copied before adding to them
        self.conflicts: List[str] = []
        self.came: Dict[str, int] = {}  # families of each name so far
        self.as_before: Dict[str, bool] = {}  # every one of them proven by Shapes
        self.repeat_free: Dict[str, bool] = {}  # no series of that name dropped as a repeat
        self.sources: Dict[str, List[int]] = {}  # by name, the inputs (in order of add) that went into it
        self.added = 0

    def add(self, fam: MetricFamily) -> None:
        name = fam.name
        index, self.added = self.added, self.added + 1
        into = self.merged.get(name)
        place = self.came.get(name, 0)
        self.came[name] = place + 1
        names = self.shapes.known(fam, place) if self.shapes is not None else None
        proven = names is not None
        if names is None:
            names = owned_names(fam)
        # every name has one owner, so a series can only repeat within its own family
        claimed = self.claimed
        for n in names:
            owner = claimed.get(n, name)
            if owner != name:
                self.conflicts.append(f"{name}: its names collide with family {owner}; dropped")
                return
        if into is None:
            self.sources[name] = [index]
            self.as_before[name], self.repeat_free[name] = proven, True
            into = self._first(fam, names, proven, place)
            if into is None:
                return
        elif into.type != fam.type:
            self.conflicts.append(f"{name}: type {fam.type} conflicts with {into.type}; dropped")
            return
        else:
            self.sources[name].append(index)
            for n in names:
                claimed.setdefault(n, name)
            if name in self.borrowed:  # never append to a collector's own list: it may be in another merge
                into = self.merged[name] = MetricFamily(into.name, into.type, into.help, list(into.samples))
                self.borrowed.discard(name)
            if proven and self.as_before[name]:
                # these families, in this order, were repeat-free last time: nothing to look up
                into.samples.extend(fam.samples)
                self.series[name] = None  # (a set made before would lack these: made again if asked)
                self.shapes.learn(fam, names, place)  # type: ignore[union-attr]  # (proven: there are shapes)
                return
            self.as_before[name] = False
        if self._append(fam, into):
            self.repeat_free[name] = False
        elif self.shapes is not None and self.repeat_free[name]:
            self.shapes.learn(fam, names, place)

    def _first(self, fam: MetricFamily, names: set, proven: bool, place: int) -> Optional[MetricFamily]:
        """The first family of its name: passed through when it is repeat-free (None: done),
        else a new family to append its series to."""
        for n in names:
            self.claimed.setdefault(n, fam.name)
        if proven:  # the common case: as last cycle, repeat-free
            self.merged[fam.name], self.series[fam.name] = fam, None
            self.borrowed.add(fam.name)
            self.shapes.learn(fam, names, place)  # type: ignore[union-attr]  # (proven: there are shapes)
            return None
        keys = {(s.name, s.labels) for s in fam.samples}
        if len(keys) == len(fam.samples):  # a family only one collector makes, no repeats
            self.merged[fam.name], self.series[fam.name] = fam, keys
            self.borrowed.add(fam.name)
            if self.shapes is not None:
                self.shapes.learn(fam, names, place)
            return None
        into = self.merged[fam.name] = MetricFamily(fam.name, fam.type, fam.help)
        self.series[fam.name] = set()
        return into

    def _append(self, fam: MetricFamily, into: MetricFamily) -> bool:
        """Add `fam`'s series to `into`, each only once; whether any was dropped as a repeat."""
        seen = self.series[fam.name]
        if seen is None:
            seen = self.series[fam.name] = {(s.name, s.labels) for s in into.samples}
        dropped = False
        for s in fam.samples:
            key = (s.name, s.labels)
            if key in seen:
                self.conflicts.append(f"{s.name}{dict(s.labels)}: duplicate series dropped")
                dropped = True
                continue
            seen.add(key)
            into.samples.append(s)
        return dropped
