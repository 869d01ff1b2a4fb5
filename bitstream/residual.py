"""Lossless coding of integer residuals r = x − c (c a rounded prediction) with a law that does
not depend on the prediction: a Gaussian of standard deviation σ, mean 0, quantised to the
integers.  σ comes from a table of 256 levels, σ(ℓ) = 2**(ℓ/16 − 4) ∈ [1/16, 2**11.94], sent as
one byte.

Format version 3 builds the law from :mod:`bitstream.portable_math` (``residual_law``), so its
quantised probabilities are the same on every machine; versions 1 and 2 used constriction's
``QuantizedGaussian`` (``gaussian_model``), kept here to read them, with the version-1 layouts
(``encode``/``decode``, ``encode_planes``/``decode_planes``).
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np

from . import portable_math

LOW, HIGH = -255, 255


def sigma(level: int) -> float:
    if not 0 <= level <= 255:
        raise ValueError(f"σ level {level} outside 0..255")
    return 2.0 ** (level / 16.0 - 4.0)


def portable_sigma(level: int) -> float:
    """σ(ℓ) = 2**(ℓ/16 − 4) as :func:`bitstream.portable_math.exp` computes it (format version 3)."""
    if not 0 <= level <= 255:
        raise ValueError(f"σ level {level} outside 0..255")
    return float(portable_math.exp(np.array([(level - 64) / 16.0 * portable_math.LN2]))[0])


def portable_gaussian_probs(level: int, bound: int) -> np.ndarray:
    """Probabilities of −bound..bound under N(0, σ²) quantised to the integers, the two ends taking
    the tails, from :mod:`bitstream.portable_math` (the same bits on every machine)."""
    s = portable_sigma(level)
    r = np.arange(0, bound + 1, dtype=np.float64)
    above = portable_math.normal_tail((r + 0.5) / s)  # P(X > r + ½)
    half = np.maximum(portable_math.normal_tail((r - 0.5) / s) - above, 0.0)
    half[0] = max(1.0 - 2.0 * above[0], 0.0)
    half[-1] = portable_math.normal_tail(np.array([(bound - 0.5) / s]))[0] if bound else half[-1]
    return portable_math.normalised(np.concatenate([half[:0:-1], half]))


@functools.lru_cache(maxsize=1024)
def _portable_gaussian(level: int, bound: int):
    return constriction.stream.model.Categorical(portable_gaussian_probs(level, bound), perfect=False)


class _Shifted:
    """A categorical law over −bound..bound used through symbols 0..2·bound."""

    def __init__(self, model, bound: int):
        self.model, self.bound = model, bound

    def encode(self, enc, r: np.ndarray) -> None:
        enc.encode((r + self.bound).astype(np.int32), self.model)

    def decode(self, dec, count: int) -> np.ndarray:
        return np.asarray(dec.decode(self.model, int(count)), dtype=np.int64) - self.bound


class _Direct:
    """constriction's own quantised Gaussian (format versions 1 and 2)."""

    def __init__(self, model):
        self.model = model

    def encode(self, enc, r: np.ndarray) -> None:
        enc.encode(r.astype(np.int32), self.model)

    def decode(self, dec, count: int) -> np.ndarray:
        return np.asarray(dec.decode(self.model, int(count)), dtype=np.int64)


def residual_law(level: int, bound: int = HIGH, *, portable: bool = True):
    """The discretised Gaussian of σ level ``level``, mean 0, on −bound..bound, with ``encode(enc,
    r)`` and ``decode(dec, count)``.  ``portable`` (format version 3) builds it from portable
    math; False is constriction's ``QuantizedGaussian`` of versions 1 and 2."""
    if portable:
        return _Shifted(_portable_gaussian(int(level), int(bound)), int(bound))
    return _Direct(gaussian_model(level, bound))


def gaussian_model(level: int, bound: int = HIGH):
    """Discretised Gaussian of σ level ``level``, mean 0, on −bound..bound (versions 1 and 2)."""
    return constriction.stream.model.QuantizedGaussian(-bound, bound, 0.0, sigma(level))


def _check(residuals, bound: int = HIGH) -> np.ndarray:
    r = np.asarray(residuals)
    if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError("residuals must be a 1-D integer array")
    if r.size and (r.min() < -bound or r.max() > bound):
        raise ValueError(f"residuals must lie in {-bound}..{bound}")
    return r.astype(np.int32)


def estimated_bits(residuals, level: int, bound: int = HIGH) -> float:
    """Code length (bits) under the discretised Gaussian, estimated with math.erf (for choosing σ)."""
    r = _check(residuals, bound)
    LOW, HIGH = -bound, bound  # noqa: N806  (the support's ends get the tails)
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


def best_level(residuals, bound: int = HIGH) -> int:
    """The σ level with the shortest estimated code (searched around the RMS)."""
    r = _check(residuals, bound)
    rms = math.sqrt(float(np.mean(r.astype(np.float64) ** 2))) if r.size else 1.0
    guess = int(round(16 * (math.log2(max(rms, 2.0**-4)) + 4)))
    candidates = range(max(0, guess - 12), min(255, guess + 12) + 1)
    return min(candidates, key=lambda lv: estimated_bits(r, lv, bound))


def encode(residuals, level: int, bound: int = HIGH) -> bytes:
    """Range-coded residuals (FIFO), as little-endian 32-bit words, trailing zero bytes dropped."""
    r = _check(residuals, bound)
    enc = constriction.stream.queue.RangeEncoder()
    if r.size:
        enc.encode(r, gaussian_model(level, bound))
    return enc.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def decode(data: bytes, count: int, level: int, bound: int = HIGH) -> np.ndarray:
    data = bytes(data) + b"\0" * (-len(data) % 4)
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    return np.asarray(dec.decode(gaussian_model(level, bound), int(count)), dtype=np.int64)


# ---- colour planes (the lossless record of format version 1; version 2: ``interlaced``) ------
# The residuals of the colour planes of one image are correlated (a prediction that is too dark
# in red tends to be too dark in green).  Plane c ≥ 1 is predicted from the planes before it,
# p_c = Σ_j (k_cj · r_j + 8) >> 4 (integer arithmetic, k_cj ∈ −24..24 sent as signed bytes),
# and only the innovation e_c = r_c − p_c is coded, with its own σ level, on −1023..1023.
# Everything is integer and known to both sides, so this stays independent of the network.

PLANE_BOUND = 1023
COEF_LIMIT = 24


def _plane_prediction(planes: np.ndarray, c: int, coefs: list[int]) -> np.ndarray:
    acc = np.zeros(planes.shape[1], dtype=np.int64)
    for j, k in enumerate(coefs):
        acc += k * planes[j]
    return (acc + 8) >> 4


def encode_planes(planes) -> bytes:
    """Integer residual planes (C, N) in −255..255 → σ levels (C bytes), prediction coefficients
    (C(C−1)/2 signed bytes, plane by plane), then one range-coded stream of all innovations."""
    planes = np.asarray(planes)
    if planes.ndim != 2 or not np.issubdtype(planes.dtype, np.integer):
        raise ValueError("planes must be a 2-D integer array (C, N)")
    planes = planes.astype(np.int64)
    if planes.size and (planes.min() < LOW or planes.max() > HIGH):
        raise ValueError(f"residuals must lie in {LOW}..{HIGH}")
    C = planes.shape[0]
    levels, coef_bytes, innovations = [], bytearray(), []
    for c in range(C):
        coefs = []
        if c:
            X = planes[:c].T.astype(np.float64)
            sol = np.linalg.lstsq(X, planes[c].astype(np.float64), rcond=None)[0] if planes.shape[1] else np.zeros(c)
            coefs = [int(np.clip(np.round(v * 16), -COEF_LIMIT, COEF_LIMIT)) for v in sol]
            coef_bytes += bytes(k & 0xFF for k in coefs)
        e = planes[c] - _plane_prediction(planes, c, coefs)
        levels.append(best_level(e, PLANE_BOUND))
        innovations.append(e)
    enc = constriction.stream.queue.RangeEncoder()
    for c, e in enumerate(innovations):
        if e.size:
            enc.encode(e.astype(np.int32), gaussian_model(levels[c], PLANE_BOUND))
    stream = enc.get_compressed().astype("<u4").tobytes().rstrip(b"\0")
    return bytes(levels) + bytes(coef_bytes) + stream


def decode_planes(data: bytes, channels: int, count: int) -> np.ndarray:
    """Inverse of :func:`encode_planes` → int64 (C, N)."""
    C, n = int(channels), int(count)
    head = C + C * (C - 1) // 2
    if len(data) < head:
        raise ValueError("residual planes: data too short")
    levels = list(data[:C])
    signed = [b - 256 if b > 127 else b for b in data[C:head]]
    if any(abs(k) > COEF_LIMIT for k in signed):
        raise ValueError("residual planes: prediction coefficient out of range")
    body = bytes(data[head:]) + b"\0" * (-(len(data) - head) % 4)
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(body, dtype="<u4").astype(np.uint32))
    planes = np.zeros((C, n), dtype=np.int64)
    pos = 0
    for c in range(C):
        coefs = signed[pos:pos + c]
        pos += c
        e = np.asarray(dec.decode(gaussian_model(levels[c], PLANE_BOUND), n), dtype=np.int64) if n else np.zeros(0, np.int64)
        planes[c] = e + _plane_prediction(planes, c, coefs)
    return planes
