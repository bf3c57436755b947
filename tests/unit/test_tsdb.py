"""The history file: chunk codec (round trips, fuzz), rollups, the store's reads before and
after sealing, staleness, compaction, retention, limits, and the file's faults (kill -9 in a
loop, a full disk, a corrupt or foreign file in its place)."""

import contextlib
import logging
import math
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from array import array

import pytest

from agent.model import GAUGE, MetricFamily, Sample, Snapshot, counter, gauge
from agent.promql.parser import parse
from agent.tsdb import codec, rollup
from agent.tsdb.index import Layouts, Positions
from agent.tsdb.recorder import Recorder
from agent.tsdb.rollup import decode_rollups, encode_rollups
from agent.tsdb.store import HistoryStore
from agent.tsdb.tiers import FIVE_MINUTES, FIVE_MINUTES_FROM, HOUR, MINUTE, RAW, Retention

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: windows and hours start on it


def bits(values):
    return [struct.pack("<d", v) for v in values]


# -- codec ------------------------------------------------------------------------------------

COLUMNS = {
    "integers": [float(i % 7 - 3) for i in range(300)],
    "decimals": [round(300 + 10 * math.sin(i / 9), 3) for i in range(300)],
    "counter": [float(i * 1234567) for i in range(300)],
    "ratios": [random.Random(1).random() for _ in range(300)],
    "specials": [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, 5e-324, codec.STALE, 2.0 ** 53, -(2.0 ** 60)] * 3,
    "one": [42.5],
    "big decimals": [9_007_199_254.740_991, 1e15 + 0.5, 123456789.123456],
}


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_codec_gives_back_the_very_same_doubles(name):
    values = COLUMNS[name]
    times = [T0 + 5 * i + (0.001 * (i % 3)) for i in range(len(values))]
    blob = codec.encode(codec.encode_times([round(t * 1000) for t in times]), len(values), [array("d", values)])
    got_times, cols = codec.decode(blob)
    assert got_times == [round(t * 1000) / 1000 for t in times]
    assert bits(cols[0]) == bits(values)  # NaN payloads (the stale marker) and -0.0 included


def test_decimal_columns_are_small():
    temps = array("d", [float(60 + (i // 7) % 5) for i in range(360)])
    watts = array("d", [round(300 + 25 * math.sin(i / 20), 3) for i in range(360)])
    for col, most in ((temps, 100), (watts, 600)):
        assert len(codec.encode_column(col)) < most  # 360 doubles are 2,880 bytes


def test_codec_fuzz_raises_only_corrupt_chunk():
    rand = random.Random(7)
    good = [codec.encode(codec.encode_times([i * 5000 for i in range(50)]), 50, [array("d", COLUMNS[n][:50])])
            for n in ("integers", "decimals", "ratios")]
    good.append(encode_rollups([(T0 + 60 * i, 1.0, 3.0, 24.0, 12.0, 2.0 + i) for i in range(40)]))
    for _ in range(3000):
        blob = bytearray(rand.choice(good))
        how = rand.random()
        if how < 0.4:
            for _ in range(rand.randint(1, 4)):
                blob[rand.randrange(len(blob))] = rand.randrange(256)
        elif how < 0.7:
            del blob[rand.randrange(len(blob)):]
        elif how < 0.9:
            blob = bytearray(rand.randbytes(rand.randint(0, 200)))
        else:
            blob += rand.randbytes(rand.randint(1, 20))
        for read in (codec.decode, decode_rollups, lambda b: decode_rollups(b, ("avg",), T0, T0 + 600),
                     lambda b: decode_rollups(b, ("max",)), lambda b: rollup.decode_column(b, "avg", T0, T0 + 600),
                     lambda b: rollup.decode_column(b, "last")):
            try:
                read(bytes(blob))
            except codec.CorruptChunk:
                pass


def test_a_header_claiming_a_huge_chunk_is_refused_without_allocating():
    blob = codec.MAGIC + struct.pack("<BII", 1, codec.MAX_POINTS + 1, 4) + b"xxxx"
    with pytest.raises(codec.CorruptChunk):
        codec.decode(blob)
    bomb = codec.MAGIC + struct.pack("<BII", 1, 1, 0) + struct.pack("<BBI", 0, 0, 0)
    with pytest.raises(codec.CorruptChunk):
        codec.decode(bomb)


# -- rollups -------------------------------------------------------------------------------------

def test_rollups_summarise_and_merge_like_one_pass():
    rand = random.Random(3)
    times = [T0 + 5 * i for i in range(2000)]
    values = [float(rand.randint(0, 100)) for _ in times]
    values[100] = math.nan
    whole = rollup.summarise(times, values, 3600)
    halves = rollup.merge(rollup.summarise(times[:777], values[:777], 3600),
                          rollup.summarise(times[777:], values[777:], 3600), 3600)
    assert whole == halves
    minutes = rollup.summarise(times, values, 60)
    assert rollup.merge([], minutes, 3600) == whole  # hours from minutes: what compaction does
    first = [v for t, v in zip(times, values) if t < T0 + 60]
    assert minutes[0] == (T0 + 55, min(first), max(first), math.fsum(first), 12.0, first[-1])
    assert rollup.column_points(minutes[:1], "avg") == [(T0 + 55, math.fsum(first) / 12)]


def test_a_summary_fed_a_sample_at_a_time_gives_what_summarise_gives():
    """rollup.Summary (the head summarised as it is read) against summarise over all the
    samples: times on bucket edges and a hair either side of them, NaN, stale markers,
    infinities, gaps of several buckets."""
    rng = random.Random(11)
    for _ in range(300):
        resolution = rng.choice([60.0, 300.0, 3600.0])
        t, times = T0 + rng.choice([0.0, -1e-6, 17.5]), []
        for _ in range(rng.randrange(0, 200)):
            t += rng.choice([5.0, 5.0, 0.001, resolution, 3 * resolution])
            edge = math.ceil(t / resolution) * resolution
            times.append(max(t, rng.choice([t, edge, math.nextafter(edge, -math.inf), math.nextafter(edge, math.inf)])))
            t = times[-1]
        values = [rng.choice([float(rng.randrange(100)), rng.random(), math.nan, codec.STALE, math.inf, -math.inf])
                  for _ in times]
        summary = rollup.Summary(resolution)
        for point in zip(times, values):
            summary.append(point)
        assert bits(sum(summary.rollups(), ())) == bits(sum(rollup.summarise(times, values, resolution), ()))


def _plain_merge(points, resolution):
    """rollup.merge written plainly: stably sorted by time, each run of one bucket folded point by point."""
    groups = []
    for p in sorted(points, key=lambda p: p[0]):
        if groups and math.floor(groups[-1][0][0] / resolution) == math.floor(p[0] / resolution):
            groups[-1].append(p)
        else:
            groups.append([p])
    def plain_sum(values):  # fsum, or where it refuses (inf + -inf, past the largest double) the plain sum
        try:
            return math.fsum(values)
        except (ValueError, OverflowError):
            return sum(values)

    return [g[0] if len(g) == 1 else (g[-1][0], min(q[1] for q in g), max(q[2] for q in g), plain_sum([q[3] for q in g]),
                                      sum(q[4] for q in g), g[-1][5]) for g in groups]


def test_merge_folds_each_bucket_as_a_plain_walk_does():
    """rollup.merge folds slices of columns (compaction's hot loop): the same doubles as a walk
    point by point, for lists out of order, overlapping buckets, NaN, infinities and signed zeros."""
    rand = random.Random(11)
    specials = [math.nan, math.inf, -math.inf, -0.0, 0.0]

    def point():
        low, high, total = (rand.choice(specials) if rand.random() < 0.05 else rand.uniform(-50, 50) for _ in range(3))
        return (T0 + rand.randint(0, 7_200_000) / 1000, low, high, total, float(rand.randint(1, 12)), rand.uniform(-5, 5))

    for case in range(300):
        older = sorted((point() for _ in range(rand.randint(0, 40))), key=lambda p: p[0])
        newer = [point() for _ in range(rand.randint(0, 40))]
        if case % 3:
            newer.sort(key=lambda p: p[0])
        for resolution in (60.0, 300.0, 3600.0):
            assert repr(rollup.merge(older, newer, resolution)) == repr(_plain_merge(older + newer, resolution))


def test_a_span_compacts_as_columns_to_what_its_rollups_give():
    """Compaction reads a span's minute chunks as columns (rollup.joined), folds them into 5
    minutes and hours (rollup.fold) and encodes columns (encode_columns): the same chunks as
    the rollups merged as tuples, for parts in order and out of it."""
    rand = random.Random(7)
    minutes = [(T0 + 60 * i + 55, v - 1.5, v + 2.25, 12 * v + rand.randint(-9, 9), 12.0, v)
               for i, v in enumerate(float(rand.randint(0, 100)) for _ in range(360))]
    chunks = [encode_rollups(minutes[k:k + 30]) for k in range(0, 360, 30)]
    for parts in (chunks, chunks[6:] + chunks[:6]):
        columns = rollup.joined([rollup.decode_columns(blob) for blob in parts])
        assert list(zip(*columns)) == minutes
        assert rollup.encode_columns(columns) == encode_rollups(minutes)
        for resolution in (300.0, 3600.0):
            folded = rollup.fold(columns, resolution)
            assert list(zip(*folded)) == rollup.merge([], minutes, resolution)
            assert rollup.encode_columns(folded, counter=True) == encode_rollups(rollup.merge([], minutes, resolution), counter=True)
    assert rollup.columns_or_log(b"LH\x02 damaged", "h.db") == ([],) * 6


def test_rollup_chunks_round_trip_with_offsets_and_without():
    decimals = [(T0 + 60 * i, 1.5 + i, 3.25 + i, 30.5 + 12 * i, 12.0, 2.125 + i) for i in range(60)]
    mixed = [(T0 + 60 * i, 0.1 * i, 1.0, 7.0, 3.0, 1 / 3) for i in range(60)]
    two_scales = [(T0 + 60 * i + 55.5, 1.25, 3.0, 24.375, 12.0, 2.0 + (i % 3)) for i in range(60)]  # last's k below the others'
    uneven = [(T0 + 60 * i + 55, 1.0, 9.0, 5.0 * (1 + i % 4), float(1 + i % 4), 5.0) for i in range(60)]
    for points in (decimals, mixed, two_scales, uneven):
        assert decode_rollups(encode_rollups(points)) == points
    counters = [(T0 + 60 * i, 100.0 + 12 * i, 111.0 + 12 * i, 0.0, 12.0, 111.0 + 12 * i) for i in range(10)]
    read = decode_rollups(encode_rollups(counters, counter=True))
    assert [p[5] for p in read] == [p[5] for p in counters]
    assert [v for _, v in rollup.column_points(read, "avg")] == [p[5] for p in read]  # a counter's average is its last value


def test_a_query_decodes_only_the_columns_it_reads_within_its_window():
    decimals = [(T0 + 60 * i, 1.5 + i, 3.25 + i, 30.5 + 12 * i, 12.0, 2.125 + i) for i in range(60)]
    mixed = [(T0 + 60 * i, 0.1 * i, 1.0, 7.0, 3.0, 1 / 3) for i in range(60)]
    for points in (decimals, mixed):
        blob = encode_rollups(points)
        window = points[10:21]
        for columns in (("avg",), ("last",), ("min",), ("max",), ("last", "avg")):
            read = decode_rollups(blob, columns, T0 + 600, T0 + 1200)
            assert len(read) == 11
            for name in ("avg", "last", "min", "max"):
                got, want = rollup.column_points(read, name), rollup.column_points(window, name)
                if name in columns or (name == "last"):
                    assert got == want, (columns, name)
                else:  # not decoded
                    assert all(math.isnan(v) for _, v in got), (columns, name)


def _same_points(got, want):
    assert len(got) == len(want)
    for (t1, v1), (t2, v2) in zip(got, want):
        assert t1 == t2 and (v1 == v2 or (v1 != v1 and v2 != v2)), ((t1, v1), (t2, v2))


def test_a_column_read_straight_from_a_chunk_is_what_the_rollups_give():
    """decode_column (a query's fast path) against column_points(decode_rollups): the same
    doubles for every way a chunk is stored (offsets in one scale or two, doubles, counters,
    NaN), every window edge (on a point, between points, a millisecond either side, outside)."""
    rand = random.Random(5)
    shapes = {
        "offsets": [(T0 + 60 * i + 55, 1.5 + i, 3.25 + i, 30.5 + 12 * i, 12.0, 2.125 + i) for i in range(90)],
        "two scales": [(T0 + 60 * i + 55.5, 1.25, 3.0, 24.375, 12.0, 2.0 + (i % 3)) for i in range(90)],
        "doubles": [(T0 + 60 * i + 0.001 * i, 0.1 * i, 1.0, 7.0, 3.0, 1 / 3) for i in range(90)],
        "walks": [(T0 + 60 * i + 57.123, v - 2, v + 1, 12 * v + rand.randint(-9, 9), 12.0, v)
                  for i, v in enumerate(float(rand.randint(0, 100)) for _ in range(90))],
        "uneven counts": [(T0 + 60 * i + 55, 1.0, 9.0, 5.0 * (1 + i % 4), float(1 + i % 4), 5.0) for i in range(90)],
        "nan": [(T0 + 60 * i, math.nan if i % 7 == 0 else 1.0, 2.0, 3.0, 1.0, 0.5 * i) for i in range(90)],
    }
    blobs = {name: encode_rollups(points) for name, points in shapes.items()}
    blobs["counter"] = encode_rollups([(T0 + 60 * i + 55, 100.0 + 12 * i, 111.0 + 12 * i, 0.0, 12.0, 111.0 + 12 * i)
                                       for i in range(90)], counter=True)
    edges = [-math.inf, math.inf, T0, T0 + 55, T0 + 55.5, T0 + 600 + 55, T0 + 600 + 55 - 0.001, T0 + 600 + 55.001,
             T0 + 57.123, T0 + 3000.0, T0 + 99999.0, T0 - 1]
    for blob in blobs.values():
        for start in edges:
            for end in edges:
                for column in ("avg", "last", "min", "max"):
                    want = rollup.column_points(decode_rollups(blob, (column,), start, end), column)
                    _same_points(rollup.decode_column(blob, column, start, end), want)


# -- the store -------------------------------------------------------------------------------------

class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def snap(t, temps, requests=None, extra=()):
    fams = [gauge("gpu_temp", "t")]
    for gpu, value in temps.items():
        fams[0].add({"gpu": gpu}, value)
    if requests is not None:
        fams.append(counter("requests_total", "r").add({"server": "a"}, requests))
    return Snapshot(t, tuple(fams) + tuple(extra))


def fill(store, clock, cycles, interval=5.0, vanish=None):
    """Cycles of two GPUs and a counter; GPU 1 absent while vanish(i) is true. Returns what was written."""
    written = {"0": [], "1": [], "req": []}
    for i in range(cycles):
        t = clock.t
        temps = {"0": float(40 + i % 9)}
        if not (vanish and vanish(i)):
            temps["1"] = round(50 + 3 * math.sin(i / 5), 2)
            written["1"].append((t, temps["1"]))
        written["0"].append((t, temps["0"]))
        written["req"].append((t, float(i * 3)))
        store.append(snap(t, temps, i * 3))
        store.maintain(t)
        store.settle()
        clock.t += interval
    return written


def ids(store, name, **labels):
    want = tuple(sorted({"__name__": name, **labels}.items()))
    return next(i for i, info in store.series.items() if info.labels == want)


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    s = HistoryStore(str(tmp_path / "history.db"), clock=clock)
    s.test_clock = clock
    yield s
    s.close()


def test_raw_reads_are_exact_before_and_after_sealing(store):
    clock = store.test_clock
    written = fill(store, clock, 500, vanish=lambda i: 200 <= i < 230)  # ~42 minutes: one window sealed
    assert store.stats.seals == 1
    sid = ids(store, "gpu_temp", gpu="1")
    raw = store.reader().raw([sid], T0, clock.t)[sid]
    stale = [p for p in raw if codec.is_stale(p[1])]
    assert [t for t, _ in stale] == [T0 + 5 * 200]  # Prometheus' staleness marker where it vanished
    assert [p for p in raw if not codec.is_stale(p[1])] == written["1"]
    store.maintain(clock.t + 3600, wait=True)  # nothing more is due: the head keeps its open window
    assert store.reader().raw([sid], T0, clock.t)[sid][-5:] == raw[-5:]


def test_a_series_gone_at_a_seal_boundary_still_gets_its_marker(store):
    clock = store.test_clock
    fill(store, clock, 400, vanish=lambda i: i >= 360)  # GPU 1 stops exactly where the first window ends
    sid = ids(store, "gpu_temp", gpu="1")
    raw = store.reader().raw([sid], T0, clock.t)[sid]
    assert codec.is_stale(raw[-1][1]) and raw[-1][0] == T0 + 1800


@pytest.mark.parametrize("values", [(math.inf, math.inf, -math.inf, -math.inf, math.inf, -math.inf), (1.7e308,)])
def test_infinities_of_both_signs_or_sums_past_the_largest_double_seal_and_compact(store, values):
    """A bucket's sum is math.fsum's, which raises on inf + -inf (ValueError) and on a sum past
    the largest double (OverflowError): a target exposing either failed every seal of its window
    (the head kept growing) and every 6-hourly compaction. The sum is NaN or infinite, as
    Prometheus' sum_over_time gives it."""
    clock = store.test_clock
    for i in range(7 * 120):  # 7 hours at 30 s: minutes of +inf, of -inf and of both; a compaction
        fam = gauge("odd", "o")
        fam.add({}, values[i % len(values)])
        store.append(Snapshot(clock.t, (fam,)))
        store.maintain(clock.t)
        store.settle()
        clock.t += 30
    store.maintain(clock.t, wait=True)
    assert store.stats.write_errors == 0 and store.stats.seals >= 13
    sid = ids(store, "odd")
    reader = store.reader()
    sums = {tier: [p[3] for p in reader.rollups([sid], tier, T0, clock.t)[sid]] for tier in (MINUTE, FIVE_MINUTES, HOUR)}
    assert all(len(sums[tier]) >= n for tier, n in ((MINUTE, 400), (FIVE_MINUTES, 72), (HOUR, 6))), {t: len(v) for t, v in sums.items()}
    if len(values) > 1:
        assert {repr(v) for v in sums[MINUTE]} == {"inf", "-inf", "nan"} and all(v != v for v in sums[HOUR])
    else:
        assert all(v == math.inf for tier in sums for v in sums[tier])


def test_a_seal_that_fails_is_tried_again_a_minute_on_not_every_cycle(store, monkeypatch):
    """A seal that fails for its data fails at every try: tried at every cycle, it cost a seal's
    CPU every 5 s; waited for (maintain(wait=True)), it looped for ever. It is tried a minute on,
    logged once, and seals once it can."""
    from agent.tsdb.seal import SEAL_RETRY, Sealer

    clock = store.test_clock
    plan = Sealer._plan_seal
    tries = []

    def failing(self, db, window):
        tries.append(clock.t)
        raise sqlite3.DatabaseError("a head row refers to unknown layout 9")

    monkeypatch.setattr(Sealer, "_plan_seal", failing)
    fill(store, clock, 600)  # 50 minutes: the first window due from minute 30 on, 240 cycles
    store.maintain(clock.t, wait=True)  # returns: the failure is waited for, not looped on
    assert 2 <= len(tries) <= 240 * 5 / SEAL_RETRY + 2, len(tries)
    assert all(b - a >= SEAL_RETRY for a, b in zip(tries, tries[1:]))
    assert store.stats.seals == 0 and store.stats.write_errors == len(tries)
    monkeypatch.setattr(Sealer, "_plan_seal", plan)
    fill(store, clock, 13)  # a minute on: sealed
    assert store.stats.seals == 1


def test_damaged_head_rows_are_left_out_of_every_read_and_the_seal_not_kept_from_sealing(store, caplog):
    """A head row of a layout the file does not know, or not of its layout's length (a file
    another version wrote, a bad disk): the seal failed at every try, so its window stayed in
    the head for ever (until max_disk trimmed it), and a read of the head raised struct.error.
    Now such rows are left out: reads see the cycles around them, without stale markers; the
    seal seals the rest, counts them, and logs once."""
    from agent.tsdb.query import Querier

    clock = store.test_clock
    written = fill(store, clock, 100)
    lid = store.layouts.current_id
    good = store.db.execute("SELECT vals FROM head WHERE t = ?", (clock.t - 5,)).fetchone()[0]
    store.db.executemany("INSERT INTO head (t, layout, vals) VALUES (?, ?, ?)",
                         [(clock.t - 2.5, 9999, good), (clock.t - 1.5, lid, good[:-3]), (clock.t - 0.5, lid, "text")])
    sid = ids(store, "gpu_temp", gpu="1")
    q = Querier(store, clock)
    before = store.reader().raw([sid], T0, clock.t)[sid]
    assert before == written["1"], "no value and no stale marker from the damaged rows"
    assert q.instant("count_over_time(gpu_temp[10m])", clock.t)[0]["result"][0]["value"][1] == "100"
    assert store.reader().rollup_points({sid: "avg"}, MINUTE, T0, clock.t)[sid]
    with caplog.at_level(logging.ERROR, logger="agent.tsdb.seal"):
        written_after = fill(store, clock, 300)  # the window is due: sealed, the damaged rows left out
        store.maintain(clock.t, wait=True)
    assert store.stats.seals == 1 and store.stats.write_errors == 0
    assert store.stats.damaged_rows == 3
    assert [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()] == [
        "history: 3 head rows of the window from 2026-01-01 00:00:00 UTC could not be read (an unknown layout, or a "
        "length not their layout's) and were left out of its seal"]
    assert store.reader().raw([sid], T0, clock.t)[sid] == written["1"] + written_after["1"]
    assert store.db.execute("SELECT COUNT(*) FROM head WHERE t < ?", (T0 + 1800,)).fetchone()[0] == 0
    families = {f.name: f for f in Recorder(store).families()}
    assert families["llm_agent_disk_history_damaged_rows_total"].samples[0].value == 3


def test_random_damaged_head_rows_never_break_a_read_or_a_seal(store):
    """Fuzz: head rows of random layouts (known or not) and random lengths and types, between
    good cycles: every read answers with the good cycles' values, every seal seals, and each
    damaged row is counted once."""
    from agent.tsdb.query import Querier

    rng = random.Random(7)
    clock = store.test_clock
    written = {"0": [], "1": [], "req": []}
    damaged = 0
    q = Querier(store, clock)
    for _ in range(8):  # 8 x 100 cycles: two windows sealed, the rest in the head
        part = fill(store, clock, 100)
        for key in written:
            written[key] += part[key]
        known = store.layouts.known()
        rows = []
        for _ in range(rng.randrange(1, 6)):
            lid = rng.choice(known + [rng.randrange(-5, 10_000)])
            width = len(store.layouts.ids(lid) or ())
            vals = rng.choice([b"", bytes(rng.randrange(0, 64)), bytes(max(0, 8 * width + rng.choice([-8, -1, 1, 8]))),
                               "text", None, 3.5, struct.pack("<d", 1.0) * (width + 1)])
            if vals is None:
                continue  # (the schema refuses NULL)
            rows.append((clock.t - 5 + rng.random() * 4.9, lid, vals))
        rows = list({t: (t, lid, vals) for t, lid, vals in rows}.values())
        store.db.executemany("INSERT INTO head (t, layout, vals) VALUES (?, ?, ?)", rows)
        damaged += len(rows)
        sid = ids(store, "gpu_temp", gpu="1")
        assert store.reader().raw([sid], T0, clock.t)[sid] == written["1"], "no value and no stale marker from them"
        assert q.instant("count_over_time(gpu_temp[1h])", clock.t)[0]["result"]
        assert q.range("rate(requests_total[5m])", clock.t - 1800, clock.t, 60)[0]["result"]
    store.maintain(clock.t, wait=True)
    assert store.stats.seals == 2 and store.stats.write_errors == 0
    sealed_until = T0 + 3600
    in_sealed = store.stats.damaged_rows
    assert 0 < in_sealed <= damaged
    assert store.db.execute("SELECT COUNT(*) FROM head WHERE t < ?", (sealed_until,)).fetchone()[0] == 0
    sid = ids(store, "gpu_temp", gpu="1")
    assert store.reader().raw([sid], T0, clock.t)[sid] == written["1"]


def test_a_seal_holds_one_series_at_a_time_not_the_window_of_every_series(tmp_path):
    """The seal's working set is the window's values and one series' rollups: the Python
    objects it allocates at its peak stay under 3x the window's doubles. (Every series' rollups
    as tuples, kept for the whole seal, were 5x and stayed in the heap: +5 MiB of the daemon's
    RSS after its first seal.)"""
    import tracemalloc

    clock = Clock()
    store = HistoryStore(str(tmp_path / "history.db"), clock=clock)
    width = 2000
    try:
        for i in range(361):
            fam = gauge("gpu_stat", "s")
            for k in range(width):
                fam.add({"k": str(k)}, float((i * 7 + k) % 97) + 0.25)
            store.append(Snapshot(clock.t, (fam,)))
            clock.t += 5.0
        window = 360 * width * 8
        tracemalloc.start()
        try:
            store.maintain(clock.t, wait=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert store.stats.seals == 1 and not store.stats.write_errors
        assert peak < 3 * window, f"the seal's peak {peak / 2**20:.1f} MiB for a window of {window / 2**20:.1f} MiB"
        sid = ids(store, "gpu_stat", k="1999")
        assert [v for _, v in store.reader().raw([sid], T0, T0 + 1799)[sid]][:3] == [float(1999 % 97) + 0.25,
                                                                                  float(2006 % 97) + 0.25,
                                                                                  float(2013 % 97) + 0.25]
    finally:
        store.close()


def test_rollups_from_the_store_match_rollups_of_what_was_written(store):
    clock = store.test_clock
    written = fill(store, clock, 7 * 720 + 30)  # 7 hours: one 6-hour span compacted, hours rolled up
    assert store.db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()[0] == repr(T0 + 6 * 3600)
    for key, name, labels in (("0", "gpu_temp", {"gpu": "0"}), ("1", "gpu_temp", {"gpu": "1"}),
                              ("req", "requests_total", {"server": "a"})):
        sid = ids(store, name, **labels)
        times = [t for t, _ in written[key]]
        values = [v for _, v in written[key]]
        for tier, res in ((MINUTE, 60.0), (FIVE_MINUTES, 300.0), (HOUR, 3600.0)):
            got = store.reader().rollups([sid], tier, T0, clock.t)[sid]
            want = rollup.summarise(times, values, res)
            if key == "req":  # a counter keeps no sum: it reads as last * count
                got = [p[:3] + p[4:] for p in got]
                want = [p[:3] + p[4:] for p in want]
            elif tier != MINUTE:  # made of the minutes' sums, added: within an ulp of the samples' sum
                assert [p[3] for p in got] == pytest.approx([p[3] for p in want], rel=1e-15, abs=0), (key, tier)
                got = [p[:3] + p[4:] for p in got]
                want = [p[:3] + p[4:] for p in want]
            assert got == want, (key, tier)


def test_a_query_reads_the_points_the_rollups_give_with_the_head_merged_in(store):
    """reader.rollup_points (column by column, only the newest bucket merged as rollups)
    against column_points of reader.rollups, at every cut of a seal: minutes and hours,
    windows that start and end inside buckets, a series that vanished for a while."""
    clock = store.test_clock
    reader = store.reader()
    for cycles in (400, 7 * 720 + 30, 80):  # sealed windows with a head; hours compacted; a head only
        fill(store, clock, cycles, vanish=lambda i: 300 <= i < 330)
        for tier in (MINUTE, HOUR):
            for start, end in ((T0, clock.t), (T0 + 97.5, clock.t - 61), (clock.t - 1500, clock.t)):
                columns = {sid: column for sid, column in zip(store.series, ("avg", "last", "max"))}
                got = reader.rollup_points(columns, tier, start, end)
                full = reader.rollups(list(columns), tier, start, end)
                for sid, column in columns.items():
                    _same_points(got[sid], rollup.column_points(full[sid], column))


def test_a_stored_bucket_the_head_also_has_samples_in_is_merged_once(store):
    """A minute both on disk and in the head (a seal cut inside a minute, as a file from another
    version can have): rollup_points merges it as rollups does, at window starts inside it too."""
    clock = store.test_clock
    fill(store, clock, 400)  # one window sealed, 200 s in the head
    reader = store.reader()
    head_first = store.db.execute("SELECT MIN(t) FROM head").fetchone()[0]
    for sid in list(store.series)[:2]:
        start, data = store.db.execute("SELECT start, data FROM chunks WHERE series = ? AND tier = ? ORDER BY start DESC",
                                       (sid, MINUTE)).fetchone()
        points = decode_rollups(data) + [(head_first + 1.5, 1.0, 99.0, 100.0, 2.0, 50.0)]  # in the head's first minute
        store.db.execute("UPDATE chunks SET data = ? WHERE series = ? AND tier = ? AND start = ?",
                         (encode_rollups(points), sid, MINUTE, start))
    columns = {sid: column for sid, column in zip(store.series, ("avg", "max", "last"))}
    for start in (T0, head_first - 30, head_first + 1.5, head_first + 20):
        got = reader.rollup_points(columns, MINUTE, start, clock.t)
        full = reader.rollups(list(columns), MINUTE, start, clock.t)
        for sid, column in columns.items():
            _same_points(got[sid], rollup.column_points(full[sid], column))
    merged = [p for p in reader.rollups(list(columns)[:1], MINUTE, T0, clock.t)[list(columns)[0]]
              if math.floor(p[0] / 60) == math.floor(head_first / 60)]
    assert len(merged) == 1 and merged[0][2] == 99.0 and merged[0][4] > 2.0  # one bucket: the stored max, both counts


def test_a_short_minute_read_decodes_only_the_chunks_that_reach_it_and_misses_no_point(store, monkeypatch):
    """A history rule's `rate(x[1h])` read from the minute tier (its other selector spans a
    week): the chunks whose minutes can lie in the window, not the dozen seals of the 6 hours
    before it, nor each stored chunk again to merge the head's first minute with. Every window,
    inside a compacted span, across compacted_until, inside the seals after it, in the head,
    still reads every minute written in it."""
    clock = store.test_clock
    written = fill(store, clock, 9 * 720 + 200)  # 9 hours: one span compacted, six seals after it, a head
    assert store.db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()[0] == repr(T0 + 6 * 3600)
    sid = ids(store, "gpu_temp", gpu="1")
    truth = rollup.summarise([t for t, _ in written["1"]], [v for _, v in written["1"]], 60.0)
    reader = store.reader()
    decoded = []
    for name in ("decode_column", "decode_rollups"):
        real = getattr(rollup, name)
        monkeypatch.setattr(rollup, name, lambda *a, real=real, name=name, **k: decoded.append(name) or real(*a, **k))
    for start in [T0 + k * 1260.0 for k in range(26)]:  # whole minutes (the head sums a window's part of one)
        for length in (3600.0, 2 * 3600.0):
            end = start + length - 0.5
            decoded.clear()
            got = reader.rollup_points({sid: "avg"}, MINUTE, start, end)[sid]
            want = [(p[0], p[3] / p[4]) for p in truth if start <= p[0] <= end]
            assert list(zip(got.times, got.values)) == want, (start, length)
            # a compacted chunk (or two, across its end), and the seals the window spans; none again for the head
            assert decoded.count("decode_column") <= 2 + length / 1800, (start, decoded)
            assert "decode_rollups" not in decoded
            rollups = reader.rollups([sid], MINUTE, start, end)[sid]
            assert rollups == [p for p in truth if start <= p[0] <= end], (start, length)


def test_queries_read_the_same_before_and_after_the_head_is_sealed(tmp_path):
    from agent.tsdb.query import Querier

    answers = []
    for seal in (False, True):
        clock = Clock()
        store = HistoryStore(str(tmp_path / f"h{seal}.db"), clock=clock)
        for i in range(361):  # exactly one window and one cycle of the next
            store.append(snap(clock.t, {"0": float(i % 13)}, i * 2.5))
            if seal:
                store.maintain(clock.t, wait=True)
            clock.t += 5
        q = Querier(store, clock)
        answers.append([q.range(e, T0 + 60, T0 + 1800, 15)[0]
                        for e in ("gpu_temp", "rate(requests_total[1m])", "max_over_time(gpu_temp[2m])")])
        assert store.stats.seals == (1 if seal else 0)
        store.close()
    assert answers[0] == answers[1]


@pytest.mark.parametrize("held", [True, False])
def test_a_session_reads_the_head_once_and_one_view_of_the_file_even_across_a_seal(tmp_path, monkeypatch, held):
    """A round of history rules runs its queries in one session: the head rows are read from
    the file once, not once a selector, and every query sees the file as the first did, so a
    seal that moves the head into chunks in between can neither double nor drop samples. A
    head too large to hold (HEAD_HELD_MAX) is read at each query, from the same view."""
    from agent.tsdb import reader as reader_module
    from agent.tsdb.query import Querier

    if not held:
        monkeypatch.setattr(reader_module, "HEAD_HELD_MAX", 1000)
    clock = Clock()
    store = HistoryStore(str(tmp_path / "history.db"), clock=clock)
    try:
        for i in range(365):  # a window and five cycles: the window is due, not sealed yet
            store.append(snap(clock.t, {"0": float(i % 13), "1": 2.0}, i * 2.5))
            clock.t += 5
        q = Querier(store, clock)
        exprs = ("gpu_temp", "rate(requests_total[10m])", "count_over_time(gpu_temp[40m])")
        alone = [q.instant(e, clock.t - 5)[0] for e in exprs]
        statements = []
        store.reader().db.set_trace_callback(statements.append)
        with q.session():
            inside = [q.instant(exprs[0], clock.t - 5)[0]]
            store.maintain(clock.t, wait=True)  # the seal moves the window out of the head meanwhile
            assert store.stats.seals == 1
            inside += [q.instant(e, clock.t - 5)[0] for e in exprs[1:]]
        store.reader().db.set_trace_callback(None)
        assert inside == alone, "one view of the file: the seal is not seen half"
        head_reads = sum("vals FROM head" in s for s in statements)
        assert head_reads == 1 if held else head_reads >= 3, statements
        assert alone[2]["result"][0]["value"][1] == "365", "every sample counted once"
        after = [q.instant(e, clock.t - 5)[0] for e in exprs]
        assert after == alone, "after the session: the sealed file, the same answers"
    finally:
        store.close()


def test_a_rollup_read_asked_again_in_a_session_is_read_once_and_within_a_bound(store, monkeypatch):
    """Two history rules of a round read `increase(llm_agent_probes_total[7d])`: inside one
    session the second is given the first's points, not a week decoded again. Outside a session,
    or past READS_HELD_MAX, each read decodes; a session's end forgets them (the next round sees
    the seals made since)."""
    from agent.tsdb import reader as reader_module
    from agent.tsdb.query import Querier

    clock = store.test_clock
    fill(store, clock, 3 * 720)  # 3 hours of seals
    q = Querier(store, clock)
    decoded = []
    real = rollup.decode_column
    monkeypatch.setattr(rollup, "decode_column", lambda *a, **k: decoded.append(1) or real(*a, **k))
    expr = "increase(requests_total[3h])"

    def reads(session, times=2):
        decoded.clear()
        with (q.session() if session else contextlib.nullcontext()):
            answers = [q.instant(expr, clock.t, tier=MINUTE)[0] for _ in range(times)]
        assert answers[0] == answers[-1] and answers[0]["result"]
        return len(decoded), answers[0]

    once, answer = reads(session=True, times=1)
    assert once >= 3
    assert reads(session=True) == (once, answer), "asked twice in a session: decoded once, the same answer"
    assert reads(session=False) == (2 * once, answer), "outside a session: read each time"
    monkeypatch.setattr(reader_module, "READS_HELD_MAX", 16)
    assert reads(session=True) == (2 * once, answer), "past the bound: read each time"
    monkeypatch.setattr(reader_module, "READS_HELD_MAX", 4 << 20)
    fill(store, clock, 720)  # two more seals: the next session reads them
    assert reads(session=True, times=1)[1] != answer


def test_long_ranges_read_rollups_and_say_so(store):
    from agent.tsdb.query import Querier

    clock = store.test_clock
    store.retention = Retention(raw=3600, minute=86400, hour=400 * 86400)
    fill(store, clock, 3 * 720, interval=5.0)  # 3 hours
    q = Querier(store, clock)
    data, warnings = q.range("gpu_temp", clock.t - 3 * 3600, clock.t, 300)
    assert warnings and "1-minute rollups" in warnings[0]
    assert len(data["result"]) == 2
    data, warnings = q.range("gpu_temp", clock.t - 1800, clock.t, 15)
    assert warnings == []


def test_a_week_at_a_ten_minute_step_reads_five_minute_rollups_where_the_file_has_them(tmp_path):
    """Grafana's week-long panel (a 10-minute step, a 605 s rate window) reads the 5-minute
    rollups: a fifth of the minutes' points, the same answer in their meaning. A file from
    before the tier has them only from its first compaction since: a query reaching earlier
    reads minutes, as it did."""
    from agent.tsdb.query import Querier

    clock = Clock()
    path = str(tmp_path / "history.db")
    store = HistoryStore(path, retention=Retention(raw=3600, minute=30 * 86400), clock=clock)
    try:
        fill(store, clock, 3 * 17280, interval=5.0)  # three days
        q = Querier(store, clock)
        end = clock.t - 5
        # gauges are bucket averages (5 minutes against 1 of a wave of amplitude 3); the counter rises 3 every 5 s
        for expr, within in (("gpu_temp", 3.0), ("rate(requests_total[605s])", 1e-9)):
            data, warnings = q.range(expr, end - 2.5 * 86400, end, 600)
            assert "5-minute rollups" in warnings[0], (expr, warnings)
            store.five_minutes_from = math.inf  # the same query on minutes, for the answer's sake
            minutes, warnings = q.range(expr, end - 2.5 * 86400, end, 600)
            store.five_minutes_from = T0
            assert "1-minute rollups" in warnings[0]
            assert [s["metric"] for s in data["result"]] == [s["metric"] for s in minutes["result"]]
            for fives, mins in zip(data["result"], minutes["result"]):
                assert [t for t, _ in fives["values"]] == [t for t, _ in mins["values"]]
                gaps = [abs(float(a) - float(b)) for (_, a), (_, b) in zip(fives["values"], mins["values"])]
                assert max(gaps) <= within, (expr, max(gaps))
        assert q.range("gpu_temp", end - 2.5 * 86400, end, 599)[1][0].startswith("read from 1-minute"), \
            "a step shorter than two of its points"
        assert q.range("rate(requests_total[5m])", end - 2.5 * 86400, end, 600)[1][0].startswith("read from 1-minute")
        assert store.five_minutes_from == T0
        # the file as the previous version left it: minutes, hours, no 5-minute tier
        store.db.execute("DELETE FROM chunks WHERE tier = ?", (FIVE_MINUTES,))
        store.db.execute("DELETE FROM meta WHERE key = ?", (FIVE_MINUTES_FROM,))
        store.close()
        store = HistoryStore(path, retention=Retention(raw=3600, minute=30 * 86400), clock=clock)
        q = Querier(store, clock)
        assert "1-minute rollups" in q.range("gpu_temp", end - 2.5 * 86400, end, 600)[1][0]
        compacted = float(store.db.execute("SELECT value FROM meta WHERE key = 'compacted_until'").fetchone()[0])
        fill(store, clock, int(2.2 * 17280), interval=5.0)  # 2.2 days more: compactions since
        assert store.five_minutes_from == compacted, "the tier begins at the first span compacted since"
        end = clock.t - 5
        assert "1-minute rollups" in q.range("gpu_temp", end - 2.5 * 86400, end, 600)[1][0], "reaches before it"
        assert "5-minute rollups" in q.range("gpu_temp", end - 2.05 * 86400, end, 600)[1][0], "all after it"
    finally:
        store.close()


def test_a_rate_window_shorter_than_two_rollup_points_is_read_as_two(store):
    """Grafana's $__rate_interval over 30 days is step + scrape interval (3605 s at a 1 h step):
    on 1-hour rollups such a window holds one point, and rate() of one point is nothing, so
    every rate panel over a month was empty. The range is read as two points' span instead."""
    from agent.tsdb.query import Querier

    clock = store.test_clock
    store.retention = Retention(raw=3600, minute=2 * 3600, hour=400 * 86400)
    fill(store, clock, 10 * 60, interval=60.0)  # 10 hours, the counter +3 a minute: 0.05/s
    q = Querier(store, clock)
    end = clock.t - 60
    data, warnings = q.range("rate(requests_total[3605s])", end - 6 * 3600, end, 3600)
    assert "1-hour rollups" in warnings[0] and "read as 7200s" in warnings[1]
    values = [float(v) for _, v in data["result"][0]["values"]]
    assert len(values) == 7 and all(abs(v - 0.05) < 0.0005 for v in values), values
    raw, _ = q.range("rate(requests_total[3605s])", end - 1800, end, 600)  # raw samples: no widening
    assert all(abs(float(v) - 0.05) < 0.0005 for _, v in raw["result"][0]["values"])


def test_retention_deletes_old_chunks_and_alert_events(store):
    clock = store.test_clock
    store.retention = Retention(raw=3600, minute=3 * 3600, hour=86400, alerts=3600)
    store.record_alerts([_event(clock.t, "firing")])
    fill(store, clock, 14 * 360, interval=10.0)  # 14 hours at 10 s
    starts = dict(store.db.execute("SELECT tier, MIN(start) FROM chunks GROUP BY tier").fetchall())
    now = clock.t
    assert starts[RAW] >= now - 3600 - 2 * 1800
    assert starts[MINUTE] >= now - 3 * 3600 - 6 * 3600
    assert starts[FIVE_MINUTES] >= now - 3 * 3600 - 6 * 3600, "kept as long as the minutes they are made of"
    assert store.db.execute("SELECT COUNT(*) FROM alert_events").fetchone()[0] == 0


def test_excluded_series_are_not_stored_and_max_series_is_counted(tmp_path):
    clock = Clock()
    store = HistoryStore(str(tmp_path / "h.db"), exclude=[parse('gpu_temp{gpu="1"}')], max_series=2, clock=clock)
    extra = [gauge("other", "o").add({"x": "1"}, 1)]
    store.append(snap(clock.t, {"0": 1.0, "1": 2.0}, 5, extra))
    names = sorted(info.as_dict["__name__"] + info.as_dict.get("gpu", "") for info in store.series.values())
    assert names == ["gpu_temp0", "requests_total"]
    assert store.stats.dropped_series == 1  # "other": over max_series
    store.close()


def test_series_over_max_series_are_not_looked_up_every_cycle_and_retried_later(tmp_path):
    """At 32 vLLM-sized targets most series are over max_series: they are skipped (and counted
    once) until REFUSED_RETRY passes, not resolved again every cycle."""
    from agent.tsdb.store import REFUSED_RETRY

    clock = Clock()
    store = HistoryStore(str(tmp_path / "h.db"), max_series=2, clock=clock)
    extra = [gauge("other", "o").add({"x": "1"}, 1)]
    store.append(snap(clock.t, {"0": 1.0, "1": 2.0}, 5, extra))
    refused = store.stats.dropped_series
    assert refused >= 1
    for _ in range(10):
        clock.t += 5
        store.append(snap(clock.t, {"0": 1.0, "1": 2.0}, 5, extra))
    assert store.stats.dropped_series == refused, "refused once, then skipped"
    clock.t += REFUSED_RETRY
    store.append(snap(clock.t, {"0": 1.0, "1": 2.0}, 5, extra))
    assert store.stats.dropped_series == 2 * refused, "offered again after REFUSED_RETRY"
    store.close()


def test_each_value_lands_on_its_series_whether_the_snapshot_repeats_last_cycles_series_or_not(tmp_path):
    """Most cycles have last cycle's series in the same order: their ids are taken from last
    cycle's lookup. A series come, gone, reordered, excluded, refused at max_series or offered
    again must still put every value on its own series and no other."""
    from agent.tsdb.store import REFUSED_RETRY

    rng = random.Random(11)
    clock = Clock()
    store = HistoryStore(str(tmp_path / "h.db"), exclude=[parse('temp{gpu="x"}')], max_series=14, clock=clock)
    pool = [("temp", {"gpu": g}) for g in "0123x"] + [("reqs_total", {"server": str(i)}) for i in range(12)]
    shown = pool[:8]
    written, refused = {}, 0
    for i in range(400):
        change = rng.random() if not 190 <= i <= 210 else 1.0  # the same series either side of the retry
        if change < 0.1:
            shown = rng.sample(pool, rng.randint(1, len(pool)))  # come, gone and reordered
        elif change < 0.15:
            shown = list(reversed(shown))
        fams = {}
        for name, labels in shown:
            fam = fams.setdefault(name, (counter if name.endswith("_total") else gauge)(name, "h"))
            value = float(rng.randint(0, 10**6))
            fam.add(dict(labels), value)  # a new dict each time: equal labels, not always the same tuple
            written.setdefault((name, tuple(sorted(labels.items()))), []).append((clock.t, value))
        store.append(Snapshot(clock.t, tuple(fams.values())))
        clock.t += 5 if i != 200 else REFUSED_RETRY  # the refused are offered again once
        refused = store.stats.dropped_series if i == 200 else refused
        if i == 201:  # refused, skipped, then each shown offered again (and refused again: still no room)
            kept = {(info.as_dict["__name__"], info.as_dict.get("gpu") or info.as_dict["server"]) for info in store.series.values()}
            offered = [n for n, labels in shown if (n, *labels.values()) not in kept and labels != {"gpu": "x"}]
            assert refused and offered and store.stats.dropped_series == refused + len(offered)
    stored = {(info.as_dict["__name__"], tuple(kv for kv in info.labels if kv[0] != "__name__")): sid
              for sid, info in store.series.items()}
    assert ("temp", (("gpu", "x"),)) not in stored and len(stored) == 14
    got = store.reader().raw(list(stored.values()), T0, clock.t)
    for key, sid in stored.items():
        points = [p for p in got[sid] if not codec.is_stale(p[1])]
        assert points == [p for p in written[key] if p[0] >= points[0][0]], key
    store.close()


def test_a_churning_metric_cannot_starve_the_others(tmp_path):
    clock = Clock()
    store = HistoryStore(str(tmp_path / "h.db"), max_series=2000, clock=clock)
    for i in range(1300):  # a new label value every cycle, each cycle a new layout
        churn = gauge("churn", "c").add({"id": str(i)}, 1)
        extra = [churn] + ([gauge("fresh", "f").add({}, 1)] if i >= 1200 else [])
        store.append(snap(clock.t, {"0": 1.0}, i, extra))
        store.maintain(clock.t)
        clock.t += 5
    names = [info.as_dict["__name__"] for info in store.series.values()]
    assert names.count("churn") == 1000 and store.stats.dropped_series == 300
    assert "fresh" in names and "gpu_temp" in names
    assert store.layouts._kept <= Layouts.KEPT_BYTES  # layouts' positions are built when asked, kept within a budget
    store.close()


def test_a_layouts_positions_answer_as_a_dict_of_its_places_would():
    rng = random.Random(7)
    for n in (0, 1, 2, 17, 1000):
        layout = rng.sample(range(1, 5 * n + 2), n)  # ids in a row's order, not sorted
        pos = Positions(array("q", layout))
        places = {sid: i for i, sid in enumerate(layout)}
        assert len(pos) == n and pos.nbytes == 12 * n
        for sid in range(0, 5 * n + 3):
            assert pos.get(sid) == places.get(sid) and (sid in pos) == (sid in places)


def test_positions_are_kept_within_their_budget_and_the_last_asked_for_always(monkeypatch):
    monkeypatch.setattr(Layouts, "KEPT_BYTES", 12 * 1000 * 3)  # three layouts of 1,000 series
    layouts = Layouts()
    for lid in range(1, 7):
        layouts.remember(lid, array("q", range(lid, lid + 1000)).tobytes())
    for lid in (1, 2, 3, 1, 4):  # 1 asked again: 2 is the least recently used when 4 comes
        assert layouts.positions(lid).get(lid + 999) == 999
    assert list(layouts._positions) == [3, 1, 4] and layouts._kept == 12 * 1000 * 3
    layouts.forget([1])
    assert list(layouts._positions) == [3, 4] and layouts._kept == 12 * 1000 * 2
    assert len(layouts.positions(99)) == 0  # an unknown layout has no series
    monkeypatch.setattr(Layouts, "KEPT_BYTES", 10)  # smaller than one layout: the one asked for stays
    layouts.positions(5)
    assert list(layouts._positions) == [5] and layouts._kept == 12 * 1000


def test_a_clock_going_back_writes_nothing_for_those_cycles(store):
    clock = store.test_clock
    assert store.append(snap(clock.t, {"0": 1.0}))
    assert not store.append(snap(clock.t - 5, {"0": 2.0}))


# -- faults ----------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from agent.model import Snapshot, gauge
    from agent.tsdb.store import HistoryStore
    t = [float(sys.argv[2])]
    store = HistoryStore(sys.argv[1], clock=lambda: t[0])
    t[0] = max(t[0], store.last_written + 5)
    while True:
        fam = gauge("gpu_temp", "t")
        for gpu in range(8):
            fam.add({{"gpu": str(gpu)}}, float(int(t[0]) % 50 + gpu))
        if store.append(Snapshot(t[0], (fam,))):
            print(repr(t[0]), flush=True)
        store.maintain(t[0])
        t[0] += 5
""")


def test_kill_9_in_a_loop_loses_at_most_the_last_cycle_and_never_corrupts(tmp_path):
    path = str(tmp_path / "history.db")
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=ROOT))
    rand = random.Random(11)
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, str(script), path, repr(T0)], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + rand.uniform(0.3, 1.5)
        acknowledged = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line:
                acknowledged.append(float(line))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        store = HistoryStore(path, clock=Clock(acknowledged[-1] if acknowledged else T0))
        if acknowledged:
            sid = next(iter(store.series))
            times = [t for t, v in store.reader().raw([sid], T0, acknowledged[-1] + 60)[sid] if not codec.is_stale(v)]
            assert acknowledged[-1] in times  # every acknowledged cycle is there
            assert times == sorted(set(times))
        assert store.stats.moved_aside == 0
        store.close()


def test_a_full_disk_stops_history_writes_counts_them_and_logs_once(store, caplog):
    clock = store.test_clock
    fill(store, clock, 50)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    caplog.set_level(logging.ERROR)
    refused = 0
    for i in range(300):
        refused += not store.append(snap(clock.t, {"0": 1.0, "1": 2.0, "new" + str(i): 3.0}, i))
        store.maintain(clock.t)
        clock.t += 5
    assert refused > 0 and store.stats.write_errors >= refused
    assert sum("cannot write" in r.message for r in caplog.records) == 1
    store.db.execute("PRAGMA max_page_count = 1000000")
    assert store.append(snap(clock.t, {"0": 1.0}))  # room again: writes resume


def test_max_disk_drops_the_oldest_raw_window_to_keep_the_newest(tmp_path):
    clock = Clock()
    store = HistoryStore(str(tmp_path / "h.db"), max_disk=600_000, clock=clock)
    def fams(i):  # values with no decimal resolution: 8 bytes each, so the cap is reached
        return [gauge("g", "g").add({"k": str(k)}, float((i * 7919 + k * 104729) % 100003) / 7) for k in range(150)]

    for i in range(3000):
        store.append(Snapshot(clock.t, tuple(fams(i))))
        store.maintain(clock.t)
        store.settle()
        clock.t += 5
    assert store.stats.trimmed_for_size > 0
    assert os.path.getsize(str(tmp_path / "h.db")) <= 600_000 + 64 * 4096
    newest = store.db.execute("SELECT MAX(t) FROM head").fetchone()[0]
    assert newest >= clock.t - 60  # the newest cycles were kept
    store.close()


def test_a_corrupt_file_is_moved_aside_with_its_path_logged(tmp_path, caplog):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database at all" * 500)
    caplog.set_level(logging.ERROR)
    store = HistoryStore(str(path))
    moved = store.moved_to[0]
    assert os.path.exists(moved) and open(moved, "rb").read().startswith(b"this is not")
    assert str(path) in caplog.text and moved in caplog.text
    assert store.append(snap(T0, {"0": 1.0}))
    store.close()


def test_a_foreign_sqlite_file_is_moved_aside_not_used(tmp_path, caplog):
    path = tmp_path / "history.db"
    other = sqlite3.connect(str(path))
    other.execute("CREATE TABLE accounts (name TEXT)")
    other.commit()
    other.close()
    caplog.set_level(logging.ERROR)
    store = HistoryStore(str(path))
    assert store.stats.moved_aside == 1 and "another program" in caplog.text
    left = sqlite3.connect(store.moved_to[0])
    assert left.execute("SELECT name FROM sqlite_master").fetchone()[0] == "accounts"
    store.close()


def test_a_damaged_chunk_is_skipped_and_reported_not_crashed_on(store, caplog):
    clock = store.test_clock
    fill(store, clock, 400)
    store.db.execute("UPDATE chunks SET data = ? WHERE tier = ?", (b"LH\x02garbage", RAW))
    caplog.set_level(logging.ERROR)
    sid = ids(store, "gpu_temp", gpu="0")
    raw = store.reader().raw([sid], T0, clock.t)[sid]
    assert raw and raw[0][0] >= T0 + 1800  # the head still answers
    assert "damaged chunk" in caplog.text


# -- alert history -------------------------------------------------------------------------------------

class FakeAlert:
    def __init__(self, name, state, value=1.0):
        self.labels = {"alertname": name, "severity": "critical"}
        self.annotations = {"summary": f"{name} happened"}
        self.state = state
        self.value = value
        self.fingerprint = name.lower()


def _event(t, state):
    from agent.tsdb.store import AlertEvent

    return AlertEvent(t, state, {"alertname": "X"}, {}, 1.0, "x")


def test_alert_transitions_are_recorded_once_and_survive_a_restart(tmp_path):
    path = str(tmp_path / "h.db")
    store = HistoryStore(path)
    rec = Recorder(store)
    a = FakeAlert("GpuHot", "pending")
    for t, alerts in ((T0, [a]), (T0 + 5, [a]), (T0 + 10, [FakeAlert("GpuHot", "firing")]),
                      (T0 + 15, [FakeAlert("GpuHot", "firing")]), (T0 + 20, [])):
        store.record_alerts(rec.transitions(alerts, t))
    events = store.reader().alert_events(0, T0 + 100)
    assert [(e.at, e.state) for e in events] == [(T0, "pending"), (T0 + 10, "firing"), (T0 + 20, "resolved")]
    assert events[-1].labels["alertname"] == "GpuHot"  # a resolve carries the labels it fired with
    store.record_alerts(rec.transitions([FakeAlert("GpuHot", "firing")], T0 + 30))
    store.close()
    store = HistoryStore(path)
    rec = Recorder(store)  # restarted while GpuHot fires: nothing new to record
    assert rec.transitions([FakeAlert("GpuHot", "firing")], T0 + 40) == []
    store.close()


def test_churning_names_refused_at_max_series_cannot_grow_the_memory_of_refusals(tmp_path):
    """Issue 27: a router churning 100,000 model names grew the agent 280 MB -> 4.4 GB: the
    series the history refused were remembered until a 10-minute reset. The memory is bounded."""
    from agent.tsdb.store import MAX_REFUSED

    t = [1_000.0]
    store = HistoryStore(str(tmp_path / "h.db"), max_series=10, clock=lambda: t[0])
    for cycle in range(3):
        fam = MetricFamily("m", GAUGE, "", [Sample("m", (("model", f"c{cycle}-{i}"),), 1.0) for i in range(15_000)])
        store.append(Snapshot(t[0], (fam,)))
        t[0] += 5
        assert len(store._over_max) <= MAX_REFUSED
    assert store.stats.refused_forgotten >= 1 and store.stats.dropped_series > 40_000
    store.close()


def test_a_columns_decimal_scale_is_the_smallest_that_holds_every_value_exactly():
    """scale_of against its definition written a value at a time (as it was, before the
    column was checked with map()): decimals of every scale, random doubles, integers past
    2**53, NaN, infinities and signed zeros, at random lengths."""
    def by_definition(values):
        k = 0
        for v in values[:8]:
            if not math.isfinite(v) or abs(v) >= 2.0 ** 53:
                return -1
            while k <= codec.MAX_SCALE and round(v * 10 ** k) / 10 ** k != v:
                k += 1
            if k > codec.MAX_SCALE:
                return -1
        try:
            return k if all(round(v * 10 ** k) / 10 ** k == v and abs(v * 10 ** k) < 2.0 ** 53 for v in values) else -1
        except (ValueError, OverflowError):
            return -1

    rng = random.Random(3)
    makers = (lambda: rng.randrange(-10 ** 6, 10 ** 6) / 10 ** rng.randrange(0, 8), lambda: rng.random() * 1000,
              lambda: float(rng.randrange(0, 2 ** 54)), lambda: round(rng.random() * 100, 2),
              lambda: rng.choice([0.0, -0.0, 1.5, 2.0 ** 53 - 1, 2.0 ** 53, 1 - 2.0 ** 53, math.nan, math.inf, 1e300]),
              lambda: rng.randrange(-10 ** 9, 10 ** 9) / 1000)
    decimal = 0
    for _ in range(5000):
        make = rng.choice(makers)  # one kind a column, now and then with a value of another kind at its end
        values = array("d", [make() for _ in range(rng.randrange(0, 40))] + [rng.choice(makers)()] * (rng.random() < 0.2))
        k, ints = codec.decimal_of(values)
        assert k == codec.scale_of(values) == by_definition(values), list(values)
        if k >= 0:
            decimal += 1
            assert [m / 10 ** k for m in ints] == list(values)
    assert decimal > 1000
