"""Compiled inner loop of channel simulation (format version 3): the log-weights of many
candidates at once.

The encoder scores every candidate n of a call by ln w_n = Σ_i a_i u_{n,i}² + b_i u_{n,i} + c
(``bitstream.channel``), where u_n is candidate n of the shared noise (``bitstream.noise``,
recipe steps 1–5).  Two compiled versions of the same numbers:

* ``log_weights`` (used by ``CompiledScorer``) is the vectorised kernel of
  ``bitstream.kernels_exact``: 16 candidates per SIMD tile, Philox by 32-bit products, ln and
  sincos as branch-free float64 polynomials (no libm), in parallel over tiles; 9.3 × the
  reference on 2 cores of an AMD EPYC (AVX-512; AVX2 code as fast; ``benchmarks/studies/scoring_speed_v3.py``).
* ``log_weights_reference`` is one fused scalar loop per candidate (Philox words, libm's
  log/cos/sin, the sum), in parallel over candidates.

Both use the recipe's words and uniforms bit for bit; their normals differ from numpy's by at
most a few 1e-15 (libm's last ulp; numpy and the reference round 2πu), the log-weights by ~1e-14
relative to Σ|terms| (``tests/test_kernels.py``).  The encoder keeps the argmin of
ln T_n − ln w_n, so the two can choose differently only where two scores lie that close.

``CompiledScorer`` is the CPU strategy of ``bitstream.channel.simulate`` built on ``log_weights``:
it turns the log-weights and the arrival times into the selected index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from . import scoring
from .kernels_exact import check_coefficients, log_weights
from .noise import LANE_NORMAL, SharedNoise, stream_key

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
def _log_weights_reference(k0, k1, lane, start, count, a, b, c, out):
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


def log_weights_reference(seed: int, stream: int, lane: int, start: int, count: int, a: np.ndarray,
                          b: np.ndarray, c: float) -> np.ndarray:
    """``log_weights`` by the scalar loop with libm (float64, (count,)): the reference."""
    seed, stream, lane, start, count, a, b = check_coefficients(seed, stream, lane, start, count, a, b)
    out = np.empty(count, dtype=np.float64)
    _log_weights_reference(np.uint64(seed), np.uint64(stream), np.uint64(lane), start, count, a, b, float(c), out)
    return out


class CompiledScorer:
    """Finds the PFR index on the CPU (a ``bitstream.scoring.Scorer``): argmin over n < 2**k of
    ln T_n - ln w_n.

    The arrival times are summed in passes of ``bitstream.scoring.CANDIDATES_PER_BLOCK``
    candidates, T = (last T of the previous pass) + cumsum(E of this pass), as
    ``simulate`` defines them; ties go to the smallest index.
    """

    def best_index(self, seed: int, stream, a: np.ndarray, b: np.ndarray, c: float, log2_candidates: int) -> int:
        k = scoring.check_log2_candidates(log2_candidates)
        noise = SharedNoise(seed)
        stream = stream_key(stream)
        n_total = 1 << k
        best_score = np.inf
        best_index = 0
        t_offset = 0.0
        for start in range(0, n_total, scoring.CANDIDATES_PER_BLOCK):
            count = min(scoring.CANDIDATES_PER_BLOCK, n_total - start)
            logw = log_weights(noise.seed, stream, LANE_NORMAL, start, count, a, b, c)
            arrivals = t_offset + np.cumsum(noise.exponentials(stream, start, count))
            t_offset = float(arrivals[-1])
            score = np.log(arrivals) - logw
            i = int(np.argmin(score))
            if score[i] < best_score:
                best_score = float(score[i])
                best_index = start + i
        return best_index

    def best_indices(self, seed: int, streams: Sequence, coefficients: Sequence, log2_candidates: int) -> list[int]:
        """``best_index`` of each ``(a, b, c)`` in ``coefficients`` with the stream at the same place."""
        if len(streams) != len(coefficients):
            raise ValueError("need one stream per set of coefficients")
        return [self.best_index(seed, s, a, b, c, log2_candidates) for s, (a, b, c) in zip(streams, coefficients)]
