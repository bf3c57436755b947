"""promql.evaluator.StepMemo: a history rule's subqueries keep their settled steps from one
round to the next; every round answers what evaluating it afresh answers."""

import time

import pytest

from agent.model import COUNTER, GAUGE, MetricFamily, Sample, Snapshot
from agent.promql.ast import Subquery, children
from agent.promql.evaluator import StepMemo
from agent.promql.parser import parse
from agent.tsdb.query import SETTLED, Loaded, Querier, QueryError
from agent.tsdb.store import HistoryStore


@pytest.fixture
def history(tmp_path):
    clock = [float(int(time.time())) - 7200]
    store = HistoryStore(str(tmp_path / "h.db"), clock=lambda: clock[0])

    def write(seconds):
        for _ in range(seconds // 10):
            n = int(clock[0])
            fams = (MetricFamily("g", GAUGE, "", [Sample("g", (("k", str(k)),), float((n * 7 + k) % 13)) for k in range(3)]),
                    MetricFamily("c_total", COUNTER, "", [Sample("c_total", (("k", str(k)),), float(n % 1800 + k))
                                                          for k in range(3)]))  # resets every half hour
            store.append(Snapshot(clock[0], fams))
            clock[0] += 10

    write(5400)
    yield store, clock, write
    store.close()


EXPRS = ("avg_over_time((rate(c_total[5m]))[1h:5m])", "max_over_time(g[10m:1m]) - min_over_time((g * 2)[30m:30s])",
         "stddev_over_time((sum by (k) (rate(c_total[2m])))[1h:1m]) and on(k) g >= 0",
         # a half hour an hour ago beside the last five minutes (two reads of g), and a subquery over both
         "avg_over_time(g[30m] offset 1h) - avg_over_time(g[5m]) + stddev_over_time((g - g offset 30m)[1h:1m])")


def subqueries(node):
    return ([node] if isinstance(node, Subquery) else []) + [s for c in children(node) for s in subqueries(c)]


def test_rounds_with_kept_steps_answer_as_rounds_without(history, monkeypatch):
    store, clock, write = history
    querier = Querier(store, lambda: clock[0])
    memos = {e: StepMemo() for e in EXPRS}
    evaluated = []  # each selector's read at each step: the work a kept step saves
    for read in ("instant", "range"):
        plain = getattr(Loaded, read)
        monkeypatch.setattr(Loaded, read, lambda self, *a, plain=plain: evaluated.append(a) or plain(self, *a))
    for _round in range(4):
        for expr in EXPRS:
            evaluated.clear()
            fresh, _ = querier.instant(expr, clock[0])
            afresh = len(evaluated)
            evaluated.clear()
            kept, _ = querier.instant(expr, clock[0], steps=memos[expr])
            assert kept == fresh, (expr, _round)
            if _round:  # after the first round only the steps since the last settled one are worked out
                assert len(evaluated) < afresh / 2, (expr, len(evaluated), afresh)
            if _round % 2:
                memos[expr].rehome()  # as HistoryRules does after a round: the same steps, in memory of its own
        write(300)  # five minutes more, as between two rounds


def test_steps_not_yet_settled_are_worked_out_again(history):
    """A cycle stamps its samples when it starts and writes them when it ends: a step less than
    SETTLED old may still get samples, so it is never kept."""
    store, clock, write = history
    querier = Querier(store, lambda: clock[0])
    expr = "sum_over_time(g[10m:1s])"
    memo = StepMemo()
    querier.instant(expr, clock[0] + 30, steps=memo)  # steps past the last sample
    write(30)  # the samples for them arrive
    fresh, _ = querier.instant(expr, clock[0])
    assert querier.instant(expr, clock[0], steps=memo)[0] == fresh
    [sub] = subqueries(parse(expr))
    first, values = memo.last(repr(sub), 1000)
    assert values and first + (len(values) - 1) * 1000 <= (clock[0] - SETTLED) * 1000  # the settled steps only


def test_a_subquery_that_reads_past_its_steps_keeps_none(history):
    store, clock, _ = history
    querier = Querier(store, lambda: clock[0])
    for expr in ("max_over_time((g offset -1m)[10m:1m])", "max_over_time((g @ end())[10m:1m])"):
        memo = StepMemo()
        querier.instant(expr, clock[0], steps=memo)
        [sub] = subqueries(parse(expr))
        assert memo.last(repr(sub), 60_000) == (0, [])


def test_a_round_with_kept_steps_reads_only_the_windows_of_its_new_steps(history):
    """The steps a round takes from the memo need no samples: a week-old history's rules read
    days of rollups every 5 minutes for the one step in 336 that was new. Seen from outside:
    after the first round, a budget the whole window's samples exceed is enough."""
    store, clock, write = history
    expr = "avg_over_time((rate(c_total[5m]))[1h:5m]) + stddev_over_time((g - g offset 30m)[1h:1m])"
    memo = StepMemo()
    Querier(store, lambda: clock[0]).instant(expr, clock[0], steps=memo)
    write(300)
    small = Querier(store, lambda: clock[0], max_samples=1_000)  # the windows: ~3 x 3 x 600 samples
    with pytest.raises(QueryError, match="too many samples"):
        small.instant(expr, clock[0])
    kept, _ = small.instant(expr, clock[0], steps=memo)
    assert kept == Querier(store, lambda: clock[0]).instant(expr, clock[0])[0] and kept["result"]
