"""Rounding that two machines agree on although their inputs differ in the last bits.

The lossless record codes pixels as integer residuals around a rounded prediction P = ⌊v + ½⌋,
where v is a real number the decoder recomputes (through a network, on other hardware).  If the
decoder's v' differs from the encoder's v by δ, the two roundings disagree exactly when v lies
within δ of a half-integer.  So the encoder lists every position where v is within a *margin*
of a half-integer, and for each sends which of the two neighbouring integers it took
(P − ⌊v⌋ ∈ {0, 1}, and ⌊v⌋ is robust there).  The decoder rounds v' normally except at the
listed positions, where it takes ⌊v'⌋ + bit.  Both sides then hold the same integers whenever
|v' − v| < margin at every position (and < ½ − margin at the listed ones): a guarantee stated in
terms of the inputs' agreement, at the cost of about 2·margin·N listed positions.

The list is: varint count n, then n varint gaps (first position, then each position minus the
previous one minus 1), then ⌈n/8⌉ bytes of bits (position i's bit is bit i % 8 of byte i // 8).
"""

from __future__ import annotations

import numpy as np

from .container import FormatError, read_varint, write_varint


def near_half(values: np.ndarray, margin: float) -> np.ndarray:
    """Positions (ascending) whose value lies strictly within ``margin`` of a half-integer."""
    v = np.asarray(values, dtype=np.float64)
    return np.flatnonzero(np.abs(v - np.floor(v) - 0.5) < margin)


def encode(values: np.ndarray, margin: float) -> tuple[bytes, np.ndarray]:
    """(list bytes, rounded values as int64): ⌊v + ½⌋ everywhere, the near-half positions listed."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    if not 0 <= margin < 0.25:
        raise ValueError("margin must be in [0, 1/4)")
    rounded = np.floor(v + 0.5).astype(np.int64)
    listed = near_half(v, margin)
    bits = (rounded[listed] - np.floor(v[listed]).astype(np.int64)).astype(np.uint8)
    out = bytearray(write_varint(listed.size))
    previous = -1
    for p in listed.tolist():
        out += write_varint(p - previous - 1)
        previous = p
    out += np.packbits(bits, bitorder="little").tobytes()
    return bytes(out), rounded


def decode(data: bytes, values: np.ndarray) -> tuple[np.ndarray, int]:
    """(rounded values as int64, bytes read) from the list at the start of ``data`` and the
    decoder's own ``values``; FormatError if the list is malformed."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    try:
        count, pos = read_varint(data, 0, "the rounding list's length")
        if count > v.size:
            raise FormatError(f"the rounding list names {count} positions of {v.size}")
        listed = np.empty(count, dtype=np.int64)
        previous = -1
        for i in range(count):
            gap, pos = read_varint(data, pos, "a rounding list position")
            previous += gap + 1
            if previous >= v.size:
                raise FormatError("a rounding list position is out of range")
            listed[i] = previous
    except EOFError as e:
        raise FormatError(f"the rounding list is cut short ({e})") from None
    nbytes = -(-count // 8)
    if pos + nbytes > len(data):
        raise FormatError("the rounding list is cut short")
    bits = np.unpackbits(np.frombuffer(bytes(data[pos:pos + nbytes]), dtype=np.uint8), bitorder="little")[:count]
    rounded = np.floor(v + 0.5).astype(np.int64)
    rounded[listed] = np.floor(v[listed]).astype(np.int64) + bits
    return rounded, pos + nbytes
