"""The agent's PromQL subset against a real Prometheus, on exactly the same samples.

The data set is backfilled into Prometheus' TSDB with `promtool tsdb create-blocks-from
openmetrics` and fed point by point into the agent's History; every expression of
tests/fixtures/promql/corpus.txt is then evaluated by both at several times, and the label
sets and values must agree (values to 1e-9 relative: Prometheus and Python may round a
Kahan sum's last bit differently). Errors must agree too.
"""

import math
from pathlib import Path

import pytest

from agent.promql.evaluator import EvalError, Evaluator, Matrix
from agent.rules.history import History
from agent.promql.parser import PromQLError, parse
from tests.support.promql_data import backfilled_prometheus, dataset

CORPUS = [line.strip() for line in (Path(__file__).parent.parent / "fixtures" / "promql" / "corpus.txt").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
# seconds into the data: mid-run off the grid, after the reset, the end, past the end (the lookback)
OFFSETS = (607, 900, 1200, 1290)
STEP = 60  # Prometheus' default evaluation interval: a subquery's step when it gives none


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    base, prom = backfilled_prometheus(tmp_path_factory.mktemp("promql"))
    history = History()
    for (name, labels), points in dataset():
        key = tuple(sorted({**labels, "__name__": name}.items()))
        for t, v in points:
            history.add(key, base + t, v)
    yield base, history, prom
    prom.stop()


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def prometheus_answer(prom, expr, at):
    doc = prom.query_raw(expr, at)
    if doc["status"] != "success":
        return "error", doc.get("error", "")
    data = doc["data"]
    kind = data["resultType"]
    if kind == "scalar":
        return "scalar", float(data["result"][1])
    if kind == "string":
        return "string", data["result"][1]
    if kind == "matrix":
        return "matrix", {tuple(sorted(r["metric"].items())): [(float(t), float(v)) for t, v in r["values"]]
                          for r in data["result"]}
    return "vector", {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}


def agent_answer(history, expr, at):
    try:
        value = Evaluator(history, step=STEP).eval(parse(expr), at)
    except (EvalError, PromQLError) as e:
        return "error", str(e)
    if isinstance(value, float):
        return "scalar", value
    if isinstance(value, str):
        return "string", value
    if isinstance(value, Matrix):
        return "matrix", {labels: list(points) for labels, points in value}
    assert len({labels for labels, _ in value}) == len(value), "a vector with two series of one label set"
    return "vector", dict(value)


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 400


@pytest.mark.parametrize("expr", CORPUS)
def test_same_result_as_prometheus(both, expr):
    base, history, prom = both
    for offset in OFFSETS:
        at = base + offset
        p_kind, p_value = prometheus_answer(prom, expr, at)
        a_kind, a_value = agent_answer(history, expr, at)
        where = f"{expr!r} at +{offset}s"
        assert a_kind == p_kind, f"{where}: agent gave {a_kind} {a_value!r}, Prometheus {p_kind} {p_value!r}"
        if p_kind == "error":
            continue
        if p_kind == "scalar":
            assert close(a_value, p_value), f"{where}: agent {a_value}, Prometheus {p_value}"
            continue
        if p_kind == "string":
            assert a_value == p_value, f"{where}: agent {a_value!r}, Prometheus {p_value!r}"
            continue
        assert set(a_value) == set(p_value), (f"{where}: label sets differ\n agent only: {set(a_value) - set(p_value)}"
                                              f"\n Prometheus only: {set(p_value) - set(a_value)}")
        for labels, pv in p_value.items():
            av = a_value[labels]
            if p_kind == "matrix":
                assert [t for t, _ in av] == [t for t, _ in pv], f"{where} {dict(labels)}: times differ: {av} vs {pv}"
                assert all(close(a, p) for (_, a), (_, p) in zip(av, pv)), f"{where} {dict(labels)}: {av} vs {pv}"
            else:
                assert close(av, pv), f"{where} {dict(labels)}: agent {av}, Prometheus {pv}"
