"""Prometheus remote write 1.0 on the wire: a protobuf `WriteRequest`, snappy block compressed.

The protobuf encoding is written here, not generated: a WriteRequest is four message types
of two or three fields each (labels as strings, samples as a double and a varint). The same
series come in every batch and a batch's samples share a few timestamps (one per cycle), so the
encoder keeps each series' encoded labels between batches and each timestamp's bytes per batch:
5,000 samples of a GPU box in 2.4 ms, against 5.7 ms for the protobuf library's upb messages
(9 ms with no label kept), without its 5 MiB and 25 ms import (tests/bench/bench_remote_write.py
measures both; the tests read every batch back with the protobuf library). Snappy is cramjam's
(Rust), a well-kept binding with wheels for every Python this agent supports.

    message WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds
    message MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4; string unit = 5; }
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cramjam

HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}
METRIC_TYPES = {"unknown": 0, "counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4, "summary": 5,
                "info": 6, "stateset": 7}

Labels = Tuple[Tuple[str, str], ...]  # sorted by name, __name__ among them
Series = Tuple[Labels, Sequence[Tuple[int, float]]]  # labels, (timestamp ms, value) oldest first
_DOUBLE = struct.Struct("<d")


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 as its two's complement (ten bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


def encode(series: Iterable[Series], metadata: Sequence[Tuple[str, str, str]] = (),
           label_cache: Optional[Dict[Labels, bytes]] = None) -> bytes:
    """The WriteRequest (uncompressed). `metadata`: (family, type, help) as Prometheus sends it.
    `label_cache`: encoded label sets kept between batches by the caller (the same series come
    every batch). A batch's samples share a handful of timestamps (one per cycle), so each
    timestamp's bytes are made once per batch."""
    parts: List[bytes] = []
    stamps: Dict[int, bytes] = {}
    pack = _DOUBLE.pack
    cache = label_cache if label_cache is not None else {}
    for labels, samples in series:
        key = tuple(labels)
        encoded = cache.get(key)
        if encoded is None:
            encoded = cache[key] = b"".join(_label(n, v) for n, v in labels)
        body = [encoded]
        for t, v in samples:
            tail = stamps.get(t)
            if tail is None:  # Sample {double value = 1 (tag 0x09); int64 timestamp = 2 (tag 0x10)}
                ts = b"\x10" + varint(t)
                tail = stamps[t] = ts
            body.append(b"\x12" + bytes((9 + len(tail),)) + b"\x09" + pack(v) + tail)
        parts.append(_field(1, b"".join(body)))
    for family, kind, help_ in metadata:
        meta = b"\x08" + varint(METRIC_TYPES.get(kind, 0)) + _field(2, family.encode()) + _field(4, help_.encode())
        parts.append(_field(3, meta))
    return b"".join(parts)


def compress(body: bytes) -> bytes:
    """Snappy's block format (not the framed one), as remote write asks."""
    return bytes(cramjam.snappy.compress_raw(body))


def decompress(body: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(body))


__all__ = ["HEADERS", "Labels", "Series", "compress", "decompress", "encode", "varint"]
