"""The rules' history fed snapshot by snapshot, against what its inputs say it must answer:
series coming, going and coming back at random, one kept for a short range and one for a
long one, a recording rule's series beside them, and the bounds on series."""

import random

from agent.model import MetricFamily, Sample, Snapshot
from agent.promql.parser import parse
from agent.rules.history import TRIM_EVERY, History

SHORT, LONG = 60.0, 900.0  # the ranges the two selectors read
LOOKBACK = 300.0


def selector(text):
    return parse(text)


def snapshot(t, present):
    fams = {}
    for name, server, value in present:
        fams.setdefault(name, MetricFamily(name, "gauge", "")).samples.append(Sample(name, (("server", server),), value))
    return Snapshot(t, tuple(fams.values()))


def key(name, server):
    return tuple(sorted((("__name__", name), ("server", server))))


def test_random_comings_and_goings_answer_as_their_inputs_say():
    rng = random.Random(11)
    h = History(lookback=LOOKBACK)
    short, long_ = selector("fast"), selector("slow")
    h.register(short, SHORT)
    h.register(long_, LONG)
    h.register(selector("made"), SHORT)
    h.recorded_names = {"made"}
    written = {}  # series key -> [(t, value)] as ingested
    t = 1000.0
    present = {("fast", "a"), ("slow", "a")}
    for step in range(600):
        for name in ("fast", "slow", "other"):  # "other": no selector reads it
            for server in "abcd":
                if rng.random() < 0.08:
                    present ^= {(name, server)}  # comes or goes
        # a value of its own per series, so that one landing on another series shows
        rows = [(name, server, step * 100.0 + 10 * "abcd".index(server) + len(name)) for name, server in sorted(present)]
        if rng.random() < 0.1:
            rng.shuffle(rows)  # the same series in another order
        h.ingest(snapshot(t, rows))
        if step % 7 == 0:
            h.record("made", [(key("made", "x"), 1.0)], t)  # a recording rule's series: never marked stale by a snapshot
        for name, server, value in rows:
            written.setdefault(key(name, server), []).append((t, value))
        for sel, rng_seconds, name in ((short, SHORT, "fast"), (long_, LONG, "slow")):
            live = sorted(key(n, s) for n, s in present if n == name)
            assert sorted(labels for labels, _ in h.instant(sel, t)) == live  # the vanished are stale at once
            got = {labels: list(window) for labels, window in h.range(sel, t, rng_seconds)}
            want = {k: [p for p in pts if t - rng_seconds <= p[0] <= t] for k, pts in written.items() if k[0][1] == name}
            assert got == {k: v for k, v in want.items() if v}
        assert "other" not in h.series
        assert h.sample_count() == sum(len(col) for by_name in h.series.values() for col in by_name.values())
        kept = max(SHORT, LONG) + LOOKBACK + TRIM_EVERY + 5  # each series cut to its range and lookback, at most a trim late
        assert all(len(col) == 0 or col.t[0] >= t - kept for by_name in h.series.values() for col in by_name.values())
        for col in h.series.get("fast", {}).values():
            assert col.t[0] >= t - (SHORT + LOOKBACK + TRIM_EVERY + 5)  # the short range's series are kept short
        t += 5.0
    assert h.instant(selector("made"), t - 5) != [] and key("made", "x") not in h.stale


def test_a_series_gone_longer_than_its_retention_is_forgotten_and_a_returning_one_is_live_again():
    h = History(lookback=LOOKBACK)
    h.register(selector("fast"), SHORT)
    t = 0.0
    h.ingest(snapshot(t, [("fast", "a", 1.0), ("fast", "b", 1.0)]))
    t += 5
    h.ingest(snapshot(t, [("fast", "a", 2.0)]))
    assert key("fast", "b") in h.stale and [lbl for lbl, _ in h.instant(selector("fast"), t)] == [key("fast", "a")]
    t += SHORT + LOOKBACK + TRIM_EVERY + 5
    h.ingest(snapshot(t, [("fast", "a", 3.0)]))
    assert set(h.series["fast"]) == {key("fast", "a")} and key("fast", "b") not in h.stale  # gone for good
    h.ingest(snapshot(t + 5, [("fast", "a", 4.0), ("fast", "b", 5.0)]))
    assert sorted(v for _, v in h.instant(selector("fast"), t + 5)) == [4.0, 5.0]
    h.ingest(snapshot(t + 10, [("fast", "a", 6.0)]))
    assert key("fast", "b") in h.stale  # back, then gone again: stale again
    assert h.sample_count() == 4  # a: 3, 4, 6 (1 and 2 aged out with b's first two); b: 5


def test_a_reload_that_makes_a_name_a_recording_rules_stops_snapshots_marking_it_stale():
    h = History(lookback=LOOKBACK)
    h.register(selector("x"), SHORT)
    h.ingest(snapshot(0.0, [("x", "a", 1.0)]))
    h.recorded_names = {"x"}  # now a recording rule writes it
    h.clear_selectors()
    h.register(selector("x"), SHORT)
    h.ingest(snapshot(5.0, []))
    assert key("x", "a") not in h.stale
