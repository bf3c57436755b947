"""Chunk encoding: the times and value columns of one series over one window, as bytes.

Times are integer milliseconds stored as a first value and deltas (a steady interval
compresses to almost nothing). Each value column is stored one of two ways:
- *decimal*: most of what a GPU box reports has a resolution (whole degrees, percent, MHz,
  bytes and tokens, watts from milliwatts, CPU seconds in 1/100 s). When every value of the
  column is exactly `m / 10**k` for integers m and one k <= 6 (checked by the round trip, so
  decoding gives back the very same doubles), the column is stored as the deltas of m, which
  are small integers for gauges that walk and counters that climb (the encoding
  VictoriaMetrics uses, for the same reason);
- *doubles*: anything else (NaN, stale markers, full-precision ratios), byte-shuffled (all
  first bytes, then all second bytes, ...) so that the sign, exponent and high mantissa
  bytes that barely move sit together.
Both are zlib-compressed. Shuffling is done with extended slices, in C.

A third kind, *offsets*, is integers stored as they are, for columns that are small
differences from another column (a rollup's min and max from its last value): the caller
does that arithmetic, and decoding gives them back as an array of integers.

Layout: b"LH\\x02" ncols(u8) n(u32) len(times)(u32) zlib(times), then per column: kind(u8:
0 doubles, 1 decimal, 2 offsets) k(u8) len(u32) zlib(data). Anything else is `CorruptChunk` (a
ValueError), never another exception: a damaged file is reported, not crashed on.
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from itertools import accumulate, repeat
from operator import eq, mul, sub, truediv
from typing import Dict, List, Optional, Sequence, Tuple, Union, cast

MAGIC = b"LH\x02"
_HEAD = struct.Struct("<BII")  # ncols, n, len(times blob)
_COL = struct.Struct("<BBI")  # kind, k, len(data)
DOUBLES, DECIMAL, OFFSETS = 0, 1, 2
MAX_POINTS = 1 << 22  # no chunk is this large; a header saying so is damage, not a request to allocate
MAX_SCALE = 6
_LIMIT = float(1 << 53)  # integers beyond this are not exact in a double
# Prometheus' staleness marker: a NaN with this exact bit pattern, written when a series vanishes
STALE_BITS = 0x7FF0000000000002
STALE_BYTES = struct.pack("<Q", STALE_BITS)
STALE = struct.unpack("<d", STALE_BYTES)[0]
Stored = Union[array, List[int]]  # a column as decode_stored gives it


class CorruptChunk(ValueError):
    """The bytes are not a chunk this version wrote."""


def is_stale(value: float) -> bool:
    return value != value and struct.pack("<d", value) == STALE_BYTES


def shuffle(raw: bytes) -> bytes:
    return b"".join(raw[i::8] for i in range(8))


def unshuffle(data: bytes) -> bytes:
    n = len(data) // 8
    out = bytearray(len(data))
    for i in range(8):
        out[i::8] = data[i * n:(i + 1) * n]
    return bytes(out)


def encode_times(times_ms: Sequence[int]) -> bytes:
    deltas = array("q", [times_ms[0]] if times_ms else [])
    deltas.extend(b - a for a, b in zip(times_ms, times_ms[1:]))
    return zlib.compress(deltas.tobytes(), 6)


def scale_of(values: Sequence[float]) -> int:
    """The smallest k with every value exactly m / 10**k (m an integer below 2**53), or -1."""
    return decimal_of(values)[0]


def decimal_of(values: Sequence[float]) -> Tuple[int, List[int]]:
    """scale_of(values) and each value's m at that scale ([] when -1). The whole column is
    checked with map() over C functions, not a Python expression a value: this check was half
    of a seal's time (~1,200 series' 30-minute columns and their rollups)."""
    k = 0
    for v in values[:8]:  # the first few decide the scale; the whole column is checked below
        if not math.isfinite(v) or abs(v) >= _LIMIT:
            return -1, []
        while k <= MAX_SCALE and round(v * 10 ** k) / 10 ** k != v:
            k += 1
        if k > MAX_SCALE:
            return -1, []
    if k == 0:  # whole numbers (most of a box's columns, and every count): no product or quotient to check
        floats = values.tolist() if isinstance(values, array) else [float(v) for v in values]
        if not all(map(float.is_integer, floats)) or (floats and (min(floats) <= -_LIMIT or max(floats) >= _LIMIT)):
            return -1, []  # a fraction further on, NaN, an infinity, or too large to be exact
        return 0, list(map(int, floats))
    scale = 10 ** k
    try:
        ints = list(map(round, map(mul, values, repeat(scale))))
    except (ValueError, OverflowError):  # NaN or infinity further on
        return -1, []
    if ints and (min(ints) <= -_LIMIT or max(ints) >= _LIMIT):
        return -1, []
    if not all(map(eq, map(truediv, ints, repeat(scale)), values)):
        return -1, []
    return k, ints


def encode_column(values: array, decimal: Optional[Tuple[int, List[int]]] = None) -> bytes:
    """One column of doubles (an array('d')) as kind, k, length and data; `decimal`: what
    decimal_of(values) gave, where the caller has it."""
    k, ints = decimal_of(values) if decimal is None else decimal
    if k >= 0:
        deltas = array("q", ints[:1])
        deltas.extend(map(sub, ints[1:], ints))
        data = zlib.compress(shuffle(deltas.tobytes()), 6)
        return _COL.pack(DECIMAL, k, len(data)) + data
    data = zlib.compress(shuffle(values.tobytes()), 6)
    return _COL.pack(DOUBLES, 0, len(data)) + data


def encode_offsets(ints: Sequence[int], k: int) -> bytes:
    """A column of integers (differences the caller computed), stored as they are."""
    data = zlib.compress(shuffle(array("q", ints).tobytes()), 6)
    return _COL.pack(OFFSETS, k, len(data)) + data


def encode(times_blob: bytes, n: int, columns: Sequence[object]) -> bytes:
    """One chunk from an encoded time column (`encode_times`, shared by every series of a
    window) and `columns`: each n doubles (an array('d')), or a column already encoded
    (bytes from `encode_offsets`)."""
    body = b"".join(c if isinstance(c, bytes) else encode_column(c) for c in columns)  # type: ignore[arg-type]
    return MAGIC + _HEAD.pack(len(columns), n, len(times_blob)) + times_blob + body


def _inflate(data: bytes, expected: int) -> bytes:
    """zlib, bounded: a damaged chunk cannot inflate into gigabytes."""
    try:
        out = zlib.decompressobj().decompress(data, expected + 1)
    except zlib.error as e:
        raise CorruptChunk(f"chunk does not decompress: {e}") from None
    if len(out) != expected:
        raise CorruptChunk("chunk length does not match its header")
    return out


def column_count(blob: bytes) -> int:
    """How many columns a chunk's header says it has (0 if it has no header)."""
    return _HEAD.unpack_from(blob, 3)[0] if blob[:3] == MAGIC and len(blob) >= 3 + _HEAD.size else 0


def decode(blob: bytes, want: Optional[Sequence[int]] = None,
           scales: Optional[Dict[int, int]] = None) -> Tuple[List[float], Dict[int, array]]:
    """(times in seconds, {column index: array}) for the columns in `want` (all if None):
    doubles, or integers ('q') for an offsets column, whose decimal scale goes into `scales`."""
    ms, stored = decode_stored(blob, want)
    times = [t / 1000.0 for t in ms]
    columns: Dict[int, array] = {}
    for c, (kind, k, col) in stored.items():
        if kind == DECIMAL:
            scale = 10 ** k
            columns[c] = array("d", col) if k == 0 else array("d", [m / scale for m in col])
            continue
        if kind == OFFSETS and scales is not None:
            scales[c] = k
        columns[c] = cast(array, col)  # doubles and offsets come as arrays
    return times, columns


def decode_stored(blob: bytes, want: Optional[Sequence[int]] = None) -> Tuple[List[int], Dict[int, Tuple[int, int, Stored]]]:
    """(times in integer milliseconds, {column index: (kind, k, values)}) for the columns in
    `want` (all if None), as stored: a decimal column as its integers m (each value is
    m / 10**k, a list), an offsets column as its integers (an array), doubles as doubles.
    What `decode` turns into floats; a reader of a few points converts only those
    (rollup.decode_column)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CorruptChunk("not a history chunk")
    blob = bytes(blob)
    if blob[:3] != MAGIC or len(blob) < 3 + _HEAD.size:
        raise CorruptChunk("not a history chunk")
    ncols, n, tlen = _HEAD.unpack_from(blob, 3)
    pos = 3 + _HEAD.size
    if not 1 <= ncols <= 8 or n > MAX_POINTS or pos + tlen > len(blob):
        raise CorruptChunk("chunk header out of range")
    deltas = array("q")
    deltas.frombytes(_inflate(blob[pos:pos + tlen], 8 * n))
    ms = _running_sum(deltas)
    pos += tlen
    columns: Dict[int, Tuple[int, int, Stored]] = {}
    for c in range(ncols):
        if pos + _COL.size > len(blob):
            raise CorruptChunk("chunk ends inside a column header")
        kind, k, length = _COL.unpack_from(blob, pos)
        pos += _COL.size
        if pos + length > len(blob) or kind not in (DOUBLES, DECIMAL, OFFSETS) or k > MAX_SCALE:
            raise CorruptChunk("column header out of range")
        if want is None or c in want:
            col = array("d" if kind == DOUBLES else "q")
            col.frombytes(unshuffle(_inflate(blob[pos:pos + length], 8 * n)))
            columns[c] = (kind, k, _running_sum(col) if kind == DECIMAL else col)
        pos += length
    if pos != len(blob):
        raise CorruptChunk("trailing bytes after the last column")
    return ms, columns


def _running_sum(deltas: array) -> List[int]:
    """The integers the deltas add up to, as a list: an array('q') of them cost twice as much to
    build and again to turn into doubles (a week of minutes is ~10,000 points a series)."""
    sums = list(accumulate(deltas))
    if sums and (max(sums) >= _LIMIT or min(sums) <= -_LIMIT):  # a valid chunk's integers stay below 2**53
        raise CorruptChunk("chunk values out of range")
    return sums
