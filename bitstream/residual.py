"""Lossless coding of integer residuals r = x − c (c a rounded prediction) with a law that does
not depend on the prediction: a Gaussian of standard deviation σ quantised to the integers
−255..255 (constriction's ``QuantizedGaussian``, mean 0).

Because the law ignores the prediction, a decoder whose prediction differs slightly from the
encoder's (other hardware, other thread count) still decodes every residual; only pixels where
the two rounded predictions differ come out off by one.  σ comes from a table of 256 levels,
σ(ℓ) = 2**(ℓ/16 − 4) ∈ [1/16, 2**11.94], sent as one byte.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

LOW, HIGH = -255, 255


def sigma(level: int) -> float:
    if not 0 <= level <= 255:
        raise ValueError(f"σ level {level} outside 0..255")
    return 2.0 ** (level / 16.0 - 4.0)


def _model(level: int):
    return constriction.stream.model.QuantizedGaussian(LOW, HIGH, 0.0, sigma(level))


def _check(residuals) -> np.ndarray:
    r = np.asarray(residuals)
    if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError("residuals must be a 1-D integer array")
    if r.size and (r.min() < LOW or r.max() > HIGH):
        raise ValueError(f"residuals must lie in {LOW}..{HIGH}")
    return r.astype(np.int32)


def estimated_bits(residuals, level: int) -> float:
    """Code length (bits) under the discretised Gaussian, estimated with math.erf (for choosing σ)."""
    r = _check(residuals)
    values, counts = np.unique(r, return_counts=True)
    s = sigma(level) * math.sqrt(2.0)
    total = 0.0
    for v, c in zip(values.tolist(), counts.tolist()):
        lo = -math.inf if v == LOW else (v - 0.5) / s
        hi = math.inf if v == HIGH else (v + 0.5) / s
        p = 0.5 * (math.erf(hi) - math.erf(lo)) if math.isfinite(lo) and math.isfinite(hi) else (
            0.5 * math.erfc(lo) if math.isfinite(lo) else 0.5 * math.erfc(-hi))
        total -= c * math.log2(max(p, 2.0**-24))
    return total


def best_level(residuals) -> int:
    """The σ level with the shortest estimated code (coarse then fine search)."""
    r = _check(residuals)
    rms = math.sqrt(float(np.mean(r.astype(np.float64) ** 2))) if r.size else 1.0
    guess = int(round(16 * (math.log2(max(rms, 2.0**-4)) + 4)))
    candidates = range(max(0, guess - 12), min(255, guess + 12) + 1)
    return min(candidates, key=lambda lv: estimated_bits(r, lv))


def encode(residuals, level: int) -> bytes:
    """Range-coded residuals (FIFO), as little-endian 32-bit words, trailing zero bytes dropped."""
    r = _check(residuals)
    enc = constriction.stream.queue.RangeEncoder()
    if r.size:
        enc.encode(r, _model(level))
    return enc.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def decode(data: bytes, count: int, level: int) -> np.ndarray:
    data = bytes(data) + b"\0" * (-len(data) % 4)
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    return np.asarray(dec.decode(_model(level), int(count)), dtype=np.int64)
