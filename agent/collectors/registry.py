"""Which collectors exist and how each is built, as node_exporter's `registerCollector`: each
collector module registers its own builder with its name and the config section that
configures it, and `wiring.CollectorSet` builds whatever is registered. Nothing else knows a
collector by name.

Three kinds of registration:
- `register(name, section)`: a collector every agent has (NVML, the host, the agent itself);
  its builder returns None when its section disables it. `keep=True`: on a reload the built
  instance is kept while its section is unchanged (NVML keeps its XID counts and thread).
- `register_deriver(name, section, keep)`: worked out from each cycle's results
  (runner.Deriver); `keep` as above (the token rates' last minute survives a reload). They run
  in name order, each seeing what the ones before derived: engine_series (neutral series,
  tokens/s) before slo_cost (cost per token).
- `register_target_kind(kind)` and `register_per_target(name)`: what each target gets, its
  own collector by `kind` and the extras (the process behind it, its probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import Config, TargetConfig


@dataclass
class Context:
    """What a builder may use: the configuration and the things that vary in tests."""

    config: Config
    nvml: Any = None
    clock: Callable[[], float] = field(default=lambda: 0.0)
    monotonic: Callable[[], float] = field(default=lambda: 0.0)
    state_dir: str = ""
    stacks: Any = None  # probes.stacks.StackStore, or None when py-spy dumps are off
    self_stats: Callable[[], Any] = dict  # -> selfstats.AgentStats
    targets_now: Callable[[], Tuple[TargetConfig, ...]] = tuple
    wake: Callable[[], None] = lambda: None  # run the next cycle now (a suspected hang is checked again)
    perf_book: Any = None  # perf.book.PerfBook: benchmark and quality runs, baselines, environments


@dataclass(frozen=True)
class Registration:
    name: str
    section: str  # dotted config section ("collectors.nvml"); "" when it has none
    build: Callable[..., Any]
    keep: bool = False


FIXED: Dict[str, Registration] = {}
DERIVERS: Dict[str, Registration] = {}
TARGET_KINDS: Dict[str, Callable[..., Any]] = {}  # kind -> build(ctx, target, process, liveness)
PER_TARGET: Dict[str, Registration] = {}  # build(ctx, target, process) -> collector or None


def register(name: str, section: str = "", keep: bool = False) -> Callable:
    def wrap(build: Callable[[Context], Optional[Any]]) -> Callable:
        FIXED[name] = Registration(name, section, build, keep)
        return build
    return wrap


def register_deriver(name: str, section: str = "", keep: bool = False) -> Callable:
    def wrap(build: Callable[[Context], Any]) -> Callable:
        DERIVERS[name] = Registration(name, section, build, keep)
        return build
    return wrap


def register_target_kind(kind: str) -> Callable:
    def wrap(build: Callable[..., Any]) -> Callable:
        TARGET_KINDS[kind] = build
        return build
    return wrap


def register_per_target(name: str) -> Callable:
    def wrap(build: Callable[..., Optional[Any]]) -> Callable:
        PER_TARGET[name] = Registration(name, "", build)
        return build
    return wrap


def section(config: Config, dotted: str) -> Any:
    """The typed settings of a dotted config section (for comparing across a reload)."""
    node: Any = config
    for part in dotted.split(".") if dotted else ():
        node = getattr(node, part)
    return node


def load_all() -> List[str]:
    """Import every collector module so that each registers itself."""
    from . import engines, fabric, host, kernel, llamacpp, nvml, ollama, openmetrics, process, selfstats, slocost  # noqa: F401
    from ..perf import collector as perf  # noqa: F401
    from ..probes import collector  # noqa: F401

    return sorted(FIXED) + sorted(DERIVERS) + sorted(TARGET_KINDS) + sorted(PER_TARGET)
