"""A range query's rate, increase and delta evaluated at every step at once (range_steps), and
whole expressions evaluated across the steps (range_columns): the same answer, to the bit, as
evaluating each step alone, with the same refusals."""

import contextlib
import math
import random

import pytest

from agent.model import COUNTER, GAUGE, MetricFamily, Sample, Snapshot
from agent.promql import functions as fn
from agent.tsdb import query as query_module
from agent.tsdb.query import Querier, QueryError
from agent.tsdb.store import HistoryStore
from agent.tsdb.tiers import Retention

T0 = 1_767_225_600.0


def test_one_walk_gives_each_windows_extrapolated_rate():
    rng = random.Random(7)
    times, values, v = [], [], 0.0
    for i in range(400):
        times.append(T0 + 5 * i + rng.choice((0, 0, 0.5, 2)))
        v = 0.0 if rng.random() < 0.03 else v + rng.choice((0, 1, 2.5, 40))  # resets now and then
        values.append(math.nan if rng.random() < 0.01 else v)
    ends = [T0 + 30 * k for k in range(-3, 80)]
    for seconds in (4.0, 10.0, 61.0, 300.0):
        for is_counter, is_rate in ((True, True), (True, False), (False, False)):
            got, counts = fn.extrapolated_rates(times, values, ends, seconds, is_counter, is_rate)
            for end, value, count in zip(ends, got, counts):
                window = [(t, x) for t, x in zip(times, values) if end - seconds <= t <= end]
                want = fn.extrapolated_rate(window, end - seconds, end, is_counter, is_rate)
                assert count == len(window)
                assert value == want or (value is not None and want is not None and math.isnan(value)
                                         and math.isnan(want)), (seconds, end)


def test_one_value_folds_to_itself_where_the_columns_skip_the_fold():
    from agent.promql.aggregation import fold
    from agent.promql.columns import _ONE_IS_ITSELF, fold_one

    rng = random.Random(3)
    values = [0.0, -0.0, 1.5, -2.0, 1e308, -1e308, 5e-324, -5e-324, math.inf, -math.inf, math.nan]
    values += [rng.uniform(-1e6, 1e6) for _ in range(1000)]
    for op in _ONE_IS_ITSELF:
        for v in values:
            assert repr(fold_one(op, v)) == repr(fold(op, [v], None)), (op, v)


@pytest.fixture
def store(tmp_path):
    clock = [T0]
    store = HistoryStore(str(tmp_path / "h.db"), retention=Retention(raw=3600, minute=30 * 86400),
                         clock=lambda: clock[0])
    rng = random.Random(1)
    count = {"a": 0.0, "b": 0.0, "c": 0.0}
    bounds = ("0.1", "0.5", "1", "+Inf")
    buckets = {(server, le): 0.0 for server in "ab" for le in bounds}
    for i in range(3 * 720):  # 3 hours at 5 s: raw for the last hour, minute rollups before
        requests = MetricFamily("requests_total", COUNTER, "r")
        for server in count:
            if server == "c" and (300 <= i < 420 or 1900 <= i < 1960):
                continue  # gone for ten minutes, later five: stale markers in the raw samples
            count[server] = 0.0 if rng.random() < 0.01 else count[server] + rng.choice((0, 1, 3, 17))
            requests.samples.append(Sample("requests_total", (("server", server), ("zone", "z")), count[server]))
        temp = MetricFamily("temp", GAUGE, "t", [Sample("temp", (("gpu", "0"),), 40 + rng.random())])
        temp2 = MetricFamily("temp2", GAUGE, "t", [Sample("temp2", (("gpu", "0"),), 30.0)])
        latency = MetricFamily("latency_bucket", COUNTER, "l")  # a histogram's buckets, cumulative
        for server in "ab":
            seen = 0.0
            for le in bounds:
                seen += rng.choice((0, 0, 1, 4))
                buckets[server, le] += seen
                latency.samples.append(Sample("latency_bucket", (("le", le), ("server", server)), buckets[server, le]))
        store.append(Snapshot(clock[0], (requests, temp, temp2, latency)))
        store.maintain(clock[0])
        store.settle()
        clock[0] += 5
    yield store, clock
    store.close()


EXPRS = ("rate(requests_total[1m])", "increase(requests_total[5m] offset 10m)", "delta(temp[2m])",
         "sum by (zone) (rate(requests_total[90s]))", "rate(requests_total{server!=\"b\"}[30s]) * 2",
         "max_over_time(rate(requests_total[1m])[10m:1m])", "rate(requests_total[1m]) / rate(requests_total[2m])",
         "rate(temp[1m]) + on() group_left sum(rate(requests_total[1m]))",
         "rate(requests_total[1m]) - rate(requests_total[1m])",
         # across the steps as columns (COLUMNAR), and what they decline: nested aggregations,
         # vector matching (above), a function they do not know
         "1 - avg without (server) (rate(requests_total[1m]))", "-rate(requests_total[1m] offset 5m)",
         "rate(requests_total[1m]) > 0.5", "0.5 < bool rate(requests_total[1m])", "(2 * 3) ^ 2 - 1",
         "count(rate(requests_total[1m]) > 1)", "max by (zone) (rate(requests_total[2m])) / 2",
         "stddev(delta(temp[2m])) * (3 + -1)", "rate(requests_total[1m]) atan2 0.5",
         "histogram_quantile(0.9, sum by (le) (rate(latency_bucket[2m])))",
         "histogram_quantile(0.5, rate(latency_bucket[1m]) * 2)",
         "histogram_quantile(0.99, avg by (server, le) (rate(latency_bucket[1m])))",
         "requests_total", "temp offset 7m", "sum by (zone) (requests_total)", "-temp * 2", "temp > 40.5",
         "avg without (server) (requests_total{server!=\"a\"}) / 1000",
         "sum(sum by (server) (rate(requests_total[1m])))", "abs(rate(requests_total[1m]))", "temp + temp2")
COLUMNAR = 18


@pytest.fixture
def stepped(monkeypatch):
    """A context in which a range query is evaluated one step at a time."""
    @contextlib.contextmanager
    def alone():
        with monkeypatch.context() as m:
            m.setattr(query_module, "range_steps", lambda *a: {})
            m.setattr(query_module, "range_columns", lambda *a: None)
            yield
    return alone


@pytest.mark.parametrize("span,step", [(1800, 15), (3600, 60), (3 * 3600, 300)])
def test_a_batched_range_answers_as_every_step_alone(store, monkeypatch, stepped, span, step):
    st, clock = store
    querier = Querier(st, lambda: clock[0])
    end = clock[0] - 5
    answered = []
    columns = query_module.range_columns

    def counted(*a):
        out = columns(*a)
        answered.append(out is not None)
        return out

    monkeypatch.setattr(query_module, "range_columns", counted)
    for expr in EXPRS:
        batched = querier.range(expr, end - span, end, step)
        with stepped():
            alone = querier.range(expr, end - span, end, step)
        assert batched == alone, expr
        assert batched[0]["result"], f"{expr} answers something"
    assert answered == [True] * 5 + [False] * 4 + [True] * COLUMNAR + [False] * 3, answered


def test_a_batched_range_is_refused_where_every_step_alone_is(store, stepped):
    """Each step still spends its window's samples: one series' 10-minute window (~120
    samples) at 601 steps, its answer growing a point a step: budgets around the peak (~720)
    are refused at the same step or answered alike, batched (from 601) or not."""
    st, clock = store
    end = clock[0] - 5
    outcomes = set()
    for budget in range(550, 800, 10):
        querier = Querier(st, lambda: clock[0], max_samples=budget)
        errors = []
        for expr in ('sum(rate(requests_total{server="a"}[10m]))',  # as columns
                     'sum(rate(requests_total{server="a"}[10m])) + rate(temp[10m])'):  # batched rates, stepped
            for batching in (True, False):
                with (contextlib.nullcontext() if batching else stepped()):
                    try:
                        querier.range(expr, end - 600, end, 1)
                        errors.append("answered")
                    except QueryError as e:
                        errors.append(str(e))
        assert errors[0] == errors[1] and errors[2] == errors[3], budget
        outcomes.add("at a step" if "in query execution" in errors[0] else errors[0][:20])
    assert "at a step" in outcomes and "answered" in outcomes, outcomes


def test_two_series_of_one_label_set_are_still_refused(store):
    """Two metrics with one label set once rate() drops their names: refused at a step, as alone."""
    st, clock = store
    querier = Querier(st, lambda: clock[0])
    end = clock[0] - 5
    with pytest.raises(QueryError, match="same labelset"):
        querier.range('rate({__name__=~"temp|temp2"}[1m])', end - 600, end, 60)


def test_columns_past_the_budget_are_declined_before_a_cell_is_made(store, monkeypatch, stepped):
    """A selector's columns would hold series x steps cells: past the samples budget the query
    is stepped (holding one step at a time), and the columns are never built."""
    st, clock = store
    end = clock[0] - 5
    querier = Querier(st, lambda: clock[0], max_samples=2_000)  # 3 series x 1,201 steps: 3,603 cells
    built = []
    monkeypatch.setattr(query_module.Loaded, "instants", lambda *a: built.append(a) or [])
    for text in ("requests_total", "sum(requests_total)"):
        try:
            answer = querier.range(text, end - 1200, end, 1)
        except QueryError as e:
            answer = str(e)
        with stepped():
            try:
                alone = querier.range(text, end - 1200, end, 1)
            except QueryError as e:
                alone = str(e)
        assert answer == alone, text
    assert built == [], "columns were built past the budget"
