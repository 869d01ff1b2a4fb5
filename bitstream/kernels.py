"""Compiled inner loop of channel simulation: the log-weights of many candidates at once.

The encoder scores every candidate n of a call by ln w_n = Σ_i a_i u_{n,i}² + b_i u_{n,i} + c
(``bitstream.channel``), where u_n is candidate n of the shared noise (``bitstream.noise``,
recipe steps 1–5).  Done with numpy this makes the normals in memory and passes over them
several times; here one fused loop per candidate generates its Philox words, turns them into
normals and accumulates the sum, in parallel over candidates.  The numbers are those of the
recipe: the same words and uniforms bit for bit, the normals up to the last ulp of the
platform's log/cos/sin (``tests/test_channel.py`` compares the two paths).
"""

from __future__ import annotations

import numba
import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_M0 = np.uint64(0xD2E7470EE14C6C93)
_M1 = np.uint64(0xCA5A826395121157)
_W0 = np.uint64(0x9E3779B97F4A7C15)
_W1 = np.uint64(0xBB67AE8584CAA73B)
_INV_2_53 = 2.0**-53
_TWO_PI = 2.0 * np.pi


@numba.njit(inline="always")
def _mulhilo(a, b):
    a_lo, a_hi = a & _M32, a >> _S32
    b_lo, b_hi = b & _M32, b >> _S32
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_hi = a_lo * b_hi
    cross = (lo_lo >> _S32) + (hi_lo & _M32) + lo_hi
    hi = a_hi * b_hi + (hi_lo >> _S32) + (cross >> _S32)
    lo = (cross << _S32) | (lo_lo & _M32)
    return hi, lo


@numba.njit(inline="always")
def _philox(c0, c1, c2, c3, k0, k1):
    for r in range(10):
        if r:
            k0 = k0 + _W0
            k1 = k1 + _W1
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@numba.njit(inline="always")
def _uniform(r):
    return (np.float64(r >> _S11) + 1.0) * _INV_2_53


@numba.njit(inline="always")
def _pair(w_rad, w_ang):
    rad = np.sqrt(-2.0 * np.log(_uniform(w_rad)))
    ang = _TWO_PI * _uniform(w_ang)
    return rad * np.cos(ang), rad * np.sin(ang)


@numba.njit(parallel=True, cache=True)
def _log_weights(k0, k1, lane, start, count, a, b, c, out):
    d = a.size
    blocks = (d + 3) // 4
    for row in numba.prange(count):
        n = np.uint64(start + row)
        acc = 0.0
        for j in range(blocks):
            ctr = n * np.uint64(blocks) + np.uint64(j) + _ONE
            r0, r1, r2, r3 = _philox(ctr, lane, np.uint64(0), np.uint64(0), k0, k1)
            z0, z1 = _pair(r0, r1)
            z2, z3 = _pair(r2, r3)
            i = 4 * j
            acc += a[i] * z0 * z0 + b[i] * z0
            if i + 1 < d:
                acc += a[i + 1] * z1 * z1 + b[i + 1] * z1
            if i + 2 < d:
                acc += a[i + 2] * z2 * z2 + b[i + 2] * z2
            if i + 3 < d:
                acc += a[i + 3] * z3 * z3 + b[i + 3] * z3
        out[row] = acc + c


def log_weights(seed: int, stream: int, lane: int, start: int, count: int, a: np.ndarray, b: np.ndarray,
                c: float) -> np.ndarray:
    """ln w_n for candidates ``start .. start+count-1`` of ``(seed, stream, lane)`` (float64, (count,))."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError("a and b must be non-empty 1-D arrays of the same length")
    out = np.empty(int(count), dtype=np.float64)
    _log_weights(np.uint64(seed), np.uint64(stream), np.uint64(lane), int(start), int(count), a, b, float(c), out)
    return out
