"""llama.cpp `llama-server`: /health, /metrics, /slots and /props.

The pure `parse_*` functions read captured bodies (tests/fixtures/llamacpp); the collector
class does the I/O. Facts about llama-server this relies on (tools/server in llama.cpp):
- /metrics answers 501 unless started with `--metrics`;
- `llamacpp:n_tokens_max` and `llamacpp:n_busy_slots_per_decode` are declared counters but
  are a maximum and an average: exported here as the gauges they are;
- /health answers 503 {"error": {"message": "Loading model"}} while loading;
- /slots answers 501 when disabled (`--no-slots`), else a list of slots with `is_processing`
  (older builds: `state`, 0 = idle).
- Router mode (`--models-dir`): /props says "role": "router"; /models lists each model with
  status.value (unloaded, loading, loaded); /metrics, /slots and /props need `?model=`, and
  asking for a model that is not loaded *loads it* (models_autoload): only loaded models are
  ever asked about, their series labelled `model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from ..model import COUNTER, GAUGE, MetricFamily, counter, gauge
from .http import FetchError, error_message
from .openmetrics import (OpenMetricsCollector, Signals, metrics_enabled, model_loaded, target_builder, target_info,
                          target_ready, target_slots)
from ..plugins import register_target_kind

GAUGES_DECLARED_AS_COUNTERS = ("llamacpp:n_tokens_max", "llamacpp:n_busy_slots_per_decode")
PROPS_REFRESH = 300.0  # /props changes only on restart; re-read it now and then anyway


@dataclass(frozen=True)
class Health:
    state: str  # ok | loading | error
    message: str = ""


def parse_health(status: int, body: bytes) -> Health:
    """Map a /health answer to ok, loading or error."""
    if status == 200:
        return Health("ok")
    message = error_message(body)
    if status == 503 and "loading" in message.lower():
        return Health("loading", message)
    return Health("error", message or f"HTTP {status}")


def parse_slots(data: Any) -> Tuple[int, int]:
    """(busy, idle) from a /slots body."""
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of slots")
    busy = 0
    for slot in data:
        if not isinstance(slot, dict):
            raise ValueError("expected each slot to be a JSON object")
        if "is_processing" in slot:
            busy += bool(slot["is_processing"])
        else:
            busy += slot.get("state", 0) != 0
    return busy, len(data) - busy


SERIES_PER_MODEL = 3  # a router's model_loaded, model_loads_total, model_unloads_total
MAX_LOADED_SCRAPED = 32  # a router's loaded models whose /metrics one cycle reads (llama.cpp's --models-max is 4)


@dataclass(frozen=True)
class Props:
    model: str
    context_tokens: Optional[int]
    build: str
    router: bool = False
    slots: Optional[int] = None  # total_slots: with /metrics' requests_processing, busy and idle without /slots


def parse_models(data: Any) -> Dict[str, str]:
    """A router's /models -> {model id: state (unloaded | loading | loaded | ...)}."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("expected {\"data\": [...]}")
    out = {}
    for m in data["data"]:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            raise ValueError("expected each model to be an object with an id")
        status = m.get("status")
        out[m["id"]] = str(status.get("value", "")) if isinstance(status, dict) else "loaded"
    return out


def parse_props(data: Any) -> Props:
    """Model name, context size and build from a /props body (slots come from /slots)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    settings = data.get("default_generation_settings") or {}
    n_ctx = settings.get("n_ctx", data.get("n_ctx"))
    path = str(data.get("model_alias") or data.get("model_path") or "")
    model = path.rsplit("/", 1)[-1]
    slots = data.get("total_slots")
    return Props(model, int(n_ctx) if isinstance(n_ctx, (int, float)) else None, str(data.get("build_info", "")),
                 data.get("role") == "router",
                 int(slots) if isinstance(slots, (int, float)) and not isinstance(slots, bool) and slots > 0 else None)


def retype_llamacpp(families: List[MetricFamily]) -> List[MetricFamily]:
    """Declare llama-server's max/average 'counters' as gauges."""
    for fam in families:
        if fam.name in GAUGES_DECLARED_AS_COUNTERS and fam.type == COUNTER:
            fam.type = GAUGE
    return families


class LlamaCppCollector(OpenMetricsCollector):
    """One llama-server target."""

    kind = "llamacpp"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._props: Optional[Props] = None
        self._props_at = -PROPS_REFRESH
        self.health: Optional[Health] = None
        self.models: Dict[str, str] = {}  # a router's models and their states, as of the last cycle
        self._loads: Dict[str, int] = {}  # times each was seen becoming loaded
        self._unloads: Dict[str, int] = {}  # and unloaded (or gone from the list)

    def retype(self, families: List[MetricFamily]) -> List[MetricFamily]:
        return retype_llamacpp(families)

    def scrape(self, deadline: float, out: List[MetricFamily], signals: Signals) -> bool:
        # /health first: if the server is gone or hung, this costs one timeout, not four
        try:
            resp = self.get("/health", min(deadline, signals.health_deadline), ok_statuses=(200, 500, 503))
            self.health = parse_health(resp.status, resp.body)
        except FetchError as e:
            self.health = None
            self.count_error(e.reason)
            self.down_problem(e)
            signals.health_timed_out = e.reason == "timeout"
            self._props = None
            return False
        out.append(self._health_family(self.health))
        self._refresh_props(deadline)
        if self._props is not None and self._props.router:
            self._scrape_router(deadline, out, signals)
            return True
        before = len(out)
        self._scrape_passthrough(deadline, out, signals)
        if not self._slots_from_metrics(out[before:], out):
            self._scrape_slots(deadline, out)
        self._scrape_props(deadline, out)
        return True

    def _slots_from_metrics(self, scraped: List[MetricFamily], out: List[MetricFamily]) -> bool:
        """Busy and idle slots from /metrics' requests_processing (the slots processing, counted
        by the same task that answers /slots) and /props' total_slots: one request less per cycle,
        and one task less on the server's main loop, which serves /slots and /metrics between
        decoding steps."""
        total = self._props.slots if self._props is not None else None
        processing = next((f for f in scraped if f.name == "llamacpp:requests_processing" and len(f.samples) == 1), None)
        if total is None or processing is None:
            return False
        busy = min(total, max(0, int(processing.samples[0].value)))
        lbl = dict(self.labels)
        out.append(target_slots().add({**lbl, "state": "busy"}, busy).add({**lbl, "state": "idle"}, total - busy))
        return True

    def _scrape_router(self, deadline: float, out: List[MetricFamily], signals: Signals) -> None:
        """A router: its model list, then each loaded model's metrics and slots (never another's)."""
        try:
            listed = parse_models(self.get("/models", deadline).json())
        except FetchError as e:
            self.count_error(e.reason)
            self.problem("warning", f"/models failed: {e}")
            return
        except ValueError as e:
            self.count_error("invalid")
            self.problem("warning", f"/models answered something unexpected: {e}")
            return
        kept = self.models_within_limits(sorted(listed), SERIES_PER_MODEL, "/models")
        models = {m: listed[m] for m in kept}
        for model in set(models) | set(self.models):
            was, now = self.models.get(model) == "loaded", models.get(model) == "loaded"
            if now and not was:
                self._loads[model] = self._loads.get(model, 0) + 1
            elif was and not now:
                self._unloads[model] = self._unloads.get(model, 0) + 1
        self.models = models
        # only the listed models' counts are kept (a model gone from the list has no series left to
        # count in): churning names cannot grow them past one list
        self._loads = {m: n for m, n in self._loads.items() if m in models}
        self._unloads = {m: n for m, n in self._unloads.items() if m in models}
        lbl = dict(self.labels)
        loaded_now = [m for m, state in sorted(models.items()) if state == "loaded"]
        flag = model_loaded()
        loads = counter("llm_agent_model_loads_total", "Times the agent saw each of a router's models become loaded.")
        unloads = counter("llm_agent_model_unloads_total", "Times the agent saw each of a router's models unloaded.")
        for model, state in sorted(models.items()):
            flag.add({**lbl, "model": model}, 1 if state == "loaded" else 0)
            loads.add({**lbl, "model": model}, self._loads.get(model, 0))
            unloads.add({**lbl, "model": model}, self._unloads.get(model, 0))
        info = target_info()
        for model in loaded_now:
            info.add({**lbl, "model": model, "build": self._props.build if self._props else ""}, 1)
        out.extend([flag, loads, unloads, info])
        enabled = metrics_enabled()
        path = self.target.metrics_path
        if len(loaded_now) > MAX_LOADED_SCRAPED:  # one request each: a router claiming thousands is not believed
            self.count_dropped({"loaded_models_limit": len(loaded_now) - MAX_LOADED_SCRAPED},
                               "loaded models not scraped", f"a router holds a few models in memory at once; "
                               f"the first {MAX_LOADED_SCRAPED} by name are scraped each cycle")
            loaded_now = loaded_now[:MAX_LOADED_SCRAPED]
        sources = [(f"{path}?model={quote(m, safe='')}", (("model", m),)) for m in loaded_now]
        try:
            out.extend(self.scrape_metrics(deadline, signals, sources))
            enabled.add(lbl, 1)
        except FetchError as e:  # a model unloaded between the list and its /metrics: next cycle
            self.count_error(e.reason)
            self.problem("warning", f"/metrics of a loaded model failed: {e}")
        out.append(enabled)
        slots = target_slots()
        for model in loaded_now:
            try:
                busy, idle = parse_slots(self.get(f"/slots?model={quote(model, safe='')}", deadline).json())
            except (FetchError, ValueError):
                continue
            slots.add({**lbl, "model": model, "state": "busy"}, busy).add({**lbl, "model": model, "state": "idle"}, idle)
        out.append(slots)

    def _refresh_props(self, deadline: float) -> None:
        now = self.clock()
        if self._props is None or now - self._props_at > PROPS_REFRESH:
            try:
                self._props = parse_props(self.get("/props", deadline).json())
                self._props_at = now
            except (FetchError, ValueError) as e:
                self.count_error(getattr(e, "reason", "invalid"))

    def _health_family(self, health: Health) -> MetricFamily:
        lbl = dict(self.labels)
        fam = target_ready()
        fam.add(lbl, 1 if health.state == "ok" else 0)
        if health.state == "loading":
            self.problem("warning", "the server is still loading its model", "wait; alert if it lasts")
        elif health.state == "error":
            self.problem("critical", f"/health reports an error: {health.message}", "read the server's log")
        return fam

    def _scrape_passthrough(self, deadline: float, out: List[MetricFamily], signals: Signals) -> None:
        enabled = metrics_enabled()
        try:
            out.extend(self.scrape_metrics(deadline, signals))
            enabled.add(dict(self.labels), 1)
        except FetchError as e:
            self.count_error(e.reason)
            if e.status == 501:
                enabled.add(dict(self.labels), 0)
                self.problem("warning", "llama-server was started without --metrics, so its own metrics are missing",
                             "add --metrics to the llama-server command line (or LLAMA_ARG_ENDPOINT_METRICS=1)")
            else:
                signals.metrics_timed_out = e.reason == "timeout"  # /health answers, the engine does not
                self.problem("warning", f"/metrics failed: {e}")
        out.append(enabled)

    def _scrape_slots(self, deadline: float, out: List[MetricFamily]) -> None:
        try:
            busy, idle = parse_slots(self.get("/slots", deadline).json())
        except FetchError as e:
            if e.status != 501:  # 501: slots endpoint disabled, nothing to report per cycle
                self.count_error(e.reason)
            else:
                self.problem("info", "the /slots endpoint is disabled, so busy/idle slots are not known",
                             "start llama-server with --slots")
            return
        except ValueError as e:
            self.count_error("invalid")
            self.problem("warning", f"/slots answered something unexpected: {e}")
            return
        lbl = dict(self.labels)
        out.append(target_slots()
                   .add({**lbl, "state": "busy"}, busy).add({**lbl, "state": "idle"}, idle))

    def _scrape_props(self, deadline: float, out: List[MetricFamily]) -> None:
        if self._props is None:
            return
        p, lbl = self._props, dict(self.labels)
        out.append(target_info()
                   .add({**lbl, "model": p.model, "build": p.build}, 1))
        if p.context_tokens is not None:
            out.append(gauge("llm_agent_target_context_tokens", "The target's context size per slot, in tokens.")
                       .add(lbl, p.context_tokens))



register_target_kind("llamacpp")(target_builder(LlamaCppCollector))
