"""Issue 31: remote write, measured. Printed, never asserted.

1. The wire: one batch of 5,000 samples of a realistic cycle (8 fake GPUs, the host, 4
   llama.cpp targets: bench_history's load), encoded by the hand encoder and by the protobuf
   library (messages built from the spec's field numbers): median time each; bytes per sample
   after snappy.
2. Catch-up: an hour of that load (about 850 series every 5 s) in a real history file, as after a
   one-hour outage, pushed into Debian's VictoriaMetrics by the real sender: wall time, and how
   many times faster than real time (goal: at least 50x); the process CPU it cost.
3. `--live MINUTES`: the real daemon (`llm-agent run`, defaults, 4 real llama-servers, the host)
   without and then with [[remote_write]] to VictoriaMetrics, beside vmagent scraping the same 4
   llama-servers and a node_exporter into the same VictoriaMetrics, each for MINUTES: CPU per pushed
   sample (the agent's extra CPU for pushing against vmagent's whole CPU), RSS of each.

    python tests/bench/bench_remote_write.py [--live 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from agent.config import parse_config  # noqa: E402
from agent.remote import wire  # noqa: E402
from agent.remote.sender import Endpoint  # noqa: E402
from agent.tsdb.store import HistoryStore  # noqa: E402
from tests.bench.bench_history import INTERVAL, Load, base_families, rss_mib  # noqa: E402
from tests.support.peers import VictoriaMetrics, wait_until  # noqa: E402


def one_batch(load, t0):
    snap = load.snapshot(t0)
    series = []
    n = 0
    for fam in snap.families:
        for s in fam.samples:
            labels = tuple(sorted((("__name__", s.name),) + tuple(s.labels)))
            series.append((labels, [(int((t0 + k * INTERVAL) * 1000), s.value) for k in range(6)]))
            n += 6
            if n >= 5000:
                return series, n
    return series, n


def wire_figures(load):
    from tests.support.promwire import write_request_class

    batch, n = one_batch(load, 1_700_000_000.0)
    WriteRequest = write_request_class()

    def library():
        req = WriteRequest()
        for labels, samples in batch:
            ts = req.timeseries.add()
            for k, v in labels:
                ts.labels.add(name=k, value=v)
            for t, v in samples:
                ts.samples.add(value=v, timestamp=t)
        return req.SerializeToString()

    assert WriteRequest.FromString(wire.encode(batch)) == WriteRequest.FromString(library())
    timings = {}
    cache: dict = {}
    wire.encode(batch, label_cache=cache)
    for name, fn in (("hand encoder", lambda: wire.encode(batch)), ("protobuf library", library),
                     ("hand encoder, labels kept", lambda: wire.encode(batch, label_cache=cache))):
        runs = []
        for _ in range(30):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        timings[name] = statistics.median(runs)
    body = wire.encode(batch)
    packed = wire.compress(body)
    print(f"wire: {n} samples in {len(batch)} series; medians: hand encoder {timings['hand encoder'] * 1e3:.2f} ms, "
          f"with the series' labels kept between batches (as the sender runs) "
          f"{timings['hand encoder, labels kept'] * 1e3:.2f} ms, protobuf library (upb) "
          f"{timings['protobuf library'] * 1e3:.2f} ms; {len(body) / n:.1f} bytes a sample, {len(packed) / n:.2f} after snappy")


def catch_up(load, tmp):
    """An hour in the history file, then pushed from its start: how fast is an outage replayed?"""
    clock = [1_790_000_000.0]
    store = HistoryStore(os.path.join(tmp, "history.db"), clock=lambda: clock[0])
    start = clock[0]
    for i in range(int(3600 / INTERVAL)):
        clock[0] = start + i * INTERVAL
        store.append(load.snapshot(clock[0]))
        if i % 60 == 0:
            store.maintain(clock[0])
    store.settle()
    vm = VictoriaMetrics(tmp).start()
    try:
        settings = parse_config(f'[[remote_write]]\nurl = "{vm.url}/api/v1/write"\n').remote_write[0]
        endpoint = Endpoint(settings, store, tmp, lambda: {}, clock=lambda: clock[0])
        endpoint.sent_until = start - 1
        before = rss_mib()
        cpu, wall = time.process_time(), time.perf_counter()
        peak = before
        while endpoint.step():
            peak = max(peak, rss_mib())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        sent = endpoint.samples
        wait_until(lambda: vm.query("count({__name__=~\"llm_agent_.+\"})", clock[0]), 30, what="vm holding them")
        print(f"catch-up: one hour ({sent:,} samples, {endpoint.bytes / sent:.2f} bytes a sample on the wire) pushed "
              f"in {wall:.1f} s: {3600 / wall:.0f}x real time (goal 50x); sender CPU {cpu:.1f} s, "
              f"{cpu / sent * 1e6:.1f} us a sample; RSS {before:.1f} MiB before, peak {peak:.1f} MiB while replaying "
              f"(+{peak - before:.1f}: one span of a minute in memory whatever the backlog)")
    finally:
        vm.stop()
        store.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--live", type=float, default=0.0, help="minutes per arm of the live comparison with vmagent")
    args = ap.parse_args()
    load = Load(base_families())
    wire_figures(load)
    with tempfile.TemporaryDirectory() as tmp:
        catch_up(load, tmp)
    if args.live:
        from tests.bench.bench_remote_write_live import live

        live(args.live)


if __name__ == "__main__":
    main()
