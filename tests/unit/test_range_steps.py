"""A range query's rate, increase and delta evaluated at every step at once (range_steps):
the same answer, to the bit, as evaluating each step alone, with the same refusals."""

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


@pytest.fixture
def store(tmp_path):
    clock = [T0]
    store = HistoryStore(str(tmp_path / "h.db"), retention=Retention(raw=3600, minute=30 * 86400),
                         clock=lambda: clock[0])
    rng = random.Random(1)
    count = {"a": 0.0, "b": 0.0, "c": 0.0}
    for i in range(3 * 720):  # 3 hours at 5 s: raw for the last hour, minute rollups before
        requests = MetricFamily("requests_total", COUNTER, "r")
        for server in count:
            if server == "c" and 300 <= i < 420:
                continue  # gone for ten minutes: stale markers in the raw samples
            count[server] = 0.0 if rng.random() < 0.01 else count[server] + rng.choice((0, 1, 3, 17))
            requests.samples.append(Sample("requests_total", (("server", server), ("zone", "z")), count[server]))
        temp = MetricFamily("temp", GAUGE, "t", [Sample("temp", (("gpu", "0"),), 40 + rng.random())])
        temp2 = MetricFamily("temp2", GAUGE, "t", [Sample("temp2", (("gpu", "0"),), 30.0)])
        store.append(Snapshot(clock[0], (requests, temp, temp2)))
        store.maintain(clock[0])
        store.settle()
        clock[0] += 5
    yield store, clock
    store.close()


EXPRS = ("rate(requests_total[1m])", "increase(requests_total[5m] offset 10m)", "delta(temp[2m])",
         "sum by (zone) (rate(requests_total[90s]))", "rate(requests_total{server!=\"b\"}[30s]) * 2",
         "max_over_time(rate(requests_total[1m])[10m:1m])", "rate(requests_total[1m]) / rate(requests_total[2m])",
         "rate(temp[1m]) + on() group_left sum(rate(requests_total[1m]))",
         "rate(requests_total[1m]) - rate(requests_total[1m])")


@pytest.mark.parametrize("span,step", [(1800, 15), (3600, 60), (3 * 3600, 300)])
def test_a_batched_range_answers_as_every_step_alone(store, monkeypatch, span, step):
    st, clock = store
    querier = Querier(st, lambda: clock[0])
    end = clock[0] - 5
    for expr in EXPRS:
        batched = querier.range(expr, end - span, end, step)
        with monkeypatch.context() as m:
            m.setattr(query_module, "range_steps", lambda *a: {})
            alone = querier.range(expr, end - span, end, step)
        assert batched == alone, expr
        assert batched[0]["result"], f"{expr} answers something"


def test_a_batched_range_is_refused_where_every_step_alone_is(store, monkeypatch):
    """Each step still spends its window's samples: one series' 10-minute window (~120
    samples) at 601 steps, its answer growing a point a step: budgets around the peak (~720)
    are refused at the same step or answered alike, batched (from 601) or not."""
    st, clock = store
    end = clock[0] - 5
    outcomes = set()
    for budget in range(550, 800, 10):
        querier = Querier(st, lambda: clock[0], max_samples=budget)
        errors = []
        for batching in (True, False):
            with monkeypatch.context() as m:
                if not batching:
                    m.setattr(query_module, "range_steps", lambda *a: {})
                try:
                    querier.range('sum(rate(requests_total{server="a"}[10m]))', end - 600, end, 1)
                    errors.append("answered")
                except QueryError as e:
                    errors.append(str(e))
        assert errors[0] == errors[1], budget
        outcomes.add("at a step" if "in query execution" in errors[0] else errors[0][:20])
    assert "at a step" in outcomes and "answered" in outcomes, outcomes


def test_two_series_of_one_label_set_are_still_refused(store):
    """Two metrics with one label set once rate() drops their names: refused at a step, as alone."""
    st, clock = store
    querier = Querier(st, lambda: clock[0])
    end = clock[0] - 5
    with pytest.raises(QueryError, match="same labelset"):
        querier.range('rate({__name__=~"temp|temp2"}[1m])', end - 600, end, 60)
