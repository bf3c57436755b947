"""A report's figures, from the history file: one plain dict (the JSON format; the text,
Markdown and HTML formats render it).

Availability per target comes from the 1-minute rollups (1-hour ones past their retention):
a bucket counts as the share of its samples in which the server was up, and as nothing when
its probe failed in it; downtime is the rest of the covered time. The other figures are PromQL
over the same store (the agent's own engine): per-day TTFT quantiles from the probe's
histogram, tokens from the engine-neutral tokens/s gauge, GPU summaries with the rollups'
max where a peak is asked for. Incidents pair each alert's firing with its resolve in the
alert history; MTTR is their mean duration, time to page the mean time from pending to firing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..tsdb.query import Querier, QueryError
from ..verdict import judge
from ..tsdb.store import HistoryStore
from ..tsdb.tiers import HOUR, MINUTE, RESOLUTION

DAY = 86400.0
STOPPED_AFTER = 120.0  # a history ending this long before the period's end: the agent was stopped
FLAP_GAP = 600.0  # incidents of one alert this close are one flapping incident
SHORT_LIVED = 0.05  # servers seen for less of the period than this are listed apart, never judged


@dataclass(frozen=True)
class Period:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def previous(self) -> "Period":
        return Period(self.start - self.seconds, self.start)


def local_midnights(period: Period) -> List[float]:
    """The local midnights that start each day overlapping the period (the host's time zone)."""
    out = []
    t = time.localtime(period.start)
    day = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    while day < period.end:
        out.append(day)
        t = time.localtime(day + 36 * 3600)  # the next day, whatever DST does to its length
        day = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    return out


def _vector(result: dict) -> Iterator[Tuple[Dict[str, str], float]]:
    """A query result's (labels, value) pairs, NaN left out."""
    for r in result["result"] if result["resultType"] == "vector" else []:
        v = float(r["value"][1])
        if not math.isnan(v):
            yield r["metric"], v


def _values(result: dict, key: str = "") -> Dict[str, float]:
    return {(labels.get(key, "") if key else ""): v for labels, v in _vector(result)}


def _by_model(result: dict) -> Dict[Tuple[str, str], float]:
    return {(labels.get("server", ""), labels.get("model", "")): v for labels, v in _vector(result)}


def against(t: dict) -> str:
    """What counted against a server's availability, each in a unit that fits its size."""
    parts = [f"down {seconds_text(t['down_seconds'])}"] if t.get("down_seconds") else []
    if t.get("probe_failed_seconds"):
        parts.append(f"probes failing {seconds_text(t['probe_failed_seconds'])} while it was up")
    return ", ".join(parts) or "nothing"


def fold_flaps(incidents: List[dict]) -> List[dict]:
    """Consecutive incidents of one alert (the same labels) starting within FLAP_GAP of the last
    one's end, folded into one row: the first start, the last end, how many times, the first
    summary that says something. Sorted by start."""
    rows: List[dict] = []
    last_of: Dict[str, dict] = {}
    for i in incidents:
        key = json.dumps(i["labels"], sort_keys=True)
        row = last_of.get(key)
        if row is not None and row["end"] is not None and i["start"] - row["end"] <= FLAP_GAP:
            row["count"] += 1
            row["end"], row["agent_stopped_at"] = i["end"], i["agent_stopped_at"]
            row["summary"] = row["summary"] or i["summary"]
            row["duration_seconds"] = i["start"] + i["duration_seconds"] - row["start"]
            continue
        row = dict(i, count=1)
        last_of[key] = row
        rows.append(row)
    return rows


def seconds_text(v: Optional[float]) -> str:
    """350 ms, 27.7 s, 12 min, 3.5 h: a unit that makes sense for the amount, the same in the
    report's sentences and its tables."""
    if v is None:
        return "–"
    if v == 0:
        return "0 s"
    if v < 1:
        return f"{v * 1000:.0f} ms"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.0f} min"
    return f"{v / 3600:.1f} h"


class Reporter:
    def __init__(self, store: HistoryStore, slo_availability: float = 0.995, slo_ttft: float = 1.0,
                 hostname: str = "", clock=time.time, short_lived: float = SHORT_LIVED):
        self.store = store
        self.querier = Querier(store, clock, max_samples=5_000_000, timeout=60)
        self.slo = slo_availability
        self.slo_ttft = slo_ttft
        self.hostname = hostname
        self.clock = clock
        self.short_lived = short_lived
        self._tier: Optional[int] = None

    def _q(self, expr: str, at: float, key: str = "") -> Dict[str, float]:
        try:
            return _values(self.querier.instant(expr, at, self._tier)[0], key)
        except QueryError:
            return {}

    def report(self, period: Period) -> dict:
        # a period of days reads the 1-hour rollups: the figures are per day or per period, and
        # minutes would be 60 times the samples for the same numbers (availability keeps minutes)
        self._tier = HOUR if period.seconds >= 2 * DAY else None
        figures = self.figures(period)
        previous = self.headline(period.previous())
        doc = {"host": self.hostname, "from": period.start, "to": period.end, "generated": self.clock(),
               "short_lived_share": self.short_lived,
               "timezone": time.strftime("%Z", time.localtime(period.end)), **figures, "previous": previous}
        doc["changes"] = self._changes(self._headline_of(figures), previous)
        doc["recommendations"] = self.recommendations(doc)
        # the verdict at the period's end, as the console and /healthz judge it (verdict.py), from
        # the alerts still firing then (silences are not in the history: each counts)
        # (an incident open when the agent stopped is not known to fire still: it does not count)
        still = [{"labels": i["labels"], "summary": i["summary"]} for i in figures["incidents"]
                 if i["end"] is None and not i.get("agent_stopped_at")]
        doc["verdict"] = judge([], still).to_doc()
        return doc

    def figures(self, period: Period) -> dict:
        span = f"{max(int(period.seconds), 60)}s"
        targets = self.availability(period)
        restarts = self._q(f"increase(llm_agent_target_restarts_total[{span}])", period.end, "server")
        ttft = {q: self._q(f"histogram_quantile({q}, sum by (server, le) (increase(llm_agent_probe_ttft_seconds_bucket"
                           f"[{span}])))", period.end, "server") for q in ("0.5", "0.95")}
        for t in targets:
            t["restarts"] = round(restarts.get(t["server"], 0.0))
            t["ttft_p50"], t["ttft_p95"] = ttft["0.5"].get(t["server"]), ttft["0.95"].get(t["server"])
        incidents, mttr, to_page = self.incidents(period)
        return {"targets": targets, "days": self.days(period), "gpus": self.gpus(period), "incidents": incidents,
                "mttr_seconds": mttr, "time_to_page_seconds": to_page, "cost": self.cost(period),
                "performance": self.performance(period), "energy": self.energy(period)}

    # -- performance: benchmarks against their baseline, quality ----------------------------------

    def performance(self, period: Period) -> dict:
        """Each benchmark figure at the period's start and end against its baseline, the
        figures that regressed during it (and what had changed), the quality score."""
        span = f"{max(int(period.seconds), 60)}s"

        def by(expr: str, at: float, *keys: str) -> Dict[tuple, Tuple[float, dict]]:
            try:
                result = self.querier.instant(expr, at, self._tier)[0]
            except QueryError:
                return {}
            out = {}
            for r in result["result"] if result["resultType"] == "vector" else []:
                v = float(r["value"][1])
                if not math.isnan(v):
                    out[tuple(r["metric"].get(k, "") for k in keys)] = (v, r["metric"])
            return out

        end = by(f"last_over_time(llm_agent_bench_result[{span}])", period.end, "server", "figure")
        # the period's first benchmark: the last one within its first 6 hours (the schedule)
        start = by("last_over_time(llm_agent_bench_result[6h])", min(period.start + 6 * 3600, period.end), "server", "figure")
        baseline = by(f"last_over_time(llm_agent_bench_baseline[{span}])", period.end, "server", "figure")
        figures = [{"server": k[0], "figure": k[1], "start": start.get(k, (None,))[0], "end": v,
                    "baseline": baseline.get(k, (None,))[0]} for k, (v, _) in sorted(end.items())]
        worst = by(f"max by (server, figure, changed) (max_over_time(llm_agent_bench_slowdown_ratio[{span}])) > 1.15",
                   period.end, "server", "figure", "changed")
        regressions = [{"server": k[0], "figure": k[1], "changed": k[2], "slowdown": v}
                       for k, (v, _) in sorted(worst.items())]
        quality: List[dict] = []
        for stat, expr in (("avg", "avg_over_time"), ("min", "min_over_time"), ("last", "last_over_time")):
            for k, (v, _) in by(f"{expr}(llm_agent_quality_score[{span}])", period.end, "server").items():
                row = next((q for q in quality if q["server"] == k[0]), None)
                if row is None:
                    row = {"server": k[0]}
                    quality.append(row)
                row[stat] = v
        base = by(f"last_over_time(llm_agent_quality_baseline[{span}])", period.end, "server")
        for row in quality:
            row["baseline"] = base.get((row["server"],), (None,))[0]
        return {"figures": figures, "regressions": regressions, "quality": sorted(quality, key=lambda q: q["server"])}

    # -- availability ------------------------------------------------------------------------------

    def availability(self, period: Period) -> List[dict]:
        retention = self.store.retention
        tier = MINUTE if period.start >= self.clock() - retention.minute else HOUR
        reader = self.store.reader()
        up = {i.as_dict.get("server", ""): i for i in reader.find("llm_agent_target_up", (), period.start, period.end)}
        probes = {i.as_dict.get("server", ""): i for i in reader.find("llm_agent_probe_success", (), period.start, period.end)}
        ids = [i.id for i in up.values()] + [i.id for i in probes.values()]
        rollups = reader.rollups(ids, tier, period.start, period.end)
        bucket = RESOLUTION[tier]
        out = []
        for server, info in sorted(up.items()):
            probe_ok = {p[0] // bucket: p[3] / p[4] for p in rollups.get(probes[server].id, []) if p[4]} \
                if server in probes else {}
            covered = available = down = 0.0
            for p in rollups[info.id]:
                up_share = p[3] / p[4] if p[4] else 0.0  # the share of the bucket's samples in which it was up
                share = min(up_share, probe_ok.get(p[0] // bucket, 1.0))  # less the share its probe was failing
                covered += bucket
                available += share * bucket
                down += (1 - up_share) * bucket
            ratio = available / covered if covered else None
            short = covered < self.short_lived * period.seconds  # a process seen for a moment: listed, not judged
            out.append({"server": server, "slo": self.slo, "availability": ratio, "covered_seconds": covered,
                        "downtime_seconds": covered - available if covered else 0.0,
                        # what counted against it: the server down, then its probes failing while it was up
                        "down_seconds": down, "probe_failed_seconds": max(0.0, covered - available - down),
                        "short_lived": short, "met": None if ratio is None or short else ratio >= self.slo})
        return out

    # -- per day -----------------------------------------------------------------------------------------

    def days(self, period: Period) -> List[dict]:
        """Per local day: tokens, probe TTFT, cost."""
        days = self._day_spans(period)
        figures = {"tps": "sum(avg_over_time(llm_agent_generation_tokens_per_second[{span}]))",
                   "p50": "histogram_quantile(0.5, sum by (le) (increase(llm_agent_probe_ttft_seconds_bucket[{span}])))",
                   "p95": "histogram_quantile(0.95, sum by (le) (increase(llm_agent_probe_ttft_seconds_bucket[{span}])))",
                   "cost": "sum(avg_over_time(llm_agent_cost_per_hour[{span}]))"}
        self._per_day(days, figures)
        for day in days:
            day.update({key: _values(day[key]).get("") for key in figures})
        return [{"date": d["date"], "start": d["start"], "end": d["end"],
                 "tokens": d["tps"] * (d["end"] - d["start"]) if d["tps"] is not None else None,
                 "ttft_p50": d["p50"], "ttft_p95": d["p95"],
                 "cost": d["cost"] * (d["end"] - d["start"]) / 3600 if d["cost"] is not None else None} for d in days]

    def energy(self, period: Period) -> List[dict]:
        """Per local day and model: the energy the GPUs drew for it, the tokens it generated,
        and Wh per 1,000 tokens (llm_agent_energy_joules_total over the neutral token counter)."""
        days = self._day_spans(period)
        self._per_day(days, {"joules": "sum by (server, model) (increase(llm_agent_energy_joules_total[{span}]))",
                             "tokens": "sum by (server, model) (increase(llm_agent_generation_tokens_total[{span}]))"})
        rows = []
        for day in days:
            tokens = _by_model(day["tokens"])
            for (server, model), joules in sorted(_by_model(day["joules"]).items()):
                made = tokens.get((server, model))
                rows.append({"date": day["date"], "server": server, "model": model, "wh": joules / 3600, "tokens": made,
                             "wh_per_1k_tokens": joules / 3600 / made * 1000 if made else None})
        return rows

    def _day_spans(self, period: Period) -> List[Dict[str, Any]]:
        """The period cut at local midnights: each day's date, start and end."""
        days: List[Dict[str, Any]] = []
        starts = local_midnights(period)
        for start, following in zip(starts, starts[1:] + [math.inf]):
            end, begin = min(following, period.end), max(start, period.start)
            if end > begin:
                days.append({"date": time.strftime("%Y-%m-%d", time.localtime(start)), "start": begin, "end": end})
        return days

    def _per_day(self, days: List[Dict[str, Any]], figures: Dict[str, str]) -> None:
        """Each figure's query result at each day's end over the day (`{span}`), as day[key]. Days
        of one length (all of them, but for DST and the period's ends) are evaluated together:
        each figure's samples are loaded once, not once a day."""
        by_length: Dict[int, List[dict]] = {}
        for day in days:
            by_length.setdefault(int(day["end"] - day["start"]), []).append(day)
        for seconds, group in by_length.items():
            for key, expr in figures.items():
                try:
                    results = self.querier.instant_at(expr.format(span=f"{seconds}s"), [d["end"] for d in group],
                                                      self._tier)
                except QueryError:
                    results = [{"resultType": "vector", "result": []}] * len(group)
                for day, result in zip(group, results):
                    day[key] = result

    # -- GPUs ----------------------------------------------------------------------------------------------

    def gpus(self, period: Period) -> List[dict]:
        span = f"{max(int(period.seconds), 60)}s"
        figures = {
            "util_avg": f"avg_over_time(DCGM_FI_DEV_GPU_UTIL[{span}])",
            "util_max": f"max_over_time(DCGM_FI_DEV_GPU_UTIL[{span}])",
            "util_peak_hour": f"max_over_time(avg_over_time(DCGM_FI_DEV_GPU_UTIL[1h])[{span}:1h])",
            "temp_avg": f"avg_over_time(DCGM_FI_DEV_GPU_TEMP[{span}])",
            "temp_max": f"max_over_time(DCGM_FI_DEV_GPU_TEMP[{span}])",
            "power_avg": f"avg_over_time(DCGM_FI_DEV_POWER_USAGE[{span}])",
            "power_max": f"max_over_time(DCGM_FI_DEV_POWER_USAGE[{span}])",
        }
        values = {key: self._q(expr, period.end, "gpu") for key, expr in figures.items()}
        models = {i.as_dict.get("gpu", ""): i.as_dict.get("modelName", "")
                  for i in self.store.reader().find("DCGM_FI_DEV_GPU_UTIL", (), period.start, period.end)}
        gpus = sorted(set().union(*values.values()), key=lambda g: (len(g), g))
        return [{"gpu": g, "model": models.get(g, ""), **{k: values[k].get(g) for k in figures}} for g in gpus]

    # -- incidents -----------------------------------------------------------------------------------------

    def incidents(self, period: Period) -> Tuple[List[dict], Optional[float], Optional[float]]:
        events = self.store.reader().alert_events(period.start - 30 * DAY, period.end)
        pending: Dict[str, float] = {}
        open_: Dict[str, dict] = {}
        done: List[dict] = []
        waits: List[float] = []
        for e in events:
            fp = e.fingerprint
            if e.state == "pending":
                pending[fp] = e.at
            elif e.state == "firing" and fp not in open_:
                began = pending.pop(fp, e.at)
                open_[fp] = {"alertname": e.labels.get("alertname", ""), "severity": e.labels.get("severity", ""),
                             "labels": e.labels, "summary": e.annotations.get("summary", ""), "start": e.at,
                             "condition_since": began, "end": None}
                if e.at >= period.start:
                    waits.append(e.at - began)
            elif e.state in ("resolved", "inactive"):
                pending.pop(fp, None)
                incident = open_.pop(fp, None)
                if incident is not None:
                    incident["end"] = e.at
                    done.append(incident)
        done.extend(open_.values())
        shown = [i for i in done if (i["end"] is None or i["end"] >= period.start) and i["start"] <= period.end]
        # an incident with no end while the agent was stopped (its history ends before the period
        # does): its end is unknown, said as such, and its length counted to the agent's stop only
        stopped = self.store.last_written if self.store.last_written < period.end - STOPPED_AFTER else None
        for i in shown:
            i["agent_stopped_at"] = stopped if i["end"] is None and stopped is not None and stopped >= i["start"] else None
            last = i["end"] if i["end"] is not None else i["agent_stopped_at"] or period.end
            i["duration_seconds"] = last - i["start"]
        resolved = [i["duration_seconds"] for i in shown if i["end"] is not None]  # each flap its own repair
        shown = fold_flaps(sorted(shown, key=lambda i: i["start"]))
        mttr = sum(resolved) / len(resolved) if resolved else None
        to_page = sum(waits) / len(waits) if waits else None
        return shown, mttr, to_page

    # -- cost ----------------------------------------------------------------------------------------------

    def cost(self, period: Period) -> dict:
        span = f"{max(int(period.seconds), 60)}s"
        per_hour = self._q(f"avg_over_time(llm_agent_cost_per_hour[{span}])", period.end, "currency")
        if not per_hour:
            return {}
        currency, rate = next(iter(per_hour.items()))
        total = rate * period.seconds / 3600
        tps = self._q(f"sum(avg_over_time(llm_agent_generation_tokens_per_second[{span}]))", period.end)
        tokens = tps.get("", 0.0) * period.seconds
        projection = self._q("last_over_time(llm_agent_cost_month_projection[1h])", period.end)
        budget = self._q("last_over_time(llm_agent_cost_month_budget[1h])", period.end)
        return {"currency": currency, "total": total, "per_day": total / (period.seconds / DAY),
                "per_1k_tokens": total / tokens * 1000 if tokens > 0 else None,
                "month_projection": projection.get(""), "month_budget": budget.get(""),
                "over_budget": (projection.get("", 0.0) > budget[""]) if "" in budget else None}

    # -- the previous period and what follows ------------------------------------------------------------

    def headline(self, period: Period) -> dict:
        """The few figures compared with the previous period."""
        if period.end <= self.clock() - max(self.store.retention.minute, self.store.retention.hour):
            return {}
        figures = {"targets": self.availability(period), "days": self.days(period), "gpus": self.gpus(period),
                   "incidents": self.incidents(period)[0], "cost": self.cost(period)}
        if not any(t["covered_seconds"] for t in figures["targets"]) and not figures["gpus"]:
            return {}  # nothing stored then: nothing to compare with
        return self._headline_of(figures)

    @staticmethod
    def _headline_of(figures: dict) -> dict:
        tokens = [d["tokens"] for d in figures["days"] if d.get("tokens") is not None]
        utils = [g["util_avg"] for g in figures["gpus"] if g.get("util_avg") is not None]
        return {"availability": {t["server"]: t["availability"] for t in figures["targets"]},
                "tokens": sum(tokens) if tokens else None,
                "gpu_util_avg": sum(utils) / len(utils) if utils else None,
                "incidents": len(figures["incidents"]), "cost": figures["cost"].get("total")}

    @staticmethod
    def _changes(now: dict, before: dict) -> dict:
        if not before:
            return {}
        out: Dict[str, object] = {}
        for key in ("tokens", "gpu_util_avg", "incidents", "cost"):
            a, b = now.get(key), before.get(key)
            if a is not None and b is not None:
                out[key] = {"now": a, "before": b, "ratio": (a / b - 1) if b else None}
        out["availability"] = {s: {"now": v, "before": before["availability"].get(s)}
                               for s, v in now["availability"].items() if before["availability"].get(s) is not None}
        return out

    def recommendations(self, doc: dict) -> List[str]:
        out = []
        for t in doc["targets"]:
            if t["met"] is False:
                out.append(f"{t['server']} was available {t['availability'] * 100:.3f}%, under its {t['slo'] * 100:g}% "
                           f"objective: {against(t)}. See the Incidents table.")
            if t.get("restarts", 0) >= 3:
                out.append(f"{t['server']} restarted {t['restarts']} times: look for crashes or OOM kills in its journal "
                           f"(journalctl -u, dmesg).")
            if t.get("ttft_p95") is not None and t["ttft_p95"] > self.slo_ttft:
                out.append(f"{t['server']}'s probe time to first token was {t['ttft_p95']:.2f} s at p95, over the "
                           f"{self.slo_ttft:g} s objective: check load, context size and GPU throttling.")
        for g in doc["gpus"]:
            peak = g.get("util_peak_hour")
            if peak is not None and peak < 30:
                out.append(f"GPU {g['gpu']} stayed under 30% busy in every hour (peak hour {peak:.0f}%): its model "
                           "could share a GPU, or the host be smaller.")
            if g.get("temp_max") is not None and g["temp_max"] >= 85:
                out.append(f"GPU {g['gpu']} reached {g['temp_max']:.0f} °C: check airflow and fans before it throttles.")
        cost = doc["cost"]
        if cost.get("over_budget"):
            out.append(f"This month is projected at {cost['month_projection']:.2f} {cost['currency']}, over the "
                       f"{cost['month_budget']:.2f} budget.")
        return out

