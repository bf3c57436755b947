"""A hostile target cannot break the agent's exposition or take its names: offending series
are dropped and counted per target, limits fail the scrape as Prometheus does, and the
rendered output always parses with a strict OpenMetrics parser and the text parser."""

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families as text_parse

from agent.collectors.http import Response
from agent.collectors.openmetrics import OpenMetricsCollector
from agent.collectors.sanitize import sanitize
from agent.config import TargetConfig
from agent.expfmt import parse_text, render_both
from agent.model import Snapshot
from agent.runner import Runner
from tests.support.clock import ManualClock
from tests.support.hostile import NASTY_LINES, hostile_body


class Body:
    """The HTTP boundary only: hands the collector a body, as the real client would."""

    def __init__(self, body: bytes):
        self.body = body

    def get(self, path, timeout, max_bytes, ok_statuses=(200,)):
        return Response(200, self.body, 0.0)

    def close(self):
        pass


def collector(body: str, **limits) -> OpenMetricsCollector:
    target = TargetConfig("evil", "http://127.0.0.1:1", "openmetrics", **limits)
    return OpenMetricsCollector(target, client=Body(body.encode()), clock=ManualClock())


def exposition(*collectors) -> Snapshot:
    from agent.collectors.selfstats import SelfCollector

    runner = Runner([SelfCollector(lambda: {"cycles": 1})] + list(collectors), timeout=5)
    try:
        return runner.run()
    finally:
        runner.close()


SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "unknown": ("",)}


def assert_openmetrics_structure(om: str) -> None:
    """What Prometheus' OpenMetrics parser insists on: each family declared once and its
    samples together right after it, every sample name one its family's type allows, no
    series twice, `# EOF` last. (prometheus_client's parser is stricter than Prometheus: it
    also wants canonical numbers and complete histograms, which Prometheus does not check.)"""
    lines = om.split("\n")
    assert lines[-2:] == ["# EOF", ""], "ends with # EOF"
    declared, family, kind, series = set(), None, None, set()
    for line in lines[:-2]:
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            assert family not in declared, f"family {family} declared twice"
            declared.add(family)
        elif line.startswith("# HELP "):
            assert line.split(" ", 3)[2] not in declared, "HELP comes before TYPE, once"
        else:
            key = line.rsplit(" ", 1)[0]
            name = key.split("{", 1)[0]
            assert any(name == family + sfx for sfx in SUFFIXES[kind]), f"{name} does not belong to {kind} {family}"
            assert key not in series, f"{key} twice"
            series.add(key)


def assert_valid(snapshot: Snapshot) -> None:
    text, om = render_both(snapshot.families)
    parsed = list(text_parse(text.decode()))
    names = [f.name for f in parsed]
    assert len(names) == len(set(names)), "one family per name"
    assert_openmetrics_structure(om.decode())


def dropped(snapshot, reason):
    return snapshot.value("llm_agent_target_series_dropped_total", server="evil", reason=reason) or 0


def test_each_kind_of_offending_series_is_dropped_and_counted():
    snap = exposition(collector("\n".join(NASTY_LINES) + "\n"))
    assert_valid(snap)
    for reason in ("reserved_name", "reserved_label", "duplicate_label", "invalid_series", "name_clash"):
        assert dropped(snap, reason) > 0, reason
    assert snap.value("llm_agent_collector_success", collector="target:evil") == 1
    assert [s.label("collector") for s in snap.samples("llm_agent_collector_success")] == ["agent", "target:evil"]
    assert snap.samples("llm_agent_alerts") == [], "a target cannot add to the agent's families"
    srv = snap.samples("srv")[0]
    assert srv.labels == (("server", "evil"), ("exported_exported_server", "inner"), ("exported_server", "x"))


def test_the_agents_own_families_win_a_clash_with_a_targets():
    from agent.model import MetricFamily

    class Host:  # a fixed collector of the agent's, exporting what node_exporter would
        name = "host"

        def collect(self):
            return [MetricFamily("node_load1", "gauge", "1m load average.").add({}, 0.5)]

    snap = exposition(collector("# TYPE node_load1 counter\nnode_load1 99\n"), Host())
    assert [s.value for s in snap.samples("node_load1")] == [0.5]
    assert_valid(snap)


@pytest.mark.parametrize("limit,body,reason", [
    ({"sample_limit": 100}, "".join(f'm{{i="{i}"}} 1\n' for i in range(101)), "sample_limit"),
    ({"label_limit": 3}, 'm{a="1",b="2",c="3"} 1\n', "label_limit"),  # 3 + the server label
    ({"label_name_length_limit": 5}, 'm{abcdef="1"} 1\n', "label_name_length_limit"),
    ({"label_value_length_limit": 5}, 'm{a="123456"} 1\n', "label_value_length_limit"),
])
def test_a_limit_fails_the_scrape_with_its_reason(limit, body, reason):
    c = collector(body, **limit)
    snap = exposition(c)
    assert snap.value("llm_agent_target_up", server="evil") == 0
    assert snap.value("llm_agent_target_scrape_errors_total", server="evil", reason=reason) == 1
    assert snap.samples("m") == []
    c.client = Body(b"m 1\n")  # it behaves again
    assert exposition(c).value("llm_agent_target_up", server="evil") == 1


def passthrough(snap):
    return [(f.name, f.type, [(s.name, s.labels, repr(s.value)) for s in f.samples]) for f in snap.families
            if not f.name.startswith(("llm_agent_", "process_"))]


def test_an_unchanged_body_says_what_it_said_and_a_changed_one_is_parsed_again(monkeypatch):
    """An idle server's body is the same to the byte every cycle and is not parsed again; what
    it says (series, values, its malformed lines and dropped series, counted each scrape) must
    be what a parse would say, and what one cycle's consumers do to its families must not
    reach the next cycle's."""
    import agent.collectors.openmetrics as om

    parses = []
    real_parse = om.parse_text
    monkeypatch.setattr(om, "parse_text", lambda *a, **k: parses.append(1) or real_parse(*a, **k))
    body = "\n".join(NASTY_LINES) + '\n# TYPE work_total counter\nwork_total{job="a"} 7\nnot a line\n'
    c = collector(body)
    first = exposition(c)
    second = exposition(c)
    assert len(parses) == 1, "the same body is not parsed again"
    fresh = exposition(collector(body))  # what a parse of the same body says
    for snap in (first, second):
        assert passthrough(snap) == passthrough(fresh)
        assert any("malformed /metrics line" in p.message for p in snap.problems)
    for reason in ("reserved_name", "invalid_series", "name_clash"):
        assert dropped(second, reason) == 2 * dropped(first, reason) > 0, "counted at each scrape"
    parse_errors = [snap.value("llm_agent_target_parse_errors_total", server="evil") for snap in (first, second)]
    assert parse_errors[1] == 2 * parse_errors[0] > 0
    work = second.family("work_total")
    work.samples.append(work.samples[0])
    work.type = "gauge"  # a consumer's doing: not the next cycle's
    third = exposition(c)
    assert [(s.labels, s.value) for s in third.samples("work_total")] == [((("server", "evil"), ("job", "a")), 7.0)]
    assert third.family("work_total").type == "counter"
    parses.clear()
    c.client = Body(body.replace("work_total{job=\"a\"} 7", "work_total{job=\"a\"} 8").encode())
    assert exposition(c).value("work_total", server="evil", job="a") == 8.0 and len(parses) == 1
    monkeypatch.setattr(om, "CHECKED_BODY_MAX", 10)  # a body past it is not kept: parsed each time
    c.client = Body(body.encode())
    exposition(c), exposition(c)
    assert len(parses) == 3


def test_a_million_tiny_series_cost_no_more_than_the_limit():
    body = "".join(f"m{i} 1\n" for i in range(1_100_000))
    tracemalloc.start()
    try:
        parsed = parse_text(body, max_samples=50_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.exceeded and sum(len(f.samples) for f in parsed.families) == 50_001
    assert peak < 32 << 20, f"parsing stopped at the limit, with no copy of the body: peak {peak >> 20} MiB"


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2 ** 32), lines=st.integers(1, 60))
def test_whatever_a_target_sends_the_exposition_stays_valid(seed, lines):
    snap = exposition(collector(hostile_body(random.Random(seed), lines)),
                      collector(hostile_body(random.Random(seed + 1), lines)))
    assert_valid(snap)


def test_sanitize_keeps_a_well_behaved_body_untouched():
    body = open("tests/fixtures/vllm/metrics.txt").read()
    families = parse_text(body).families
    before = sum(len(f.samples) for f in families)
    kept, dropped_by = sanitize(families)
    assert dropped_by == {} and sum(len(f.samples) for f in kept) == before


def test_a_target_cannot_send_the_series_prometheus_writes_for_each_scrape():
    """`up` and scrape_* are the agent's (its rules and history have them for every target, as
    Prometheus does): a target's own would collide with them."""
    body = "up 0\nscrape_duration_seconds 9\nscrape_samples_scraped 1\nfine 1\n"
    snap = exposition(collector(body))
    assert snap.samples("up") == [] and snap.samples("scrape_duration_seconds") == []
    assert snap.value("fine", server="evil") == 1
    assert dropped(snap, "reserved_name") == 3
