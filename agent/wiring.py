"""The collector set: what is registered (plugins.py), built from the config, for
the fixed sources and for each target (configured, else discovered and re-discovered every
`discovery.interval`), kept in step across discovery and reloads."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import plugins
from .collectors.lifecycle import Seen, TargetLife
from .collectors.openmetrics import public_url
from .collectors.process import ExitWatcher, ProcessCollector
from .collectors.unitstate import UnitStates
from .config import Config, TargetConfig
from .discovery import Found, Held, discovered_targets, hold_missing
from .model import MetricFamily, gauge
from .collectors.liveness import Liveness
from .runner import Collector, Runner

log = logging.getLogger(__name__)
plugins.load_all()


def _target_key(t: TargetConfig) -> Tuple:
    return (t.name, t.url, t.kind, t.metrics_path, t.timeout, t.api_key, t.unit, tuple(sorted(t.labels.items())),
            t.sample_limit, t.label_limit, t.label_name_length_limit, t.label_value_length_limit)


def _target_sections(c: Config) -> Tuple:
    """What every target's collectors are built from besides the target itself."""
    return (c.probes, c.bench, c.quality, c.health, c.slo.ttft_seconds)


class CollectorSet:
    """Builds and keeps the runner's collectors and derivers for the current config."""

    def __init__(self, ctx: plugins.Context, runner: Runner, discover: Callable[[], Sequence[Found]],
                 seen: Optional[Seen] = None):
        self.ctx = ctx
        self.runner = runner
        self.discover = discover
        self.fixed: Dict[str, Collector] = {}
        self._targets: Dict[Tuple, List[Collector]] = {}  # per target: its collector, process, extras
        self._held: Dict[str, Held] = {}  # discovered targets, those missing within [discovery] gone_after included
        self._next_discovery = 0.0
        self.seen = seen or Seen(ctx.state_dir, ctx.clock)  # which targets have ever answered (lifecycle.py)
        self.gone = GoneTargets(ctx.clock)
        self.exit_watcher: Optional[ExitWatcher] = None
        ctx.targets_now = self.targets_now
        self.build_fixed(previous=None)

    @property
    def config(self) -> Config:
        return self.ctx.config

    def build_fixed(self, previous: Optional[Config]) -> None:
        """Every registered fixed collector and deriver for the current config. On a reload a
        `keep` one whose section (and the hostname) did not change, or that no section
        configures, is kept with its state; any other old one is closed. Each target's
        collectors are built again at the next sync when a section they read changed (a new
        probe prompt, benchmark schedule or quality set applies without a restart)."""
        if previous is not None and _target_sections(previous) != _target_sections(self.config):
            self._targets = {}  # the runner closes the old ones when the new set replaces them
        self.fixed = self._build(plugins.REGISTRY.fixed, self.fixed, previous)
        kept = {d.name: d for d in self.runner.derivers}
        self.runner.derivers = list(self._build(plugins.REGISTRY.derivers, kept, previous).values())
        self._next_discovery = 0.0

    def _build(self, regs: Dict[str, plugins.Registration], old: Dict[str, Any],
               previous: Optional[Config]) -> Dict[str, Any]:
        built: Dict[str, Any] = {}
        for name, reg in sorted(regs.items()):
            before = old.get(name)
            same = previous is not None and previous.hostname == self.config.hostname and \
                (not reg.section or plugins.section(previous, reg.section) == plugins.section(self.config, reg.section))
            if before is not None and reg.keep and same:
                built[name] = before
                continue
            if before is not None:
                getattr(before, "close", lambda: None)()
            made = reg.build(self.ctx)
            if made is not None:
                built[name] = made
        return built

    def targets(self) -> Tuple[TargetConfig, ...]:
        """Configured targets, else discovered ones (re-discovered every discovery.interval)."""
        c = self.config
        if c.targets:
            return c.targets
        if not c.discovery.enabled:
            return ()
        now = self.ctx.monotonic()
        if now >= self._next_discovery:
            try:
                found = list(self.discover())
            except Exception as e:  # /proc races and permission walls must not stop the agent
                log.warning("process discovery failed: %s", e)
                found = []
            self._held, gone = hold_missing(self._held, discovered_targets(found, c.discovery.fallback_url),
                                            not found, now, c.discovery.gone_after)
            for h in gone:
                self._let_go(h)
            for h in self._held.values():
                if not h.guessed and h.missing_since is None:
                    self.gone.returned(h.target.name)
            self._next_discovery = now + c.discovery.interval
        return tuple(h.target for h in self._held.values())

    def _let_go(self, h: Held) -> None:
        """A discovered server that exited and did not come back (or the guess, once a server is
        found): no longer watched; its alerts resolve (llm_agent_target_gone), and a server that
        had answered is announced once (LlmTargetGone)."""
        name = h.target.name
        announce = not h.guessed and self.seen.has(name)
        if not h.guessed:
            log.warning("target %s (%s) is gone: its process exited and did not come back within %gs; no longer watched",
                        name, public_url(h.target.url), self.config.discovery.gone_after, extra={"TARGET": name})
        self.gone.add(name, announce)
        self.seen.forget(name)  # a later server of that name starts as never up

    @property
    def discovered_count(self) -> int:
        return 0 if self.config.targets else len(self._held)

    def families(self) -> List[MetricFamily]:
        """What the set itself knows: the targets let go lately."""
        return self.gone.families()

    def _build_target(self, t: TargetConfig) -> List[Collector]:
        """One target's collectors: its own (by kind), the process behind it, the registered extras."""
        c = self.config
        process = ProcessCollector(t.name, t.url, units=UnitStates(c.health.systemctl), clock=self.ctx.monotonic,
                                   unit=t.unit)
        liveness = Liveness(t.name, self.ctx.monotonic, process, self.ctx.stacks, c.health.hang_after,
                            c.health.stall_after, recheck=self.ctx.wake, wedge_after=c.health.wedge_after)
        life = TargetLife(t.name, t.kind, self.seen, self.ctx.monotonic, lambda: process.last_exit,
                          c.health.restart_grace)
        group: List[Collector] = [plugins.REGISTRY.target_kinds[t.kind].build(self.ctx, t, liveness, life), process]
        for _, reg in sorted(plugins.REGISTRY.per_target.items()):
            extra = reg.build(self.ctx, t, life)
            if extra is not None:
                group.append(extra)
        return group

    def sync(self) -> None:
        """Bring the runner's collectors in step with the targets of now."""
        wanted: Dict[Tuple, List[Collector]] = {}
        for t in self.targets():
            key = _target_key(t)
            wanted[key] = self._targets.get(key) or self._build_target(t)
        if wanted.keys() != self._targets.keys():
            log.info("targets: %s", ", ".join(f"{k[0]} ({public_url(k[1])})" for k in wanted) or "none")
            for key in wanted.keys() - self._targets.keys():
                log.info("watching target %s", key[0], extra={"TARGET": key[0]})
        self._targets = wanted
        self.runner.set_collectors(list(self.fixed.values()) + [c for group in wanted.values() for c in group])
        if self.exit_watcher is not None:
            self.exit_watcher.set([c for group in wanted.values() for c in group if isinstance(c, ProcessCollector)])

    def targets_now(self) -> Tuple[TargetConfig, ...]:
        """The targets of the current collector set (no discovery run)."""
        return tuple(group[0].target for group in self._targets.values())  # type: ignore[attr-defined]


GONE_ANNOUNCED = 600.0  # seconds llm_agent_target_gone is 1 (LlmTargetGone fires), then 0
GONE_KEPT = 3600.0  # seconds a gone target's record lasts: its alerts do not start again meanwhile
GONE_MAX = 64  # records kept at most (the oldest go first): a host whose servers churn stays bounded


class GoneTargets:
    """Targets let go lately, as `llm_agent_target_gone{server}`: 1 while it is announced, 0
    after; the rules' engine resolves a gone target's alerts and starts none while it lasts."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._at: Dict[str, Tuple[float, bool]] = {}  # server -> (when, announced)

    def add(self, server: str, announce: bool) -> None:
        self._at.pop(server, None)
        self._at[server] = (self.clock(), announce)
        while len(self._at) > GONE_MAX:
            del self._at[next(iter(self._at))]

    def returned(self, server: str) -> None:
        self._at.pop(server, None)

    def families(self) -> List[MetricFamily]:
        now = self.clock()
        for server in [s for s, (at, _) in self._at.items() if now - at >= GONE_KEPT]:
            del self._at[server]
        fam = gauge("llm_agent_target_gone", "A discovered target let go: its process exited and did not come back "
                                             "within [discovery] gone_after (1 for ten minutes when it had answered "
                                             "before, then 0 for the rest of an hour).")
        for server, (at, announce) in self._at.items():
            fam.add({"server": server}, 1 if announce and now - at < GONE_ANNOUNCED else 0)
        return [fam]
