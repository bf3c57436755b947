"""Every evaluation runs under a sample budget and a deadline checked as the work is done
(issue 27: `count_over_time(vector(1)[1d:1ms])` grew the agent from 68 MB to 4 GB in 60 s).
The query API, the rules, the reports and the history rules share one evaluator and its budget."""

import gc
import resource
import tracemalloc
import time

import pytest

from agent.model import GAUGE, MetricFamily, Sample, Snapshot
from agent.promql.evaluator import Budget, BudgetExceeded, Evaluator
from agent.rules.history import History
from agent.promql.parser import parse
from agent.tsdb.query import Querier, QueryError
from agent.tsdb.store import HistoryStore
from agent.tsdb.tiers import MINUTE, Retention


@pytest.fixture
def store(tmp_path):
    clock = [time.time() - 600]
    store = HistoryStore(str(tmp_path / "h.db"), clock=lambda: clock[0])
    for _ in range(100):
        fam = MetricFamily("g", GAUGE, "g", [Sample("g", (("k", str(k)),), float(k)) for k in range(5)])
        store.append(Snapshot(clock[0], (fam,)))
        clock[0] += 1
    yield store, clock
    store.close()


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_subquery_bomb_is_refused_before_it_runs(store):
    st, clock = store
    querier = Querier(st, lambda: clock[0], max_samples=500_000, timeout=30)
    before, start = rss_mib(), time.monotonic()
    for expr in ("count_over_time(vector(1)[1d:1ms])", "sum_over_time(g[1d:1ms])",
                 "max_over_time(max_over_time(vector(1)[1h:1s])[1h:1s])"):
        with pytest.raises(QueryError, match="too many samples") as e:
            querier.instant(expr, clock[0])
        assert e.value.kind == "execution"  # the API answers 422
    assert time.monotonic() - start < 5, "refused at once, not after the work"
    assert rss_mib() - before < 50


def test_a_range_query_counts_its_answer_and_the_step_at_work_as_prometheus_does(store):
    """Peak samples, as Prometheus' query.max-samples: the points of the answer held so far
    plus the step being worked out. A small answer read from many steps is answered (a 7-day
    histogram panel read ~10 points of 44 buckets a step, 450,000 together, and was refused);
    an answer that grows past the budget is refused."""
    st, clock = store
    querier = Querier(st, lambda: clock[0], max_samples=2_000, timeout=30)
    assert querier.range("g", clock[0] - 60, clock[0], 1)[0]["result"]  # 5 series x 61 steps: within
    with pytest.raises(QueryError, match="too many samples"):
        querier.range("g * 2 + g", clock[0] - 100, clock[0], 0.1)  # 5 series x 1,001 steps held
    start = float(int(clock[0])) - 90  # whole seconds, inside the samples: 801 steps of 100 ms
    data, _ = querier.range("sum(sum_over_time(g[30s]))", start, start + 80, 0.1)
    assert len(data["result"][0]["values"]) == 801  # ~150 samples a step, 120,000 over the steps


def test_the_deadline_is_checked_as_the_work_is_done(store):
    st, clock = store
    querier = Querier(st, lambda: clock[0], max_samples=100_000_000, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(QueryError, match="timed out") as e:
        querier.instant("count_over_time(count_over_time(vector(1)[10m:10ms])[10m:10ms])", clock[0])
    assert e.value.kind == "timeout" and time.monotonic() - start < 5


def test_the_budget_counts_what_selectors_load_and_operators_make():
    h = History()
    sel = parse("x")
    h.register(sel, 0)
    h.ingest(Snapshot(100.0, (MetricFamily("x", GAUGE, "", [Sample("x", (("i", str(i)),), 1.0) for i in range(10)]),)))
    with pytest.raises(BudgetExceeded):
        Evaluator(h, budget=Budget(max_samples=15)).eval(parse("x + x"), 100.0)  # 10 loaded, twice, then 10 made
    assert len(Evaluator(h, budget=Budget(max_samples=30)).eval(parse("x + x"), 100.0)) == 10


def test_a_runaway_rule_fails_alone_and_the_others_fire():
    from agent.rules.engine import Engine
    from tests.unit.test_engine import World, rule, up

    w = World()
    e = Engine([rule("Bomb", "count_over_time(vector(1)[1h:1s]) > 0"), rule("Down", "llm_agent_target_up == 0")],
               w.history, max_samples=1_000)  # the bomb needs 3,601 steps
    assert w.cycle(e, [up("a", 0)]) == [("firing", "Down", "a")]
    assert e.failures == {"Bomb": 1} and "too many samples" in e.last_error["Bomb"]


def test_values_are_written_as_prometheus_writes_them():
    """format_value's fast path (a plain decimal) and the rest: Go's strconv 'f', shortest digits
    (the query API's values and count_values' labels); random doubles against Decimal's expansion."""
    import random
    import struct
    from decimal import Decimal

    from agent.promql.vectorfuncs import format_value

    cases = {1.0: "1", -0.0: "-0", 0.5: "0.5", 47.18333333333333: "47.18333333333333", 1e16: "10000000000000000",
             1.5e-7: "0.00000015", -2.5e21: "-2500000000000000000000", float("nan"): "NaN", float("inf"): "+Inf",
             float("-inf"): "-Inf", 123456789.0: "123456789", 0.1 + 0.2: "0.30000000000000004"}
    for value, text in cases.items():
        assert format_value(value) == text, value
    rng = random.Random(7)
    for _ in range(20_000):
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if value == value and abs(value) != float("inf"):
            text = format(Decimal(repr(value)), "f")
            expected = text[:-2] if text.endswith(".0") else text
            assert format_value(value) == expected, repr(value)


def test_selectors_of_one_series_set_are_read_once_and_answer_as_each_read_alone(store):
    """A history rule repeats `rate(x[1h])` in its numerator, its mean and its spread, and reads
    x over an hour and a week beside it: one read over the widest window serves them all, and
    the budget counts it once (read per selector, a week-old history's error-ratio z-score
    loaded 600,000 samples against the 500,000 allowed, and never answered)."""
    st, clock = store
    t = clock[0] - 1
    querier = Querier(st, lambda: clock[0], max_samples=1_000, timeout=30)
    parts = ("sum_over_time(g[50s])", "sum_over_time(g[90s])", "g", "max_over_time(g[20s] offset 10s)")
    alone = [{r["metric"]["k"]: float(r["value"][1]) for r in querier.instant(p, t)[0]["result"]} for p in parts]
    data, _ = querier.instant(" + ".join(parts), t)  # read per selector: 2,000 samples, over the budget
    together = {r["metric"]["k"]: float(r["value"][1]) for r in data["result"]}
    assert together == {k: sum(a[k] for a in alone) for k in alone[0]} and len(together) == 5
    with pytest.raises(QueryError, match="too many samples"):  # two series sets are two reads
        Querier(st, lambda: clock[0], max_samples=700, timeout=30).instant('g + g{k!="9"}', t)


def test_a_selector_with_an_offset_reads_its_own_window_not_up_to_now(tmp_path):
    """`x[30m] offset 1w` beside `x[30m]` (the week-on-week z-score) is two half hours read,
    not a week."""
    clock = [time.time() - 4000]
    st = HistoryStore(str(tmp_path / "h.db"), clock=lambda: clock[0])
    for _ in range(400):
        st.append(Snapshot(clock[0], (MetricFamily("g", GAUGE, "g", [Sample("g", (("k", str(k)),), float(k)) for k in range(3)]),)))
        clock[0] += 10
    expr = "avg_over_time(g[5m] offset 50m) - avg_over_time(g[5m])"  # each read: 10 minutes with the lookback
    try:
        data, _ = Querier(st, lambda: clock[0], max_samples=500, timeout=30).instant(expr, clock[0] - 10)
        assert [float(r["value"][1]) for r in data["result"]] == [0.0, 0.0, 0.0]  # up to now: ~1,100 samples
    finally:
        st.close()


@pytest.mark.parametrize("raw_retention", [86400.0, 3600.0])  # raw samples; 1-minute rollups
def test_a_query_holds_its_points_as_arrays_not_a_tuple_a_point(tmp_path, raw_retention):
    """A history rule's first round after a start loads a week of minutes of ~20 series
    (200,000 points): as (t, v) tuples ~110 bytes a point, 37 MiB at its peak on a week-old
    host; as two arrays a series, 16."""
    clock = [time.time() - 6 * 3600]
    st = HistoryStore(str(tmp_path / "h.db"), retention=Retention(raw=raw_retention), clock=lambda: clock[0])
    for _ in range(6 * 360):
        st.append(Snapshot(clock[0], (MetricFamily("g", GAUGE, "g", [Sample("g", (("k", str(k)),), clock[0] % 97 + k)
                                                                     for k in range(5)]),)))
        clock[0] += 10
    try:
        querier = Querier(st, lambda: clock[0])
        node = parse("avg_over_time(g[5h])")
        querier.load(node, clock[0], clock[0], 0.0)  # the reader's connection and caches, made once
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        loaded, _ = querier.load(node, clock[0], clock[0], 0.0)
        gc.collect()  # what the read left for the collector is not held
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        points = sum(len(read[1]) for series in loaded.with_markers.values() for read in series)
        assert points >= 5 * (300 if raw_retention == 3600.0 else 1800)
        assert held / points < 40, (held, points)
        data, _ = querier.instant("avg_over_time(g[5h])", clock[0])  # and it answers as before
        assert len(data["result"]) == 5
    finally:
        st.close()


@pytest.mark.parametrize("raw_retention", [86400.0, 3600.0])  # raw samples; 1-minute rollups
def test_a_selector_past_the_budget_stops_reading_there_not_after_reading_everything(tmp_path, monkeypatch,
                                                                                   raw_retention):
    """`count(count_over_time({__name__=~".+"}[20h]))` on a week-old host read every raw sample
    of 1,147 series (~20M) before the budget refused it: +2.1 GB and 13 s. The reader now stops
    at the budget's rest, the chunks it decoded holding at most one chunk's points past it."""
    from agent.tsdb import codec, rollup

    clock = [time.time() - 6 * 3600]
    st = HistoryStore(str(tmp_path / "h.db"), retention=Retention(raw=raw_retention), clock=lambda: clock[0])
    for _ in range(6 * 360):
        st.append(Snapshot(clock[0], (MetricFamily("g", GAUGE, "g", [Sample("g", (("k", str(k)),), clock[0] % 97 + k)
                                                                     for k in range(40)]),)))
        st.maintain(clock[0], wait=True)
        clock[0] += 10
    decoded = []  # the points of each chunk decoded: (times, columns) raw, a Window of rollups

    def counted(real, points):
        def decode(*args, **kwargs):
            out = real(*args, **kwargs)
            decoded.append(points(out))
            return out
        return decode

    monkeypatch.setattr(codec, "decode", counted(codec.decode, lambda out: len(out[0])))
    monkeypatch.setattr(rollup, "decode_column", counted(rollup.decode_column, len))
    try:
        querier = Querier(st, lambda: clock[0], max_samples=3_000)
        whole = Querier(st, lambda: clock[0], max_samples=10 ** 7)
        decoded.clear()
        assert whole.instant("count(count_over_time(g[6h]))", clock[0])[0]["result"][0]["value"][1] == "40"
        everything, chunk = sum(decoded), max(decoded)
        assert everything > 4 * 3_000
        decoded.clear()
        with pytest.raises(QueryError, match="too many samples"):
            querier.instant("count(count_over_time(g[6h]))", clock[0])
        assert sum(decoded) <= 3_000 + chunk, (sum(decoded), everything)
        with querier.session():  # a read kept in a session is refused past the budget as well
            assert querier.instant("count(count_over_time(g{k=\"1\"}[6h]))", clock[0])[0]["result"]
            with pytest.raises(QueryError, match="too many samples"):
                querier.instant("count(count_over_time(g[6h]))", clock[0])
    finally:
        st.close()


def test_the_head_is_read_within_the_budget_and_summarised_as_it_is_read(tmp_path):
    """The head (up to 30 minutes of every series: 7.2M samples at max_series' 20,000) was read
    whole before the budget was asked: a raw read stops at the budget's rest inside the head too,
    and a rollup read holds a bucket of samples a series, not the head's samples of every one."""
    clock = [time.time() - 3600]
    st = HistoryStore(str(tmp_path / "h.db"), clock=lambda: clock[0])
    for _ in range(340):  # 28 minutes: all in the head
        st.append(Snapshot(clock[0], (MetricFamily("g", GAUGE, "g", [Sample("g", (("k", str(k)),), clock[0] % 89 + k)
                                                                     for k in range(60)]),)))
        clock[0] += 5
    assert st.stats.seals == 0

    def peak(querier, expr, **kw):
        querier.instant("g{k=\"1\"}", clock[0])  # the reader's connection and caches, made once
        gc.collect()
        tracemalloc.start()
        try:
            answer = querier.instant(expr, clock[0], **kw)[0]
        except QueryError as e:
            answer = e
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return answer, top

    try:
        whole, whole_peak = peak(Querier(st, lambda: clock[0], max_samples=10 ** 6), "count(count_over_time(g[1h]))")
        assert whole["result"][0]["value"][1] == "60"
        refused, refused_peak = peak(Querier(st, lambda: clock[0], max_samples=2_000), "count(count_over_time(g[1h]))")
        assert isinstance(refused, QueryError) and "too many samples" in str(refused)
        assert refused_peak < whole_peak / 3, (refused_peak, whole_peak)  # 60 x 340 samples read, 2,000 allowed
        minutes, minutes_peak = peak(Querier(st, lambda: clock[0], max_samples=10 ** 6), "count(count_over_time(g[1h]))",
                                     tier=MINUTE)
        assert minutes["result"][0]["value"][1] == "60"
        assert minutes_peak < whole_peak / 3, (minutes_peak, whole_peak)  # minutes, not the samples they summarise
    finally:
        st.close()


def test_the_label_sets_the_evaluator_remembers_are_bounded_whatever_a_query_reads():
    """The rules' label sets less __name__, or less what `by` leaves out, are remembered from
    cycle to cycle; a query over 20,000 series leaves REMEMBERED of them at most, and the
    answers are the sets' own."""
    from agent.promql import labelsets

    h = History(keep_all=True)
    for i in range(20_000):
        h.add((("__name__", "wide"), ("i", str(i)), ("job", "j" + str(i % 3))), 1000.0, 1.0)
    ev = Evaluator(h, {}, budget=Budget(10**6, 30))
    answer = ev.eval(parse("sum without (i) (wide * 2)"), 1000.0)
    assert sorted(answer) == [((("job", "j0"),), 6667.0 * 2), ((("job", "j1"),), 6667.0 * 2), ((("job", "j2"),), 6666.0 * 2)]
    for memo in (labelsets.no_name, labelsets.keep, labelsets.drop):
        assert memo.cache_info().currsize <= labelsets.REMEMBERED
    assert labelsets.no_name((("__name__", "x"), ("a", "1"))) == (("a", "1"),)
