"""Issue 31: the hand-written WriteRequest encoder read back by the protobuf library (the
messages built from the remote write 1.0 field numbers), for any labels, values and times:
stale markers, NaN, infinities, negative and far timestamps, unicode."""

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.remote import wire
from tests.support.promwire import write_request_class

WriteRequest = write_request_class()
text = st.text(max_size=40)
series = st.lists(st.tuples(st.lists(st.tuples(text, text), max_size=6),
                            st.lists(st.tuples(st.integers(-(2 ** 62), 2 ** 62), st.floats(allow_nan=True)), max_size=8)),
                  max_size=6)


def same(a, b):
    return struct.pack("<d", a) == struct.pack("<d", b) or (a == b)


@settings(max_examples=300, deadline=None)
@given(series, st.lists(st.tuples(text, st.sampled_from(sorted(wire.METRIC_TYPES)), text), max_size=3))
def test_the_protobuf_library_reads_what_the_encoder_writes(batch, metadata):
    decoded = WriteRequest.FromString(wire.decompress(wire.compress(wire.encode(batch, metadata))))
    assert len(decoded.timeseries) == len(batch)
    for ts, (labels, samples) in zip(decoded.timeseries, batch):
        assert [(label.name, label.value) for label in ts.labels] == labels
        assert [s.timestamp for s in ts.samples] == [t for t, _ in samples]
        assert all(same(s.value, v) for s, (_, v) in zip(ts.samples, samples)), "bit for bit: a stale marker stays one"
    assert [(m.metric_family_name, m.type, m.help) for m in decoded.metadata] == \
        [(f, wire.METRIC_TYPES[k], h) for f, k, h in metadata]


def test_a_stale_marker_goes_out_as_prometheus_stale_nan():
    from agent.tsdb.codec import STALE

    body = wire.encode([((("__name__", "up"),), [(1000, STALE), (2000, math.inf)])])
    samples = WriteRequest.FromString(body).timeseries[0].samples
    assert struct.pack("<d", samples[0].value) == struct.pack("<Q", 0x7FF0000000000002) and samples[1].value == math.inf
