"""The runner: isolation, timeouts, skipping busy collectors, self-metrics, merging."""

import threading
import time

from agent.model import MetricFamily, Sample, gauge
from agent.runner import Runner


class Fixed:
    def __init__(self, name, value=1.0, family="m"):
        self.name = name
        self.value = value
        self.family = family

    def collect(self):
        return [gauge(self.family, "A value.").add({"src": self.name}, self.value)]


class Raising:
    name = "raising"

    def collect(self):
        raise RuntimeError("device on fire")


class Hanging:
    name = "hanging"

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def collect(self):
        self.calls += 1
        self.release.wait(10)
        return []


def test_a_raising_collector_loses_only_its_own_series():
    r = Runner([Fixed("a"), Raising()], timeout=1)
    snap = r.run()
    assert snap.value("m", src="a") == 1
    assert snap.value("llm_agent_collector_success", collector="a") == 1
    assert snap.value("llm_agent_collector_success", collector="raising") == 0
    assert snap.value("llm_agent_collector_errors_total", collector="raising") == 1
    assert any("device on fire" in p.message for p in snap.problems)
    r.close()


def test_a_hung_collector_costs_one_timeout_then_is_skipped_and_counted():
    hang = Hanging()
    r = Runner([Fixed("a"), hang], timeout=0.3)
    start = time.monotonic()
    snap = r.run()
    assert time.monotonic() - start < 1.0
    assert snap.value("m", src="a") == 1
    assert snap.value("llm_agent_collector_success", collector="hanging") == 0
    start = time.monotonic()
    snap = r.run()
    assert time.monotonic() - start < 0.2, "a busy collector is skipped, not waited for again"
    assert hang.calls == 1
    assert snap.value("llm_agent_collector_overruns_total", collector="hanging") == 2
    hang.release.set()
    time.sleep(0.05)
    r.run()
    assert hang.calls == 2
    r.close()


def test_collectors_run_side_by_side():
    class Slow(Fixed):
        def collect(self):
            time.sleep(0.3)
            return super().collect()

    r = Runner([Slow(f"s{i}") for i in range(5)], timeout=2)
    start = time.monotonic()
    snap = r.run()
    assert time.monotonic() - start < 0.9
    assert len(snap.samples("m")) == 5
    r.close()


def test_duplicate_series_and_type_clashes_are_dropped_and_counted():
    class Clash:
        name = "clash"

        def collect(self):
            return [MetricFamily("m", "counter", "Other.", [Sample("m", (("src", "x"),), 1)])]

    class Same(Fixed):  # another source exporting the very series "a" exports
        def collect(self):
            return [gauge("m", "A value.").add({"src": "a"}, 2.0)]

    r = Runner([Fixed("a"), Same("b"), Clash()], timeout=1)
    snap = r.run()
    assert len(snap.samples("m")) == 1
    assert snap.value("llm_agent_snapshot_conflicts_total") == 2
    r.close()


def test_replaced_collectors_are_closed():
    closed = []

    class Closable(Fixed):
        def close(self):
            closed.append(self.name)

    a, b = Closable("a"), Closable("b")
    r = Runner([a, b], timeout=1)
    r.set_collectors([a])
    assert closed == ["b"]
    r.close()


def test_inline_collectors_run_in_the_runner_thread_and_stay_isolated():
    seen = []

    class Inline(Fixed):
        inline = True

        def collect(self):
            seen.append(threading.current_thread())
            return super().collect()

    class InlineRaising(Raising):
        inline = True

    r = Runner([Inline("i"), InlineRaising(), Fixed("t")], timeout=1)
    snap = r.run()
    assert seen == [threading.current_thread()]
    assert snap.value("m", src="i") == 1 and snap.value("m", src="t") == 1
    assert snap.value("llm_agent_collector_success", collector="raising") == 0
    r.close()


class Doubler:
    """A deriver of a deriver's output."""

    def __init__(self, name, reads, makes):
        self.name, self.reads, self.makes = name, (reads,), makes

    def derive(self, view):
        return [gauge(self.makes, "Twice.").add({}, 2 * s.value) for s in view.samples(self.reads[0])]


def test_each_deriver_sees_what_the_ones_before_it_derived():
    r = Runner([Fixed("a", 3.0)], timeout=1, derivers=[Doubler("first", "m", "m2"), Doubler("second", "m2", "m4")])
    try:
        snap = r.run()
        assert snap.value("m2") == 6 and snap.value("m4") == 12
    finally:
        r.close()


def test_a_hung_source_holds_up_the_others_by_the_hedge_not_by_its_timeout():
    """Collectors share a lane; one that hangs makes another lane start after HEDGE_AFTER."""
    hangs = [Hanging() for _ in range(3)]
    for i, h in enumerate(hangs):
        h.name = f"hanging{i}"
    r = Runner(hangs + [Fixed("a"), Fixed("b")], timeout=2, hedge_after=0.05)
    start = time.monotonic()
    snap = r.run()
    assert snap.value("m", src="a") == 1 and snap.value("m", src="b") == 1
    assert time.monotonic() - start < 2.5
    assert [h.calls for h in hangs] == [1, 1, 1]
    for h in hangs:
        h.release.set()
    r.close()


def test_the_cycle_wakes_once_when_the_lane_is_done_not_after_each_collector():
    """The lane tells the waiting cycle only when the queue is empty: with a hedge far off, the
    cycle still returns as soon as the last collector is done (not at its hedge deadline), and
    its thread is woken once, not once per collector."""
    class Slow(Fixed):
        def collect(self):
            time.sleep(0.005)  # long enough for the cycle to be waiting meanwhile
            return super().collect()
    collectors = [Slow(f"c{i}") for i in range(12)]
    r = Runner(collectors, timeout=60, hedge_after=30)
    r.run()  # the pool's thread started
    waits = []
    real_wait = threading.Condition.wait

    me = threading.current_thread()

    def counted(cond, timeout=None):
        if threading.current_thread() is me:  # the cycle's own waits, not another test's threads'
            waits.append(timeout)
        return real_wait(cond, timeout)
    threading.Condition.wait = counted
    try:
        start = time.monotonic()
        snap = r.run()
        took = time.monotonic() - start
    finally:
        threading.Condition.wait = real_wait
    assert [snap.value("m", src=f"c{i}") for i in range(12)] == [1] * 12
    assert took < 10, "waited for the hedge deadline: the lane's last notify is missing"
    assert len(waits) <= 2, waits  # a wake-up per collector was 12
    r.close()


def test_collectors_that_never_started_run_afresh_next_cycle():
    """Every lane hung and the timeout passed before some collectors started: they are
    reported as timed out, not left pending (which would skip them as busy forever)."""
    hangs = [Hanging() for _ in range(2)]
    for i, h in enumerate(hangs):
        h.name = f"hanging{i}"
    late = Fixed("late")
    r = Runner(hangs + [late], timeout=0.3, hedge_after=10)  # no second lane within the timeout
    snap = r.run()
    assert snap.value("llm_agent_collector_success", collector="late") == 0
    assert hangs[1].calls == 0, "never started"
    r.hedge_after = 0.05
    snap = r.run()
    assert snap.value("m", src="late") == 1, "run in this cycle's new lane"
    for h in hangs:
        h.release.set()
    r.close()


def _reference_merge(groups):
    """merge_families written plainly: every family copied, every series checked one by one."""
    from agent.model import owned_names

    merged, claimed, seen, conflicts = {}, {}, set(), 0
    for group in groups:
        for fam in group:
            into = merged.get(fam.name)
            names = owned_names(fam)
            if any(claimed.get(n, fam.name) != fam.name for n in names):
                conflicts += 1
                continue
            if into is None:
                into = merged[fam.name] = MetricFamily(fam.name, fam.type, fam.help)
            elif into.type != fam.type:
                conflicts += 1
                continue
            for n in names:
                claimed.setdefault(n, fam.name)
            for s in fam.samples:
                if (s.name, s.labels) in seen:
                    conflicts += 1
                    continue
                seen.add((s.name, s.labels))
                into.samples.append(s)
    return [(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in merged.values()], conflicts


def test_merging_passes_a_lone_family_through_and_never_changes_its_sources():
    """Fuzz against the copying merge: same result, same conflicts; the groups are unchanged and
    merge again to the same result (the runner merges a deriver's view, then everything)."""
    import random

    from agent.model import Shapes, merge_families

    rng = random.Random(3)
    shapes = Shapes()  # what the last merge learnt, carried across cases as across cycles
    for case in range(400):
        groups = []
        for _g in range(rng.randint(1, 4)):
            group = []
            for _f in range(rng.randint(0, 4)):
                name = rng.choice(["a", "b", "b_bucket", "c_total"])
                fam = MetricFamily(name, rng.choice(["gauge", "gauge", "counter", "histogram"]), "h")
                for _ in range(rng.randint(0, 4)):
                    fam.samples.append(Sample(name + rng.choice(["", "", "_bucket"]), (("i", str(rng.randint(0, 3))),),
                                              float(rng.randint(0, 9))))
                group.append(fam)
            groups.append(group)
        before = [[(f.name, list(f.samples)) for f in g] for g in groups]
        expected = _reference_merge(groups)
        for attempt in range(4):
            families, conflicts = merge_families(groups, shapes if attempt % 2 else None)
            got = [(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in families]
            assert (got, len(conflicts)) == expected, case
        assert [[(f.name, list(f.samples)) for f in g] for g in groups] == before, case
    lone = gauge("lone", "h").add({"a": "1"}, 1)
    assert merge_families([[lone], [gauge("other", "h")]])[0][0] is lone  # not copied


def test_families_of_one_name_proven_as_last_time_still_lose_a_repeat_that_a_new_one_brings():
    """Shapes' proof for the second and later families of a name (a target each): a family as
    it was last time, after others that were too, is appended without a look at its series;
    one that is new breaks the proof for those after it, this time and the next."""
    from agent.model import Shapes, merge_families

    def fam(*servers):
        return gauge("up", "h").add({"server": servers[0]}, 1) if len(servers) == 1 else \
            MetricFamily("up", "gauge", "h", [s for x in servers for s in gauge("up", "h").add({"server": x}, 1).samples])

    shapes = Shapes()
    a, b, c = fam("a"), fam("b"), fam("c", "b")  # c repeats b's series
    cycles = [[[a], [b]], [[a], [b]], [[c], [b]], [[c], [b]], [[c], [b]], [[a], [b]], [[a], [b], [c]], [[a], [b], [c]]]
    for n, groups in enumerate(cycles):
        families, conflicts = merge_families(groups, shapes)
        got = [(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in families]
        assert (got, len(conflicts)) == _reference_merge(groups), n
        assert len(conflicts) == (1 if c in (g[0] for g in groups) else 0), n  # b's repeat, every time c comes


def test_merging_with_families_carried_across_cycles_matches_the_plain_merge():
    """Fuzz: each cycle keeps most of the last cycle's families as they were (the same objects or
    equal copies), drops, adds, reorders and changes some, so that the shapes learnt last time
    are both right and wrong; every merge equals the plain one's answer and conflicts."""
    import random

    from agent.model import Shapes, merge_families

    rng = random.Random(5)
    labels = [(("i", str(i)),) for i in range(4)]

    def family():
        name = rng.choice(["a", "a", "b", "b_bucket"])
        f = MetricFamily(name, rng.choice(["gauge", "gauge", "gauge", "histogram"]), "h")
        for _ in range(rng.randint(0, 3)):
            f.samples.append(Sample(name + rng.choice(["", "", "", "_bucket"]), rng.choice(labels), 1.0))
        return f

    shapes = Shapes()
    groups = [[family() for _ in range(3)] for _ in range(3)]
    for cycle in range(1500):
        families, conflicts = merge_families(groups, shapes)
        got = [(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in families]
        assert (got, len(conflicts)) == _reference_merge(groups), cycle
        nxt = []
        for group in groups:
            group = [f if rng.random() < 0.8 else MetricFamily(f.name, f.type, f.help, list(f.samples)) for f in group]
            if rng.random() < 0.3 and group:
                group.pop(rng.randrange(len(group)))
            if rng.random() < 0.3:
                group.insert(rng.randrange(len(group) + 1), family())
            if rng.random() < 0.1:
                rng.shuffle(group)
            nxt.append(group)
        if rng.random() < 0.1:
            rng.shuffle(nxt)
        groups = nxt


def test_a_merge_with_last_cycles_outline_is_last_cycles_merge_with_this_cycles_values(monkeypatch):
    """Fuzz: cycles whose families mostly come again with last cycle's names, types and series but
    new objects and values (as collectors make them), now and then one changed (a series more or
    fewer, a new label value, a repeat, a clash of types): each merge equals the plain one's
    answer and conflicts, takes this cycle's values, and changes no input."""
    import random

    from agent import model
    from agent.model import Shapes, merge_families

    rng = random.Random(11)
    shapes = Shapes()
    replays = []
    replay = model._replay
    monkeypatch.setattr(model, "_replay", lambda *a: replays.append(1) or replay(*a))

    def family(name, kind, labels):
        return MetricFamily(name, kind, "h", [Sample(name + suffix, lbl, float(rng.randint(0, 99))) for suffix, lbl in labels])

    def outline():
        name = rng.choice(["a", "b", "c", "d", "e"] * 4 + ["b_bucket"])
        kind = rng.choice(["gauge"] * 20 + ["histogram"])
        # repeats and clashes now and then, so that some merges drop series and have no plan
        labels = [(rng.choice([""] * 9 + ["_bucket"]), (("i", str(i)),)) for i in rng.sample(range(30), rng.randint(0, 3))]
        return name, kind, labels

    plan = [[outline() for _ in range(rng.randint(1, 4))] for _ in range(3)]
    dropped = 0
    for cycle in range(1500):
        if rng.random() < 0.15:  # something changes: one family's outline
            g = rng.randrange(len(plan))
            plan[g][rng.randrange(len(plan[g]))] = outline()
        groups = [[family(*o) for o in group] for group in plan]
        before = [[(f.name, list(f.samples)) for f in g] for g in groups]
        families, conflicts = merge_families(groups, shapes)
        got = [(f.name, f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in families]
        assert (got, len(conflicts)) == _reference_merge(groups), cycle
        assert [[(f.name, list(f.samples)) for f in g] for g in groups] == before, cycle
        dropped += bool(conflicts)
    assert len(replays) > 300 and dropped > 300  # both paths taken, often


def test_equal_label_sets_share_one_tuple_and_the_table_is_bounded():
    from agent.model import _LabelsTable

    a = gauge("a", "").add({"gpu": "0", "UUID": "GPU-1"}, 1).samples[0]
    b = gauge("b", "").add({"gpu": "0", "UUID": "GPU-1"}, 2).samples[0]
    assert a.labels is b.labels  # the memos downstream then compare with `is`
    table = _LabelsTable()
    table.LIMIT = 3
    def labels(i):  # made at run time: a literal tuple would be one constant object anyway
        return (("k", str(i)),)

    first = table(labels(0))
    assert table(labels(0)) is first
    for i in range(1, 7):  # a churning label value: the oldest generation goes as the newest fills
        table(labels(i))
    assert len(table.current) + len(table.previous) <= 2 * table.LIMIT
    again = table(labels(0))
    assert again is not first and again == first  # forgotten: a new tuple (equal, so nothing breaks)


def test_a_snapshot_with_more_families_finds_them_and_leaves_its_parent_as_it_was():
    from agent.model import Snapshot, gauge

    parent = Snapshot(1.0, (gauge("a", "").add({}, 1), gauge("b", "").add({}, 2)))
    child = parent.with_families([gauge("c", "").add({"x": "y"}, 3)])
    assert [f.name for f in child.families] == ["a", "b", "c"]
    assert child.value("a") == 1 and child.value("c", x="y") == 3 and child.family("b") is parent.family("b")
    assert parent.family("c") is None and len(parent.families) == 2  # the parent's index is not the child's
    assert parent.with_families([]) is parent
    grandchild = child.with_families([gauge("d", "").add({}, 4)])
    assert grandchild.value("d") == 4 and child.family("d") is None and grandchild.value("a") == 1
