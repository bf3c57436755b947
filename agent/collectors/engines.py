"""Engine-neutral series: llama.cpp's, vLLM's, SGLang's and TGI's own series under one set of
names (`llm_agent_requests_running`, `llm_agent_kv_cache_usage_ratio`, token counters, the
server-side latency histograms), each with `server`, `engine` and `model`.

The mapping is data (engines.toml beside this file): adding an engine is a column there. This
is a deriver: it reads only this cycle's merged target families, after the collectors ran.
A server's engine is the one whose source series it exports; its model is the source's
`model_name` (vLLM, SGLang) or `model` label, else the model the target serves (llama.cpp's
/props, as llm_agent_target_info says).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..config.load import tomllib
from ..model import COUNTER, GAUGE, HISTOGRAM, MetricFamily, Sample, Snapshot
from .registry import Context, register_deriver

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engines.toml")
ENGINES = ("llamacpp", "vllm", "sglang", "tgi")
SUFFIXES = {HISTOGRAM: ("_bucket", "_sum", "_count")}


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
                                    [Sample(n, labels, float(combine(v))) for (n, labels), v in values.items()]))
    return out


class EngineSeries:
    """The deriver (runner.Deriver): neutral series from the targets' own."""

    name = "engine_series"

    def __init__(self, rows: Sequence[Row]):
        self.rows = list(rows)
        self.reads: Tuple[str, ...] = tuple(sorted({src.family for row in self.rows for sources in row.sources.values()
                                                    for src in sources} | {"llm_agent_target_info"}))

    def derive(self, view: Snapshot) -> List[MetricFamily]:
        return neutral_families(view, self.rows)


@register_deriver("engine_series")
def _build(ctx: Context) -> EngineSeries:
    return EngineSeries(load_table())
