"""Many alerts clearing at once (issue 27): a rule over N series that all fire, then all
resolve in one cycle. Resolving checks each alert's series are still there; that check was
alerts x series (12,000 flipping series: a 19 s cycle), it is an index lookup now. Prints the
resolving cycle's time at 3,000, 6,000 and 12,000 series: linear, not quadratic.

    python tests/bench/bench_flapping.py
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from agent.model import GAUGE, MetricFamily, Sample, Snapshot  # noqa: E402
from agent.rules.engine import Engine  # noqa: E402
from agent.rules.history import History  # noqa: E402
from tests.unit.test_engine import rule  # noqa: E402


def resolving_cycle(n: int) -> float:
    history = History()
    engine = Engine([rule("Flap", "flap > 0")], history, budget=60.0)

    def cycle(t, value):
        fam = MetricFamily("flap", GAUGE, "", [Sample("flap", (("id", str(i)), ("server", "a")), value) for i in range(n)])
        history.ingest(Snapshot(t, (fam,)))
        start = time.perf_counter()
        notes = engine.evaluate(t)
        return time.perf_counter() - start, notes

    cycle(1000.0, 1.0)
    took, notes = cycle(1005.0, 0.0)
    assert sum(1 for x in notes if x.status == "resolved") == n
    return took


if __name__ == "__main__":
    for n in (3_000, 6_000, 12_000):
        runs = [resolving_cycle(n) for _ in range(3)]
        print(f"{n:6d} series resolving at once: median {statistics.median(runs) * 1000:.0f} ms "
              f"({statistics.median(runs) / n * 1e6:.1f} us an alert)")
