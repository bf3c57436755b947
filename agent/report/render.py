"""A report document (compute.Reporter.report) as text, Markdown, self-contained HTML with
inline SVG charts, or JSON. The formats say the same things; only the layout differs."""

from __future__ import annotations

import json
import math
import time
from html import escape
from typing import List, Optional, Sequence

from . import svg
from .compute import seconds_text

FORMATS = ("text", "md", "html", "json")


def _when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t is not None else "–"


def _pct(v: Optional[float], digits: int = 3) -> str:
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def _num(v: Optional[float], digits: int = 1, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.{digits}f}{unit}"


_secs = seconds_text


def _ended(incident: dict) -> str:
    if incident["end"]:
        return _when(incident["end"])
    if incident.get("agent_stopped_at"):  # the agent never saw its end
        return f"open when the agent stopped at {_when(incident['agent_stopped_at'])}"
    return "still firing"


def _incident_summary(incident: dict) -> str:
    count = incident.get("count", 1)
    if count == 1:
        return incident["summary"]
    return f"{count} times in {_secs(incident['duration_seconds'])}" + (f": {incident['summary']}" if incident["summary"] else "")


def _change(c: Optional[dict]) -> str:
    if not c or c.get("ratio") is None:
        return ""
    return f" ({c['ratio'] * 100:+.0f}% on the previous period)"


def tables(doc: dict) -> List[dict]:
    """The report as titled tables (header row, rows): what every text format lays out."""
    cur = doc["cost"].get("currency", "")
    judged = [t for t in doc["targets"] if not t.get("short_lived")]
    short = [t for t in doc["targets"] if t.get("short_lived")]
    out = [
        {"title": "Availability (down time and failed probes count against it)",
         "head": ["server", "availability", "objective", "down", "probes failing", "restarts", "TTFT p50", "TTFT p95"],
         "rows": [[t["server"], _pct(t["availability"]) + ("" if t["met"] is not False else " (missed)"), _pct(t["slo"], 2),
                   _secs(t.get("down_seconds", t["downtime_seconds"])), _secs(t.get("probe_failed_seconds", 0.0)),
                   str(t.get("restarts", 0)), _secs(t.get("ttft_p50")), _secs(t.get("ttft_p95"))] for t in judged]},
        {"title": "Per day", "head": ["day", "tokens", "TTFT p50", "TTFT p95", f"cost {cur}".strip()],
         "rows": [[d["date"], _num(d["tokens"], 0), _secs(d["ttft_p50"]), _secs(d["ttft_p95"]), _num(d["cost"], 2)]
                  for d in doc["days"]]},
        {"title": "GPUs", "head": ["gpu", "model", "util avg", "util max", "temp avg", "temp max", "power avg", "power max"],
         "rows": [[g["gpu"], g["model"], _num(g["util_avg"], unit="%"), _num(g["util_max"], 0, "%"),
                   _num(g["temp_avg"], unit=" °C"), _num(g["temp_max"], 0, " °C"), _num(g["power_avg"], 0, " W"),
                   _num(g["power_max"], 0, " W")] for g in doc["gpus"]]},
        {"title": "Incidents", "head": ["alert", "severity", "started", "ended", "lasted", "summary"],
         "rows": [[i["alertname"] + (f" x{i['count']}" if i.get("count", 1) > 1 else ""), i["severity"], _when(i["start"]),
                   _ended(i), _secs(i["duration_seconds"]), _incident_summary(i)] for i in doc["incidents"]]},
    ]
    if not doc["gpus"]:  # a host without GPUs: no empty section for them
        out = [t for t in out if t["title"] != "GPUs"]
    if short:
        out.insert(1, {"title": f"Short-lived servers (seen for under {doc.get('short_lived_share', 0.05) * 100:g}% of "
                                "the period; not judged against the objective)",
                       "head": ["server", "seen for", "availability while seen"],
                       "rows": [[t["server"], _secs(t["covered_seconds"]), _pct(t["availability"])] for t in short]})
    if doc.get("energy"):
        out.append({"title": "Energy per model", "head": ["day", "server", "model", "energy", "tokens", "Wh per 1K tokens"],
                    "rows": [[e["date"], e["server"], e["model"] or "?", _num(e["wh"], 1, " Wh"), _num(e["tokens"], 0),
                              _num(e["wh_per_1k_tokens"], 3)] for e in doc["energy"]]})
    perf = doc.get("performance") or {}
    if perf.get("figures"):
        out.append({"title": "Performance (benchmarks)", "head": ["server", "figure", "start", "end", "baseline", "vs baseline"],
                    "rows": [[f["server"], f["figure"], _num(f["start"], 3), _num(f["end"], 3), _num(f["baseline"], 3),
                              _vs(f)] for f in perf["figures"]]})
    if perf.get("regressions"):
        out.append({"title": "Regressions", "head": ["server", "figure", "worst slowdown", "changed since the baseline"],
                    "rows": [[r["server"], r["figure"], f"{r['slowdown']:.2f}x", r["changed"]] for r in perf["regressions"]]})
    if perf.get("quality"):
        out.append({"title": "Quality set", "head": ["server", "score (last)", "average", "lowest", "baseline"],
                    "rows": [[q["server"], _pct(q.get("last"), 1), _pct(q.get("avg"), 1), _pct(q.get("min"), 1),
                              _pct(q.get("baseline"), 1)] for q in perf["quality"]]})
    return out


def _vs(figure: dict) -> str:
    """The end figure against the baseline, signed so that + is better."""
    end, base = figure.get("end"), figure.get("baseline")
    if not end or not base:
        return "-"
    change = end / base - 1
    return f"{(-change if figure['figure'].endswith('_seconds') else change) * 100:+.1f}%"


def summary_lines(doc: dict) -> List[str]:
    ch = doc.get("changes", {})
    cost = doc["cost"]
    tokens = sum(d["tokens"] for d in doc["days"] if d["tokens"] is not None)
    verdict = doc.get("verdict") or {"status": "ok", "alerts": {}}
    firing = ", ".join(f"{n} {sev}" for sev, n in sorted(verdict["alerts"].items()))
    lines = [f"status at the end: {verdict['status'].upper()}" + (f" ({firing} alert(s) still firing)" if firing else ""),
             f"{len(doc['incidents'])} incident(s); MTTR {_secs(doc['mttr_seconds'])}; "
             f"time from condition to firing {_secs(doc['time_to_page_seconds'])}{_change(ch.get('incidents'))}",
             f"{_num(tokens, 0)} tokens generated{_change(ch.get('tokens'))}"]
    if cost:
        per_1k = f", {cost['per_1k_tokens']:.4f} per 1K tokens" if cost.get("per_1k_tokens") else ""
        lines.append(f"cost {_num(cost['total'], 2)} {cost['currency']} ({_num(cost['per_day'], 2)} a day{per_1k})"
                     f"{_change(ch.get('cost'))}")
        if cost.get("month_projection") is not None:
            budget = f" against a budget of {_num(cost['month_budget'], 2)}" if cost.get("month_budget") is not None else ""
            lines.append(f"this month projected at {_num(cost['month_projection'], 2)} {cost['currency']}{budget}")
    return lines


def _title(doc: dict) -> str:
    return f"llm-agent report for {doc['host']}: {_when(doc['from'])} to {_when(doc['to'])} ({doc['timezone']})"


def text(doc: dict) -> str:
    out = [_title(doc), ""] + [f"  {line}" for line in summary_lines(doc)]
    for table in tables(doc):
        out += ["", table["title"]]
        rows = [table["head"]] + table["rows"]
        if not table["rows"]:
            out.append("  none")
            continue
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(table["head"]))]
        for row in rows:
            out.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    out += ["", "Recommendations"] + [f"  - {r}" for r in doc["recommendations"] or ["none: nothing in the data calls for one"]]
    return "\n".join(out) + "\n"


def markdown(doc: dict) -> str:
    out = [f"# {_title(doc)}", ""] + [f"- {line}" for line in summary_lines(doc)]
    for table in tables(doc):
        out += ["", f"## {table['title']}", ""]
        if not table["rows"]:
            out.append("None.")
            continue
        out.append("| " + " | ".join(table["head"]) + " |")
        out.append("|" + "---|" * len(table["head"]))
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
    out += ["", "## Recommendations", ""] + [f"- {r}" for r in doc["recommendations"] or ["None: nothing in the data calls for one."]]
    return "\n".join(out) + "\n"


def charts(doc: dict) -> List[str]:
    days = [d["date"][5:] for d in doc["days"]]
    out = []
    if any(d["tokens"] for d in doc["days"]):
        out.append(svg.bars(days, [d["tokens"] for d in doc["days"]], "Tokens generated per day (tokens)"))
    if any(d["ttft_p95"] is not None for d in doc["days"]):
        out.append(svg.lines(days, [("p50", [d["ttft_p50"] for d in doc["days"]]),
                                    ("p95", [d["ttft_p95"] for d in doc["days"]])],
                             "Probe time to first token per day, p50 and p95 (seconds)"))
    if any(d["cost"] for d in doc["days"]):
        out.append(svg.bars(days, [d["cost"] for d in doc["days"]], f"Cost per day ({doc['cost'].get('currency', '')})"))
    judged = [t for t in doc["targets"] if not t.get("short_lived")]
    if judged:
        floor = min([t["availability"] * 100 for t in judged if t["availability"] is not None] + [t["slo"] * 100 for t in judged])
        out.append(svg.hbars([t["server"] for t in judged],
                             [None if t["availability"] is None else t["availability"] * 100 for t in judged],
                             "Availability per server over the period (%)", " %", lo=max(0.0, floor - 1), hi=100.0))
    return out


_CSS = ("body{font:15px/1.45 system-ui,sans-serif;max-width:960px;margin:24px auto;padding:0 16px;color:#1d1f23}"
        "table{border-collapse:collapse;width:100%;margin:8px 0 20px}td,th{border-bottom:1px solid #ddd;padding:4px 8px;"
        "text-align:left;font-variant-numeric:tabular-nums}th{background:#f3f4f6}h1{font-size:1.35em}h2{font-size:1.1em;"
        "margin-top:28px}.missed{color:#c53030;font-weight:600}figure{margin:12px 0}.wide{overflow-x:auto}")


def _td(text: str) -> str:
    missed = ' class="missed"' if "(missed)" in text else ""
    return f"<td{missed}>{escape(text)}</td>"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def html(doc: dict) -> str:
    out = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
           f"<title>{escape(_title(doc))}</title><style>{_CSS}</style></head><body>",
           f"<h1>{escape(_title(doc))}</h1><ul>" + "".join(f"<li>{escape(s)}</li>" for s in summary_lines(doc)) + "</ul>"]
    out += [f"<figure>{chart}</figure>" for chart in charts(doc)]
    for table in tables(doc):
        out.append(f"<h2>{escape(table['title'])}</h2>")
        if not table["rows"]:
            out.append("<p>None.</p>")
            continue
        # a wide table scrolls on its own on a phone: the page never does
        out.append("<div class=\"wide\"><table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in table["head"]) + "</tr>")
        for row in table["rows"]:
            out.append("<tr>" + "".join(_td(str(c)) for c in row) + "</tr>")
        out.append("</table></div>")
    recs: Sequence[str] = doc["recommendations"] or ["None: nothing in the data calls for one."]
    out.append("<h2>Recommendations</h2><ul>" + "".join(f"<li>{escape(r)}</li>" for r in recs) + "</ul>")
    out.append(f"<p style=\"color:#666\">Generated by llm-agent at {escape(_when(doc['generated']))}.</p></body></html>")
    return "\n".join(out) + "\n"


def render(doc: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=1, default=str) + "\n"
    return {"text": text, "md": markdown, "html": html}[fmt](doc)
