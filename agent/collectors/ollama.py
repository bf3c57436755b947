"""Ollama: /api/version and /api/ps (Ollama serves no Prometheus metrics of its own).

The pure `parse_*` functions read bodies shaped as Ollama's API documentation gives them
(tests/fixtures/ollama); the collector does the I/O. Facts this relies on (docs/api.md):
- GET /api/version -> {"version": "0.5.1"}: the liveness check;
- GET /api/ps -> {"models": [{"name", "model", "size", "size_vram", "expires_at", "details":
  {"family", "parameter_size", "quantization_level", ...}}]}: the models loaded now, their
  size in memory, how much of it is on the GPU, and when they unload (RFC 3339, nanoseconds).
Looking never loads a model: nothing here asks for one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List, Optional

from ..model import MetricFamily, gauge
from ..timefmt import parse_rfc3339
from .http import FetchError
from .openmetrics import OpenMetricsCollector, Signals, model_loaded, target_builder, target_info, target_ready
from ..plugins import register_target_kind



@dataclass(frozen=True)
class LoadedModel:
    name: str
    size: float  # bytes in memory
    size_vram: float  # of which on the GPU
    expires_at: Optional[float]  # Unix time it unloads; None: kept loaded
    quantization: str
    parameters: str


def parse_version(data: Any) -> str:
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ValueError("expected {\"version\": \"...\"}")
    return data["version"]


def parse_time(text: Any) -> Optional[float]:
    """An RFC 3339 time as Ollama writes it (nanoseconds); None for none or the zero time."""
    return parse_rfc3339(text)


def parse_ps(data: Any) -> List[LoadedModel]:
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ValueError("expected {\"models\": [...]}")
    out = []
    for m in data.get("models") or []:
        if not isinstance(m, dict) or not isinstance(m.get("name") or m.get("model"), str):
            raise ValueError("expected each model to be an object with a name")
        details = m.get("details")
        if not isinstance(details, dict):
            details = {}
        size, vram = m.get("size", 0), m.get("size_vram", 0)
        out.append(LoadedModel(str(m.get("name") or m.get("model")),
                               float(size) if isinstance(size, (int, float)) else 0.0,
                               float(vram) if isinstance(vram, (int, float)) else 0.0,
                               parse_time(m.get("expires_at")), str(details.get("quantization_level", "")),
                               str(details.get("parameter_size", ""))))
    return out


class OllamaCollector(OpenMetricsCollector):
    """One `ollama serve` target."""

    kind = "ollama"
    foreign = False  # everything here is the agent's own families

    def scrape(self, deadline: float, out: List[MetricFamily], signals: Signals) -> bool:
        lbl = dict(self.labels)
        try:
            version = parse_version(self.get("/api/version", min(deadline, signals.health_deadline)).json())
        except FetchError as e:
            self.count_error(e.reason)
            self.down_problem(e)
            signals.health_timed_out = e.reason == "timeout"
            return False
        except ValueError as e:
            self.count_error("invalid")
            self.problem("warning", f"/api/version answered something unexpected: {e}")
            return False
        ready = target_ready()
        out.append(ready.add(lbl, 1))
        try:
            models = parse_ps(self.get("/api/ps", deadline).json())
        except FetchError as e:
            signals.metrics_timed_out = e.reason == "timeout"  # it answers /api/version, not this
            self.count_error(e.reason)
            self.problem("warning", f"/api/ps failed: {e}")
            return True
        except ValueError as e:
            self.count_error("invalid")
            self.problem("warning", f"/api/ps answered something unexpected: {e}")
            return True
        models = self._within_limits(models)
        now = time.time()  # expires_at is wall-clock time
        info = target_info()
        loaded = model_loaded()
        size = gauge("llm_agent_model_memory_bytes", "Memory a loaded model takes, and where (gpu or total).")
        expires = gauge("llm_agent_model_unload_seconds", "Seconds until the server unloads an idle model.")
        partly = []
        for m in models:
            info.add({**lbl, "model": m.name, "build": version}, 1)
            loaded.add({**lbl, "model": m.name}, 1)
            size.add({**lbl, "model": m.name, "where": "total"}, m.size)
            size.add({**lbl, "model": m.name, "where": "gpu"}, m.size_vram)
            if m.expires_at is not None:
                expires.add({**lbl, "model": m.name}, max(0.0, m.expires_at - now))
            if m.size and m.size_vram < m.size:
                partly.append(f"{m.name[:200]} ({m.size_vram / m.size:.0%} on the GPU)")
        if partly:  # one problem, a few names: the list is the server's to make as long as it likes
            self.problem("warning", f"{len(partly)} model(s) partly in CPU memory, running much slower: "
                                    + ", ".join(partly[:5]) + (" ..." if len(partly) > 5 else ""),
                         "a smaller quantisation, or fewer models loaded at once")
        if not models:
            info.add({**lbl, "model": "", "build": version}, 1)
        out.extend([info, loaded, size, expires])
        return True


    def _within_limits(self, models: List[LoadedModel]) -> List[LoadedModel]:
        kept = set(self.models_within_limits([m.name for m in models], SERIES_PER_MODEL, "/api/ps"))
        return [m for m in models if m.name in kept]


SERIES_PER_MODEL = 5  # target_info, model_loaded, memory total and gpu, unload seconds

register_target_kind("ollama")(target_builder(OllamaCollector))
