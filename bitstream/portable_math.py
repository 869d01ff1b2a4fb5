"""exp, log and the normal tail from IEEE-754 basic operations only, so that the entropy models
built from them are bit-identical on every machine.

An entropy model is a table of probabilities that the range coder quantises to integers; encoder
and decoder must derive the *same* integers, or decoding fails from the first differing symbol.
numpy's and libm's ``exp``/``log`` are accurate to an ulp or so, but not the same ulp everywhere:
numpy dispatches to different SIMD code on AVX-512, AVX2 and Arm, and libm versions differ.
Addition, subtraction, multiplication, division, ``rint``, ``frexp`` and ``ldexp`` are exactly
rounded (or exact) by IEEE 754 on every platform, and numpy applies each as its own pass (no
fused multiply-add), so the functions below, written with those alone in a fixed order, return
the same bits on every machine.  Sums of probabilities use ``math.fsum`` (exactly rounded).

Accuracy: ``exp`` and ``log`` within a few ulps, ``normal_tail`` within 1.2e-7 relative; that
only affects compression, never correctness.  Results below 2**-600 are flushed to 0 here, so no
subnormal number (whose handling depends on processor flags) ever occurs.
FORMAT.md §9 restates the algorithms for reimplementations.
"""

from __future__ import annotations

import math

import numpy as np

LN2_HI = 0.693147180369123816490  # ln 2 split so that k * LN2_HI is exact for |k| < 2**11
LN2_LO = 1.90821492927058770002e-10
LN2 = 0.6931471805599453
SQRT_HALF = 0.7071067811865476
EXP_FLOOR = -600.0  # exp(x) = 0 below this (exp(-600) ≈ 2.7e-261 is still a normal number)

# Taylor coefficients 1/n! (n = 0..17) and atanh series 1/(2k+1) (k = 0..11), evaluated by Horner.
_EXP_COEFS = [1.0 / math.factorial(n) for n in range(18)]
_ATANH_COEFS = [1.0 / (2 * k + 1) for k in range(12)]

# erfc(z) ≈ t · exp(−z² + P(t)), t = 1/(1 + z/2), z ≥ 0 (Chebyshev fit, relative error < 1.2e-7)
_ERFC_COEFS = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
               1.48851587, -0.82215223, 0.17087277]


def _horner(coefs: list[float], x: np.ndarray) -> np.ndarray:
    y = np.full_like(x, coefs[-1])
    for c in reversed(coefs[:-1]):
        y = y * x
        y = y + c
    return y


def exp(x) -> np.ndarray:
    """e**x for float64 ``x``: x = k ln 2 + r with |r| ≤ ln 2 / 2, a degree-17 Taylor polynomial
    of r, scaled by 2**k; 0 below ``EXP_FLOOR``."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(np.isnan(x)) or np.any(x > 700):
        raise ValueError("exp: argument is NaN or above 700")
    small = x < EXP_FLOOR
    xs = np.where(small, 0.0, x)
    k = np.rint(xs / LN2)
    r = xs - k * LN2_HI
    r = r - k * LN2_LO
    y = np.ldexp(_horner(_EXP_COEFS, r), k.astype(np.int64))
    return np.where(small, 0.0, y)


def log(x) -> np.ndarray:
    """ln x for positive float64 ``x``: x = m · 2**e with m in [√½, √2), ln m = 2 atanh(s),
    s = (m − 1)/(m + 1), by a series of 12 terms."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(~(x > 0)) or np.any(np.isinf(x)):
        raise ValueError("log: argument must be positive and finite")
    m, e = np.frexp(x)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = np.where(low, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    series = _horner(_ATANH_COEFS, s * s) * s
    return e * LN2 + 2.0 * series


def erfc_nonnegative(z) -> np.ndarray:
    """erfc(z) for z ≥ 0 (relative error below 1.2e-7)."""
    z = np.asarray(z, dtype=np.float64)
    if np.any(~(z >= 0)):
        raise ValueError("erfc_nonnegative: argument must be ≥ 0")
    t = 1.0 / (1.0 + 0.5 * z)
    return t * exp(_horner(_ERFC_COEFS, t) - z * z)


def normal_tail(z) -> np.ndarray:
    """Q(z) = P(N(0, 1) > z) = erfc(z/√2)/2, for any real z."""
    z = np.asarray(z, dtype=np.float64)
    upper = 0.5 * erfc_nonnegative(np.abs(z) * SQRT_HALF)
    return np.where(z >= 0, upper, 1.0 - upper)


def normalised(weights: np.ndarray) -> np.ndarray:
    """weights / their exactly rounded sum (``math.fsum``), as float64."""
    w = np.asarray(weights, dtype=np.float64)
    total = math.fsum(w.tolist())
    if not total > 0:
        raise ValueError("weights must have a positive sum")
    return w / total
