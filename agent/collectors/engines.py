"""Engine-neutral series: llama.cpp's, vLLM's, SGLang's and TGI's own series under one set of
names (`llm_agent_requests_running`, `llm_agent_kv_cache_usage_ratio`, token counters, the
server-side latency histograms), each with `server`, `engine` and `model`.

The mapping is data (engines.toml beside this file): adding an engine is a column there. This
is a deriver: it reads only this cycle's merged target families, after the collectors ran.
A server's engine is the one whose source series it exports; its model is the source's
`model_name` (vLLM, SGLang) or `model` label, else the model the target serves (llama.cpp's
/props, as llm_agent_target_info says).

From the neutral token counters it also works out llm_agent_{generation,prompt}_tokens_per_second
per server and model, as rate(counter[1m]) would: one way for every engine, in the one place
that knows which series is an engine's token counter.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..config.load import tomllib
from ..model import COUNTER, GAUGE, HISTOGRAM, Labels, MetricFamily, Sample, Snapshot, gauge, intern_labels
from ..plugins import Context, register_deriver

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engines.toml")
ENGINES = ("llamacpp", "vllm", "sglang", "tgi")
SUFFIXES = {HISTOGRAM: ("_bucket", "_sum", "_count")}
RATE_WINDOW = 60.0  # tokens per second: as rate(counter[1m]) over the neutral token counter
RATES = {  # neutral counter -> the per-second gauge worked out from it
    "llm_agent_generation_tokens_total": "llm_agent_generation_tokens_per_second",
    "llm_agent_prompt_tokens_total": "llm_agent_prompt_tokens_per_second",
}


@dataclass(frozen=True)
class Source:
    family: str
    sample: str  # the sample name read: the family's, or one suffix of it ("family#_sum")


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    help: str
    combine: str  # sum | max
    sources: Dict[str, Tuple[Source, ...]]  # engine -> its candidates, the first present wins


def parse_table(text: str) -> List[Row]:
    """The mapping; ValueError naming the row and key when it is not one."""
    rows = []
    for name, spec in tomllib.loads(text).items():
        if not name.startswith("llm_agent_") or not isinstance(spec, dict):
            raise ValueError(f"{name}: a row is a table named llm_agent_*")
        kind, combine = spec.get("type"), spec.get("combine", "sum")
        if kind not in (GAUGE, COUNTER, HISTOGRAM) or combine not in ("sum", "max"):
            raise ValueError(f"{name}: type must be gauge, counter or histogram and combine sum or max")
        sources = {}
        for engine, names in spec.items():
            if engine in ("type", "help", "combine"):
                continue
            if engine not in ENGINES or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{name}.{engine}: an engine ({', '.join(ENGINES)}) and a list of series names")
            parsed = []
            for n in names:
                family, _, suffix = n.partition("#")
                parsed.append(Source(family, family + suffix))
            sources[engine] = tuple(parsed)
        rows.append(Row(name, kind, str(spec.get("help", "")), combine, sources))
    return rows


def load_table(path: str = TABLE_PATH) -> List[Row]:
    with open(path, encoding="utf-8") as f:
        return parse_table(f.read())


@lru_cache(maxsize=None)
def engine_sources(neutral: str) -> Tuple[Source, ...]:
    """Every engine's sources of one neutral series (the shipped table), current names first."""
    row = next(r for r in load_table() if r.name == neutral)
    return tuple(src for sources in row.sources.values() for src in sources)


def source_total(families: Mapping[str, MetricFamily], sources: Sequence[Source]) -> Optional[float]:
    """The sum of the first of `sources` present in `families` (by family name), or None."""
    for src in sources:
        fam = families.get(src.family)
        values = [s.value for s in fam.samples if s.name == src.sample] if fam is not None else []
        if values:
            return sum(values)
    return None


class CounterRate:
    """A counter's per-second rate over the last RATE_WINDOW seconds of the values read, as
    PromQL's rate() reads it: a value that went down is a restart from zero. One busy cycle
    between idle ones is a bump in a one-minute average, not a spike."""

    def __init__(self, window: float = RATE_WINDOW):
        self.window = window
        self.points: Deque[Tuple[float, float]] = deque()

    def add(self, t: float, total: float) -> Optional[float]:
        """Record a reading; the rate over the window (None until two readings span time)."""
        self.points.append((t, total))
        while len(self.points) > 2 and self.points[1][0] <= t - self.window:
            self.points.popleft()  # keep one reading at or before the window's start
        first_t = self.points[0][0]
        if t <= first_t:
            return None
        values = [v for _, v in self.points]
        increase = sum(b - a if b >= a else b for a, b in zip(values, values[1:]))
        return increase / (t - first_t)


def _engine_of(names: Iterable[str]) -> Optional[str]:
    for name in names:
        prefix = name.split(":", 1)[0] if ":" in name else name.split("_", 1)[0]
        if prefix in ENGINES:
            return prefix
    return None


def neutral_families(view: Snapshot, rows: Sequence[Row]) -> List[MetricFamily]:
    """This cycle's neutral series, from the target families in `view`."""
    by_server: Dict[str, Dict[str, List[Sample]]] = {}  # server -> sample name -> samples
    for family in view.families:
        for s in family.samples:
            server = s.label("server")
            if server:
                by_server.setdefault(server, {}).setdefault(s.name, []).append(s)
    models = {s.label("server"): s.label("model") for s in view.samples("llm_agent_target_info")}
    out = []
    for row in rows:
        values: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], List[float]] = {}  # (sample name, labels)
        for server, samples in sorted(by_server.items()):
            engine = _engine_of(samples)
            for source in row.sources.get(engine or "", ()):
                wanted = [source.sample + suffix for suffix in SUFFIXES.get(row.type, ("",))] \
                    if source.sample == source.family else [source.sample]
                found = [s for name in wanted for s in samples.get(name, ())]
                if not found:
                    continue
                for s in found:
                    model = s.label("model_name") or s.label("model") or models.get(server, "")
                    suffix = s.name[len(source.family):] if source.sample == source.family else ""
                    labels: List[Tuple[str, str]] = [("server", server), ("engine", engine or ""), ("model", model)]
                    if suffix == "_bucket":
                        labels.append(("le", s.label("le")))
                    values.setdefault((row.name + suffix, tuple(labels)), []).append(s.value)
                break  # the first source present wins
        if values:
            combine = max if row.combine == "max" else sum
            out.append(MetricFamily(row.name, row.type, row.help,
                                    [Sample(n, intern_labels(labels), float(combine(v))) for (n, labels), v in values.items()]))
    return out


class EngineSeries:
    """The deriver (runner.Deriver): neutral series from the targets' own, and token rates."""

    name = "engine_series"

    def __init__(self, rows: Sequence[Row]):
        self.rows = list(rows)
        self.reads: Tuple[str, ...] = tuple(sorted({src.family for row in self.rows for sources in row.sources.values()
                                                    for src in sources} | {"llm_agent_target_info"}))
        self._rates: Dict[Tuple[str, Labels], CounterRate] = {}

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        families = neutral_families(view, self.rows)
        return families + self._token_rates(view.timestamp, families)

    def _token_rates(self, now: float, families: Sequence[MetricFamily]) -> List[MetricFamily]:
        """Per second over the last minute, per server and model. A series that was not read
        this cycle (its target did not answer) loses its history: its rate is absent, not stale,
        and starts again from the next two readings."""
        seen: Dict[Tuple[str, Labels], CounterRate] = {}
        out = []
        for fam in families:
            rate_name = RATES.get(fam.name)
            if rate_name is None:
                continue
            what = rate_name[len("llm_agent_"):].split("_", 1)[0]
            rates = gauge(rate_name, f"{what.capitalize()} tokens per second over the last minute, from the "
                                     f"server's counters ({fam.name}, as rate(counter[1m])).")
            for s in fam.samples:
                key = (rate_name, s.labels)
                seen[key] = self._rates.get(key) or CounterRate()
                rate = seen[key].add(now, s.value)
                if rate is not None:
                    rates.add(dict(s.labels), rate)
            if rates.samples:
                out.append(rates)
        self._rates = seen
        return out


@register_deriver("engine_series", keep=True)
def _build(ctx: Context) -> EngineSeries:
    return EngineSeries(load_table())
