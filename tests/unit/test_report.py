"""Reports on a known scenario, written into a history file through a fast-forward clock:
three days at one sample a minute, with a 12-minute outage (and its alert), a thermal spike,
an idle GPU, restarts, a slower third day and a cost over budget; every figure is checked
against the value worked out by hand. The renderers are checked for the same figures, the
HTML for being one self-contained file, and the CLI end to end."""

import json
import os
import re
import time

import pytest

from agent.model import COUNTER, GAUGE, MetricFamily, Sample, Snapshot
from agent.report.compute import Period, Reporter
from agent.report.render import render
from agent.tsdb.store import AlertEvent, HistoryStore

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DAY = 86400
OUTAGE = (T0 + DAY + 10 * 3600, T0 + DAY + 10 * 3600 + 12 * 60)  # day 2, 10:00 to 10:12
SPIKE = (T0 + DAY + 15 * 3600, T0 + DAY + 15 * 3600 + 5 * 60)  # day 2, 15:00 to 15:05: 91 °C
BUCKETS = ("0.1", "0.25", "0.5", "1", "+Inf")


pytestmark = pytest.mark.usefixtures("utc")  # local days and times are UTC days here


def g(name, value, kind=GAUGE, **labels):
    return MetricFamily(name, kind, name, [Sample(name, tuple(labels.items()), float(value))])


def scenario(path):
    clock = [T0]
    store = HistoryStore(path, clock=lambda: clock[0])
    counts = dict.fromkeys(BUCKETS, 0.0)
    restarts = tokens = joules = 0
    for i in range(3 * 1440):
        t = T0 + 30 + 60 * i  # mid-minute: each minute bucket holds one sample, each day 1,440
        down = OUTAGE[0] <= t < OUTAGE[1]
        if not down:
            ttft = 0.8 if t >= T0 + 2 * DAY else 0.2
            for le in BUCKETS:
                counts[le] += 1.0 if le == "+Inf" or ttft <= float(le) else 0.0
        if i in (100, 2000, 3000):
            restarts += 1
        fams = [g("llm_agent_target_up", 0 if down else 1, server="llama"),
                g("llm_agent_probe_success", 0 if down else 1, server="llama"),
                g("llm_agent_generation_tokens_per_second", 0 if down else 50, server="llama"),
                g("llm_agent_target_restarts_total", restarts, COUNTER, server="llama"),
                MetricFamily("llm_agent_probe_ttft_seconds", "histogram", "ttft",
                             [Sample("llm_agent_probe_ttft_seconds_bucket", (("server", "llama"), ("le", le)), counts[le])
                              for le in BUCKETS]),
                MetricFamily("DCGM_FI_DEV_GPU_UTIL", GAUGE, "u", [Sample("DCGM_FI_DEV_GPU_UTIL", (("gpu", "0"),), 80.0),
                                                                   Sample("DCGM_FI_DEV_GPU_UTIL", (("gpu", "1"),), 10.0)]),
                g("DCGM_FI_DEV_GPU_TEMP", 91 if SPIKE[0] <= t < SPIKE[1] else 60, gpu="0"),
                g("DCGM_FI_DEV_POWER_USAGE", 300, gpu="0"),
                g("llm_agent_cost_per_hour", 4, currency="USD"),
                g("llm_agent_cost_month_projection", 2880, currency="USD"),
                g("llm_agent_cost_month_budget", 2000, currency="USD"),
                # 50 tokens/s at 2 J a token while up (10 J a token on day 3), the counters from the start
                g("llm_agent_energy_joules_total", joules, COUNTER, server="llama", model="tiny"),
                g("llm_agent_generation_tokens_total", tokens, COUNTER, server="llama", engine="llamacpp", model="tiny")]
        if not down:
            tokens += 50 * 60
            joules += 50 * 60 * (10 if t >= T0 + 2 * DAY else 2)
        later = t >= T0 + 2 * DAY  # day 3: a new driver, 20% slower, one quality case lost
        fams += [g("llm_agent_bench_result", 40 if later else 50, server="llama", figure="generation_tokens_per_second_c1"),
                 g("llm_agent_bench_baseline", 50, server="llama", figure="generation_tokens_per_second_c1"),
                 g("llm_agent_quality_score", 2 / 3 if later else 1.0, server="llama"),
                 g("llm_agent_quality_baseline", 1.0, server="llama")]
        if later:
            fams.append(g("llm_agent_bench_slowdown_ratio", 1.25, server="llama", figure="generation_tokens_per_second_c1",
                          current="40", baseline="50", changed="driver 550.54.15 -> 560.35.03"))
        clock[0] = t
        store.append(Snapshot(t, tuple(fams)))
        store.maintain(t)
        store.settle()
    labels = {"alertname": "LlmTargetDown", "severity": "critical", "server": "llama"}
    store.record_alerts([AlertEvent(OUTAGE[0] + 30, "pending", labels, {"summary": "llama is down"}, 1, "fp"),
                         AlertEvent(OUTAGE[0] + 90, "firing", labels, {"summary": "llama is down"}, 1, "fp"),
                         AlertEvent(OUTAGE[1] + 30, "resolved", labels, {}, float("nan"), "fp")])
    clock[0] = T0 + 3 * DAY
    return store, clock


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    os.environ["TZ"] = "UTC"
    time.tzset()
    store, clock = scenario(str(tmp_path_factory.mktemp("report") / "history.db"))
    doc = Reporter(store, 0.999, 0.5, "gpu-box", clock=lambda: clock[0]).report(Period(T0, T0 + 3 * DAY))
    store.close()
    return doc


def test_availability_is_the_outage_worked_out_by_hand(report):
    (target,) = report["targets"]
    assert target["server"] == "llama"
    assert target["availability"] == pytest.approx(1 - 12 / (3 * 1440), abs=1e-12)
    assert target["downtime_seconds"] == pytest.approx(12 * 60)
    assert target["met"] is False  # 99.72% < 99.9%
    assert target["restarts"] == 3
    # probes in (0.1, 0.25] and in (0.5, 1]. A report of days reads 1-hour rollups, and increase()
    # counts from the first sample it reads: the first hour's last value, its 60 (fast) probes are
    # not an increase (extrapolation then scales every bucket alike, which a quantile ignores)
    fast, slow = 2 * 1440 - 12 - 60, 1440
    assert target["ttft_p95"] == pytest.approx(0.5 + 0.5 * (0.95 * (fast + slow) - fast) / slow)


def test_days_tokens_latency_and_cost(report):
    days = report["days"]
    assert [d["date"] for d in days] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert days[0]["tokens"] == pytest.approx(50 * DAY)
    assert days[1]["tokens"] == pytest.approx(50 * (DAY - 12 * 60))
    # every probe of days 1-2 in (0.1, 0.25], of day 3 in (0.5, 1]: histogram_quantile interpolates linearly
    assert days[0]["ttft_p50"] == pytest.approx(0.175) and days[0]["ttft_p95"] == pytest.approx(0.2425)
    assert days[2]["ttft_p50"] == pytest.approx(0.75) and days[2]["ttft_p95"] == pytest.approx(0.975)
    assert all(d["cost"] == pytest.approx(96) for d in days)
    cost = report["cost"]
    assert cost["total"] == pytest.approx(288) and cost["per_day"] == pytest.approx(96)
    tokens = 50 * (3 * DAY - 12 * 60)
    assert cost["per_1k_tokens"] == pytest.approx(288 / tokens * 1000, rel=1e-6)
    assert cost["over_budget"] is True


def test_energy_per_model_per_day_in_wh_per_1000_tokens(report):
    """Issue 30: 2 J a token is 0.556 Wh per 1,000 tokens; day 3's 10 J, 2.778. A report of days
    reads the 1-hour rollups, where increase() extrapolates alike above and below the line: the
    ratio is exact, the day's energy within an hour's share."""
    rows = {e["date"]: e for e in report["energy"]}
    assert sorted(rows) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert all((e["server"], e["model"]) == ("llama", "tiny") for e in report["energy"])
    assert rows["2026-01-01"]["wh_per_1k_tokens"] == pytest.approx(2 * 1000 / 3600, rel=1e-3)
    assert rows["2026-01-03"]["wh_per_1k_tokens"] == pytest.approx(10 * 1000 / 3600, rel=1e-3)
    assert rows["2026-01-02"]["wh"] == pytest.approx(2 * 50 * (DAY - 12 * 60) / 3600, rel=0.05)
    for fmt in ("text", "md", "html"):
        assert "Energy per model" in render(report, fmt) and "2.778" in render(report, fmt)


def test_gpus_incidents_and_recommendations(report):
    gpu0, gpu1 = report["gpus"]
    assert gpu0["util_avg"] == pytest.approx(80) and gpu1["util_avg"] == pytest.approx(10)
    assert gpu0["temp_max"] == 91 and gpu0["power_max"] == 300
    (incident,) = report["incidents"]
    assert incident["alertname"] == "LlmTargetDown"
    assert incident["duration_seconds"] == pytest.approx(11 * 60)
    assert report["mttr_seconds"] == pytest.approx(11 * 60) and report["time_to_page_seconds"] == pytest.approx(60)
    text = " ".join(report["recommendations"])
    for expected in ("llama was available 99.722%", "restarted 3 times", "GPU 1 stayed under 30% busy",
                     "GPU 0 reached 91 °C", "over the 2000.00 budget", "0.93 s at p95"):
        assert expected in text, expected
    assert "GPU 0 stayed" not in text
    assert report["changes"] == {}  # no data before the period


def test_performance_against_the_baseline_regressions_with_what_changed_and_quality(report):
    perf = report["performance"]
    [fig] = perf["figures"]
    assert (fig["start"], fig["end"], fig["baseline"]) == (50, 40, 50)
    [reg] = perf["regressions"]
    assert reg["slowdown"] == 1.25 and reg["changed"] == "driver 550.54.15 -> 560.35.03"
    [q] = perf["quality"]
    assert q["last"] == pytest.approx(2 / 3) and q["min"] == pytest.approx(2 / 3) and q["baseline"] == 1.0
    text = render(report, "text")
    assert "Regressions" in text and "driver 550.54.15 -> 560.35.03" in text and "-20.0%" in text


def test_every_format_says_the_same_figures(report):
    for fmt in ("text", "md", "html"):
        out = render(report, fmt)
        for figure in ("99.722%", "4,320,000", "11 min", "LlmTargetDown", "91 °C"):
            assert figure in out, (fmt, figure)
    doc = json.loads(render(report, "json"))
    assert doc["targets"][0]["availability"] == pytest.approx(report["targets"][0]["availability"])


def test_the_html_report_is_one_file_that_opens_offline(report):
    page = render(report, "html")
    assert page.count("<svg") >= 3
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "<script" not in page


def test_hostile_labels_are_escaped_in_html(report):
    doc = json.loads(json.dumps(report))
    doc["targets"][0]["server"] = "<img src=x onerror=alert(1)>"
    page = render(doc, "html")
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_the_cli_reports_from_the_state_directory(tmp_path):
    from agent import cli

    store, _ = scenario(str(tmp_path / "history.db"))
    store.close()
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n[history]\nrollup_1m_retention = "36500d"\n'
                      'rollup_1h_retention = "36500d"\n')
    out = tmp_path / "week.html"
    assert cli.main(["report", "--config", str(config), "--from", "2026-01-01", "--to", "2026-01-04",
                     "--format", "html", "-o", str(out)]) == 0
    assert "99.722%" in out.read_text()
    assert cli.main(["report", "--config", str(config), "--from", "2026-01-04", "--to", "2026-01-01"]) == 2


def test_the_cli_says_when_there_is_no_history(tmp_path, capsys):
    from agent import cli

    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n')
    assert cli.main(["report", "--config", str(config)]) == 2
    assert "no history at" in capsys.readouterr().err
    (tmp_path / "history.db").write_text("not a database")
    assert cli.main(["report", "--config", str(config)]) == 2
    assert "not a history file" in capsys.readouterr().err
    assert (tmp_path / "history.db").read_text() == "not a database"  # a reader never moves the agent's file


def test_the_sentences_say_the_tables_numbers(report):
    """Issue 33: what the recommendation says counted against availability is what the table shows."""
    (target,) = report["targets"]
    assert target["down_seconds"] == pytest.approx(12 * 60) and target["probe_failed_seconds"] == pytest.approx(0)
    [said] = [r for r in report["recommendations"] if r.startswith("llama was available")]
    row = next(line for line in render(report, "text").splitlines() if line.strip().startswith("llama "))
    assert "down 12 min" in said and "12 min" in row and "99.722%" in said and "99.722%" in row


def test_the_three_day_report_in_chromium(report, browser, tmp_path):
    """The known scenario's HTML: every chart titled with its unit; a screenshot kept (and written
    to docs/ with LLM_AGENT_UPDATE_SCREENSHOTS=1)."""
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"))
    browser.get(page.as_uri())
    titles = [t.text for t in browser.find_elements("css selector", "svg text.title")]
    assert titles == ["Tokens generated per day (tokens)", "Probe time to first token per day, p50 and p95 (seconds)",
                      "Cost per day (USD)", "Availability per server over the period (%)"]
    assert len(browser.find_elements("css selector", "svg text.legend")) == 2, "p50 and p95"
    browser.save_screenshot(str(tmp_path / "report-3-days.png"))
    if os.environ.get("LLM_AGENT_UPDATE_SCREENSHOTS"):
        docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
        browser.save_screenshot(os.path.join(docs, "report-3-days.png"))
        for fmt, ext in (("text", "txt"), ("md", "md")):
            with open(os.path.join(docs, f"report-3-days.{ext}"), "w") as f:
                f.write(render(report, fmt))
