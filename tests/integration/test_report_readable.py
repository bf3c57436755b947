"""Issue 33: the report read as a manager reads it, on a host where servers came and went.

A 3-hour history: `tiny` up throughout but for a 30 s outage and 5 minutes of failing probes;
`llama-server-44471`, a process seen for 2 minutes; `tiny` hung 4 times in 2 minutes; the
agent stopped 30 minutes before the period ends, with the short-lived server's alert open.
The figures are checked against the scenario, the sentences against the tables, and the HTML
in Chromium: every chart titled, no two labels overlapping, a single point drawn. Screenshots
are kept beside the test's files (and written to docs/ with LLM_AGENT_UPDATE_SCREENSHOTS=1).
"""

import os
import re

import pytest

from agent.model import COUNTER, GAUGE, MetricFamily, Sample, Snapshot
from agent.report.compute import Period, Reporter
from agent.report.render import render
from agent.tsdb.store import AlertEvent, HistoryStore

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
HOURS = 3
STOP = T0 + HOURS * 3600 - 1800  # the agent stopped half an hour before the period's end
OUTAGE = (T0 + 3600, T0 + 3630)
PROBES_FAILING = (T0 + 5400, T0 + 5700)
GHOST = (T0 + 600, T0 + 720)
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs")

pytestmark = pytest.mark.usefixtures("utc")


def g(name, samples, kind=GAUGE):
    return MetricFamily(name, kind, name, [Sample(name, tuple(labels.items()), float(v)) for labels, v in samples])


def came_and_went(path):
    clock = [T0]
    store = HistoryStore(path, clock=lambda: clock[0])
    tokens = 0.0
    t = T0 + 2.5
    while t < STOP:
        down = OUTAGE[0] <= t < OUTAGE[1]
        probing = not down and not PROBES_FAILING[0] <= t < PROBES_FAILING[1]
        up = [({"server": "tiny"}, 0 if down else 1)]
        probe = [({"server": "tiny"}, 1 if probing else 0)]
        if GHOST[0] <= t < GHOST[1]:
            up.append(({"server": "llama-server-44471"}, 1))
            probe.append(({"server": "llama-server-44471"}, 0))
        tokens += 0 if down else 100
        fams = [g("llm_agent_target_up", up), g("llm_agent_probe_success", probe),
                g("llm_agent_generation_tokens_per_second", [({"server": "tiny"}, 0 if down else 20)]),
                g("llm_agent_generation_tokens_total", [({"server": "tiny", "model": "tiny"}, tokens)], COUNTER)]
        clock[0] = t
        store.append(Snapshot(t, tuple(fams)))
        if int(t - T0) % 300 < 5:
            store.maintain(t)
            store.settle()
        t += 5
    hung = {"alertname": "LlmTargetHung", "severity": "critical", "server": "tiny"}
    events = []
    for k in range(4):  # hung 4 times in 2 minutes; only the first firing carried a summary
        at = T0 + 7200 + 30 * k
        events += [AlertEvent(at, "firing", hung, {"summary": "tiny is hung: alive but not answering"} if k == 0 else {},
                              1, "fp-hung"),
                   AlertEvent(at + 5, "resolved", hung, {}, float("nan"), "fp-hung")]
    ghost = {"alertname": "LlmProbeErrorRate", "severity": "warning", "server": "llama-server-44471"}
    events.append(AlertEvent(GHOST[0] + 60, "firing", ghost, {"summary": "probes failing"}, 1, "fp-ghost"))
    store.record_alerts(events)
    store.settle()
    return store


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    os.environ["TZ"] = "UTC"
    store = came_and_went(str(tmp_path_factory.mktemp("came") / "history.db"))
    end = T0 + HOURS * 3600
    try:
        return Reporter(store, 0.995, 1.0, "gpu-box", clock=lambda: end).report(Period(T0, end))
    finally:
        store.close()


def test_a_short_lived_server_is_listed_apart_and_never_judged(doc):
    by = {t["server"]: t for t in doc["targets"]}
    assert by["llama-server-44471"]["short_lived"] and by["llama-server-44471"]["met"] is None
    assert not by["tiny"]["short_lived"]
    text = render(doc, "text")
    availability = text.split("Availability")[1].split("\n\n")[0]
    assert "llama-server-44471" not in availability and "tiny" in availability
    assert "Short-lived servers" in text and "llama-server-44471  2 min" in text
    assert not any("llama-server-44471" in r for r in doc["recommendations"])


def test_availability_says_what_counted_against_it_in_the_tables_numbers(doc):
    tiny = next(t for t in doc["targets"] if t["server"] == "tiny")
    assert tiny["down_seconds"] == pytest.approx(30) and tiny["probe_failed_seconds"] == pytest.approx(300)
    [said] = [r for r in doc["recommendations"] if r.startswith("tiny was available")]
    assert "down 30.0 s, probes failing 5 min while it was up" in said
    row = next(line for line in render(doc, "text").splitlines() if line.strip().startswith("tiny "))
    assert "30.0 s" in row and "5 min" in row and f"{tiny['availability'] * 100:.3f}%" in said and \
        f"{tiny['availability'] * 100:.3f}%" in row


def test_flaps_fold_into_one_row_and_an_open_incident_says_the_agent_stopped(doc):
    hung = [i for i in doc["incidents"] if i["alertname"] == "LlmTargetHung"]
    assert len(hung) == 1 and hung[0]["count"] == 4 and hung[0]["summary"] == "tiny is hung: alive but not answering"
    assert hung[0]["duration_seconds"] == pytest.approx(95)
    [ghost] = [i for i in doc["incidents"] if i["alertname"] == "LlmProbeErrorRate"]
    assert ghost["end"] is None and ghost["agent_stopped_at"] == pytest.approx(STOP, abs=5)
    text = render(doc, "text")
    assert "LlmTargetHung x4" in text and "4 times in 95.0 s: tiny is hung" in text
    assert doc["mttr_seconds"] == pytest.approx(5), "each flap is repaired in 5 s"
    assert doc["verdict"]["status"] == "ok", "an incident whose end the agent never saw is not said to fire"
    assert "open when the agent stopped at 2026-01-01 02:29" in text and "still firing" not in text


def _overlaps(browser):
    """Pairs of text boxes (titles, legends, axis labels, values) that overlap within one chart."""
    return browser.execute_script("""
        const out = [];
        for (const svg of document.querySelectorAll('svg')) {
          const boxes = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]);
          for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const [a, ra] = boxes[i], [b, rb] = boxes[j];
            if (ra.left < rb.right - 0.5 && rb.left < ra.right - 0.5 && ra.top < rb.bottom - 0.5 && rb.top < ra.bottom - 0.5)
              out.push(a + ' / ' + b);
          }
        }
        return out;""")


@pytest.mark.parametrize("width", [390, 1280])
def test_the_html_report_in_chromium_titled_charts_and_no_label_over_another(doc, browser, tmp_path, width):
    judged = next(t for t in doc["targets"] if not t["short_lived"])
    many = dict(doc, targets=doc["targets"] + [dict(judged, server=f"llama-server-{40000 + k}-a-rather-long-name",
                                                    availability=0.99 + k / 2000) for k in range(14)])
    for name, d in (("came-and-went", doc), ("many-servers", many)):
        page = tmp_path / f"{name}.html"
        page.write_text(render(d, "html"))
        browser.set_window_size(width, 1800)
        browser.get(page.as_uri())
        titles = [t.text for t in browser.find_elements("css selector", "svg text.title")]
        assert len(titles) == len(browser.find_elements("css selector", "svg")) >= 2, titles
        assert all(re.search(r"\(.+\)$", t) for t in titles), f"each title names its unit: {titles}"
        assert _overlaps(browser) == [], name
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), \
            "the page never scrolls sideways (a wide table scrolls in its own box)"
        browser.save_screenshot(str(tmp_path / f"report-{name}-{width}.png"))
        if os.environ.get("LLM_AGENT_UPDATE_SCREENSHOTS") and width == 1280 and name == "came-and-went":
            browser.save_screenshot(os.path.join(DOCS, "report.png"))
            for fmt, ext in (("text", "txt"), ("md", "md")):
                with open(os.path.join(DOCS, f"report-example.{ext}"), "w") as f:
                    f.write(render(d, fmt))
    # three hours are one day: its TTFT point, had it one, and tokens are drawn, never an empty frame
    assert browser.find_elements("css selector", "svg rect[fill]") or browser.find_elements("css selector", "circle")
