"""The one plugin registry: every collector, deriver, target kind and per-target extra (probes,
benchmarks) registers here with its name and the config section that configures it, as
node_exporter's `registerCollector`; `wiring.CollectorSet` builds whatever is registered.
Nothing else knows a plugin by name, and this module imports none: `load_all()` finds them by
scanning the plugin packages, so a new source is one file (and its test).

Four kinds:
- `register(name, section, keep)`: a collector every agent has (NVML, the host, the agent
  itself); its builder returns None when its section disables it. `keep=True`: on a reload the
  built instance is kept while its section is unchanged (NVML keeps its XID counts and thread).
- `register_deriver(name, section, keep)`: worked out from each cycle's results, in name order,
  each seeing what the ones before derived (engine_series before slo_cost).
- `register_target_kind(kind)`: a target's own collector, by its `kind`.
- `register_per_target(name)`: what else each target gets (its probe, its benchmarks).

A builder is given a `Context`: the configuration and the things that vary in tests, typed,
so what a plugin may read is in its signature.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .config import Config, TargetConfig

if TYPE_CHECKING:  # the types of what the context carries; the plugins themselves are never imported here
    from .collectors.lifecycle import TargetLife
    from .collectors.liveness import Liveness
    from .collectors.selfstats import AgentStats
    from .perf.book import PerfBook
    from .probes.stacks import StackStore

PACKAGES = ("agent.collectors", "agent.probes", "agent.perf")  # where plugins live


@dataclass
class Context:
    """What a builder may use: the configuration and the things that vary in tests."""

    config: Config
    nvml: Any = None  # the pynvml module, or a test's fake of it
    clock: Callable[[], float] = field(default=lambda: 0.0)
    monotonic: Callable[[], float] = field(default=lambda: 0.0)
    state_dir: str = ""
    stacks: Optional["StackStore"] = None  # py-spy dumps of a hung server; None when they are off
    self_stats: Optional[Callable[[], "AgentStats"]] = None  # the daemon's counters (selfstats.py)
    targets_now: Callable[[], Tuple[TargetConfig, ...]] = tuple
    wake: Callable[[], None] = lambda: None  # run the next cycle now (a suspected hang is checked again)
    perf_book: Optional["PerfBook"] = None  # benchmark and quality runs, baselines, environments


FixedBuilder = Callable[[Context], Optional[Any]]
TargetBuilder = Callable[[Context, TargetConfig, Optional["Liveness"], Optional["TargetLife"]], Any]
ExtraBuilder = Callable[[Context, TargetConfig, Optional["TargetLife"]], Optional[Any]]


@dataclass(frozen=True)
class Registration:
    name: str
    section: str  # dotted config section ("collectors.nvml"); "" when it has none
    build: Callable[..., Any]
    keep: bool = False


class Registry:
    """The registrations, by kind; a second registration of a name is refused (a plugin that
    would silently replace another)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fixed: Dict[str, Registration] = {}
        self.derivers: Dict[str, Registration] = {}
        self.target_kinds: Dict[str, Registration] = {}
        self.per_target: Dict[str, Registration] = {}

    def add(self, table: Dict[str, Registration], reg: Registration) -> None:
        with self._lock:
            if reg.name in table:
                raise ValueError(f"a plugin named {reg.name!r} is registered twice")
            table[reg.name] = reg


REGISTRY = Registry()


def register(name: str, section: str = "", keep: bool = False) -> Callable[[FixedBuilder], FixedBuilder]:
    def wrap(build: FixedBuilder) -> FixedBuilder:
        REGISTRY.add(REGISTRY.fixed, Registration(name, section, build, keep))
        return build
    return wrap


def register_deriver(name: str, section: str = "", keep: bool = False) -> Callable[[FixedBuilder], FixedBuilder]:
    def wrap(build: FixedBuilder) -> FixedBuilder:
        REGISTRY.add(REGISTRY.derivers, Registration(name, section, build, keep))
        return build
    return wrap


def register_target_kind(kind: str) -> Callable[[TargetBuilder], TargetBuilder]:
    def wrap(build: TargetBuilder) -> TargetBuilder:
        REGISTRY.add(REGISTRY.target_kinds, Registration(kind, "", build))
        return build
    return wrap


def register_per_target(name: str) -> Callable[[ExtraBuilder], ExtraBuilder]:
    def wrap(build: ExtraBuilder) -> ExtraBuilder:
        REGISTRY.add(REGISTRY.per_target, Registration(name, "", build))
        return build
    return wrap


def section(config: Config, dotted: str) -> Any:
    """The typed settings of a dotted config section (for comparing across a reload)."""
    node: Any = config
    for part in dotted.split(".") if dotted else ():
        node = getattr(node, part)
    return node


_loaded = False


def load_all() -> List[str]:
    """Import every module of the plugin packages, so that each registers itself (once)."""
    global _loaded
    if not _loaded:
        for package in PACKAGES:
            path = importlib.import_module(package).__path__
            for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
                importlib.import_module(f"{package}.{info.name}")
        _loaded = True
    return sorted(REGISTRY.fixed) + sorted(REGISTRY.derivers) + sorted(REGISTRY.target_kinds) + sorted(REGISTRY.per_target)
