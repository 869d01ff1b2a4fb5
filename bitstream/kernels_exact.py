"""Vectorised log-weights of format version 3 (float64 recipe of ``bitstream.noise``).

For candidate n: ln w_n = Σ_i a_i u_{n,i}² + b_i u_{n,i} + c, u_n the recipe's float64 normals
(Philox4x64-10 words, 53-bit uniforms, Box–Muller).  ``bitstream.kernels.log_weights_reference``
does this one candidate at a time with libm's log/cos/sin, which pip's llvmlite never
vectorises.  Here the SIMD lane is the candidate: a tile of 16 candidates goes through the
Philox blocks in groups of ``GROUP`` by three passes over small arrays (words; normals; sums),
in parallel over tiles.  To let LLVM vectorise:

* the 64-bit multiply-high of Philox is four 32×32→64 products (``vpmuludq``), and the first
  two rounds are shortened (their inputs c1 = lane, c2 = c3 = 0 are constants);
* the uniform is converted to float64 by exponent tricks (exact: it has 53 bits);
* ln u is branch-free: u = m·2^e with m in [√½, √2), f = m − 1 (exact), s = f/(2 + f) and
  fdlibm's minimax polynomial of s² (error below 1 ulp, relative, so also near u → 1);
* sin and cos of 2πu are reduced on the uniform itself: 4u = q + f with q an integer and
  |f| ≤ ½, exactly (u is a dyadic rational), then Taylor polynomials of πf/2 (error ~2e-16);
* ``error_model="numpy"`` and ``fastmath={"contract"}`` (FMA contraction only).

The normals are within ~1.2e-15 of the exact values (1.5e-16 of the radius); numpy's are within
~2e-15 (libm's last ulp, and 2πu is rounded before its cos), so the two agree to ~3e-15, and the
log-weights agree with the reference's to ~1e-14 of Σ|terms|; ``tests/test_kernels.py`` checks
both.  The work is done for whole tiles: a call of fewer than 16 candidates costs as much as 16.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import noise as _noise

TILE = 16  # candidates per SIMD tile
GROUP = 64  # Philox blocks per pass
_PARTS_PER_THREAD = 8

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_S52 = np.uint64(52)
_M0 = _noise._M0
_M1 = _noise._M1
_M0_LO, _M0_HI = np.uint64(_M0 & 0xFFFFFFFF), np.uint64(_M0 >> 32)
_M1_LO, _M1_HI = np.uint64(_M1 & 0xFFFFFFFF), np.uint64(_M1 >> 32)
_ONE_U = np.uint64(1)

_MAGIC52 = np.uint64(0x4330000000000000)  # bits of 2**52: (MAGIC52 | x) is 2**52 + x for x < 2**52
_MAGIC84 = np.uint64(0x4530000000000000)  # bits of 2**84: (MAGIC84 | x) is 2**84 + x * 2**32
_TWO84_52 = 2.0**84 + 2.0**52
_TWO52_1023 = 2.0**52 + 1023.0
_MANT = np.uint64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.uint64(0x3FF0000000000000)
_INV_2_53 = 2.0**-53
_SQRT2 = math.sqrt(2.0)

# fdlibm e_log.c: log(1+f) = f - (hfsq - s*(hfsq + R(s²))), s = f/(2+f), |R error| < 2**-58.45
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1, _LG2, _LG3, _LG4 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, \
    2.222219843214978396e-01
_LG5, _LG6, _LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01

# Taylor coefficients of sin(πf/2) = f·S(f²) and cos(πf/2) = C(f²), |f| ≤ ½, correctly rounded
_PI = Fraction("3.14159265358979323846264338327950288419716939937510582097494459")
_S = [float((-1) ** k * (_PI / 2) ** (2 * k + 1) / math.factorial(2 * k + 1)) for k in range(8)]
_C = [float((-1) ** k * (_PI / 2) ** (2 * k) / math.factorial(2 * k)) for k in range(9)]
_S0, _S1, _S2, _S3, _S4, _S5, _S6, _S7 = _S
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8 = _C

_OPTS = dict(cache=True, error_model="numpy", fastmath={"contract"})


@intrinsic
def _f64_bits(typingctx, x):
    """The uint64 bit pattern of a float64 (a register bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, x):
    """The float64 with a given uint64 bit pattern."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


# ---------------------------------------------------------------------------- recipe pieces
@numba.njit(inline="always")
def _mulhilo(m_lo, m_hi, c):
    """(hi, lo) of the 128-bit product m·c, m = m_hi·2**32 + m_lo, from 32×32-bit products."""
    c_lo, c_hi = c & _M32, c >> _S32
    lo_lo = m_lo * c_lo
    hi_lo = m_hi * c_lo
    lo_hi = m_lo * c_hi
    cross = (lo_lo >> _S32) + (hi_lo & _M32) + lo_hi
    hi = m_hi * c_hi + (hi_lo >> _S32) + (cross >> _S32)
    return hi, (cross << _S32) | (lo_lo & _M32)


@numba.njit(inline="always")
def _round(c0, c1, c2, c3, k0, k1):
    hi0, lo0 = _mulhilo(_M0_LO, _M0_HI, c0)
    hi1, lo1 = _mulhilo(_M1_LO, _M1_HI, c2)
    return hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0


@numba.njit(inline="always")
def _philox(ctr, rk0, rk1, p_hi, p_lo):
    """Philox4x64-10 of counter (ctr, lane, 0, 0); (p_hi, p_lo) = M0·(lane ^ rk0[0]) (constant).

    Round 1 maps (ctr, lane, 0, 0) to (lane ^ k0, 0, hi(M0 ctr) ^ k1, lo(M0 ctr)), so round 2's
    first product is the constant p."""
    hi0, lo0 = _mulhilo(_M0_LO, _M0_HI, ctr)
    hi1, lo1 = _mulhilo(_M1_LO, _M1_HI, hi0 ^ rk1[0])
    c0, c1, c2, c3 = hi1 ^ rk0[1], lo1, p_hi ^ lo0 ^ rk1[1], p_lo
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[2], rk1[2])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[3], rk1[3])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[4], rk1[4])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[5], rk1[5])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[6], rk1[6])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[7], rk1[7])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[8], rk1[8])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[9], rk1[9])
    return c0, c1, c2, c3


@numba.njit(inline="always")
def _uniform(w):
    """Recipe step 4, exactly: ((w >> 11) + 1)·2**-53, int → float by exponent tricks."""
    k = (w >> _S11) + _ONE_U  # 1 .. 2**53
    hi = _bits_f64(_MAGIC84 | (k >> _S32)) - _TWO84_52  # k_hi·2**32 - 2**52
    lo = _bits_f64(_MAGIC52 | (k & _M32))  # 2**52 + k_lo
    return (hi + lo) * _INV_2_53


@numba.njit(inline="always")
def _log(u):
    """ln u for a normal float64 u > 0 (fdlibm's algorithm, branch-free)."""
    bits = _f64_bits(u)
    e = _bits_f64(_MAGIC52 | (bits >> _S52)) - _TWO52_1023  # the unbiased exponent, as float
    m = _bits_f64((bits & _MANT) | _ONE_BITS)  # [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    e = e + 1.0 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = w * (_LG2 + w * (_LG4 + w * _LG6)) + z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    hfsq = 0.5 * f * f
    return e * _LN2_HI - ((hfsq - (s * (hfsq + r) + e * _LN2_LO)) - f)


@numba.njit(inline="always")
def _pair(w_rad, w_ang):
    """Recipe step 5: (rad cos 2πu1, rad sin 2πu1), rad = sqrt(-2 ln u0)."""
    rad = np.sqrt(-2.0 * _log(_uniform(w_rad)))
    t = 4.0 * _uniform(w_ang)  # in (0, 4], exact
    q = np.floor(t + 0.5)
    f = t - q  # [-1/2, 1/2], exact
    g = f * f
    sn = f * (_S0 + g * (_S1 + g * (_S2 + g * (_S3 + g * (_S4 + g * (_S5 + g * (_S6 + g * _S7)))))))
    cs = _C0 + g * (_C1 + g * (_C2 + g * (_C3 + g * (_C4 + g * (_C5 + g * (_C6 + g * (_C7 + g * _C8)))))))
    qi = np.int32(q) & 3
    swap = (qi & 1) != 0
    x = sn if swap else cs
    y = cs if swap else sn
    x = -x if ((qi + 1) & 2) != 0 else x  # quadrants 1, 2
    y = -y if qi >= 2 else y
    return rad * x, rad * y


# ---------------------------------------------------------------------------- passes
@numba.njit(inline="always")
def _words_pass(w0, w1, w2, w3, nblk, j0, n0, nb, rk0, rk1, p_hi, p_lo):
    """Words of blocks j0 .. j0+nblk-1 of candidates n0 .. n0+15; element jb*16 + lane."""
    first = np.uint64(j0 + 1)
    for e in range(nblk * TILE):
        ctr = (n0 + np.uint64(e & 15)) * nb + first + np.uint64(e >> 4)
        r0, r1, r2, r3 = _philox(ctr, rk0, rk1, p_hi, p_lo)
        w0[e] = r0
        w1[e] = r1
        w2[e] = r2
        w3[e] = r3


@numba.njit(inline="always")
def _normals_pass(w0, w1, w2, w3, z0, z1, z2, z3, nelem):
    for e in range(nelem):
        a0, a1 = _pair(w0[e], w1[e])
        a2, a3 = _pair(w2[e], w3[e])
        z0[e] = a0
        z1[e] = a1
        z2[e] = a2
        z3[e] = a3


@numba.njit(inline="always")
def _sums_pass(z0, z1, z2, z3, acc, a, b, i0, nfull, ntail):
    """acc[lane] += Σ a_i z² + b_i z over nfull full blocks and ntail more dims, dims from i0."""
    for jb in range(nfull):
        i = i0 + 4 * jb
        a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
        b0, b1, b2, b3 = b[i], b[i + 1], b[i + 2], b[i + 3]
        base = jb * TILE
        for lane in range(TILE):
            x0 = z0[base + lane]
            x1 = z1[base + lane]
            x2 = z2[base + lane]
            x3 = z3[base + lane]
            s = acc[lane] + x0 * (a0 * x0 + b0)
            s = s + x1 * (a1 * x1 + b1)
            s = s + x2 * (a2 * x2 + b2)
            acc[lane] = s + x3 * (a3 * x3 + b3)
    if ntail > 0:
        i = i0 + 4 * nfull
        base = nfull * TILE
        for lane in range(TILE):
            x0 = z0[base + lane]
            acc[lane] += x0 * (a[i] * x0 + b[i])
        if ntail > 1:
            for lane in range(TILE):
                x1 = z1[base + lane]
                acc[lane] += x1 * (a[i + 1] * x1 + b[i + 1])
        if ntail > 2:
            for lane in range(TILE):
                x2 = z2[base + lane]
                acc[lane] += x2 * (a[i + 2] * x2 + b[i + 2])


@numba.njit(inline="always")
def _work_arrays():
    n = GROUP * TILE
    return (np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.uint64),
            np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.float64))


@numba.njit(parallel=True, **_OPTS)
def _log_weights_kernel(rk0, rk1, p_hi, p_lo, start, count, a, b, c, parts, out):
    d = a.size
    nb = (d + 3) // 4
    nbu = np.uint64(nb)
    tiles = (count + TILE - 1) // TILE
    for p in numba.prange(parts):
        w0, w1, w2, w3, z0, z1, z2, z3 = _work_arrays()
        acc = np.empty(TILE, np.float64)
        for tile in range(p * tiles // parts, (p + 1) * tiles // parts):
            n0 = np.uint64(start + tile * TILE)
            for lane in range(TILE):
                acc[lane] = 0.0
            for g0 in range(0, nb, GROUP):
                g1 = min(nb, g0 + GROUP)
                _words_pass(w0, w1, w2, w3, g1 - g0, g0, n0, nbu, rk0, rk1, p_hi, p_lo)
                _normals_pass(w0, w1, w2, w3, z0, z1, z2, z3, (g1 - g0) * TILE)
                dims = min(d, 4 * g1) - 4 * g0
                _sums_pass(z0, z1, z2, z3, acc, a, b, 4 * g0, dims // 4, dims % 4)
            for lane in range(min(TILE, count - tile * TILE)):
                out[tile * TILE + lane] = acc[lane] + c


@numba.njit(**_OPTS)
def _normals_kernel(rk0, rk1, p_hi, p_lo, start, count, d, out):
    """The word and normal passes of ``_log_weights_kernel`` (serial: a helper for tests)."""
    nb = (d + 3) // 4
    nbu = np.uint64(nb)
    for tile in range((count + TILE - 1) // TILE):
        w0, w1, w2, w3, z0, z1, z2, z3 = _work_arrays()
        n0 = np.uint64(start + tile * TILE)
        lanes = min(TILE, count - tile * TILE)
        for g0 in range(0, nb, GROUP):
            nblk = min(nb, g0 + GROUP) - g0
            _words_pass(w0, w1, w2, w3, nblk, g0, n0, nbu, rk0, rk1, p_hi, p_lo)
            _normals_pass(w0, w1, w2, w3, z0, z1, z2, z3, nblk * TILE)
            for jb in range(nblk):
                for lane in range(lanes):
                    row, e, i = tile * TILE + lane, jb * TILE + lane, 4 * (g0 + jb)
                    for k, z in enumerate((z0[e], z1[e], z2[e], z3[e])):
                        if i + k < d:
                            out[row, i + k] = z


@numba.njit(**_OPTS)
def _pairs_kernel(w_rad, w_ang, x, y):
    for i in range(w_rad.size):
        x[i], y[i] = _pair(w_rad[i], w_ang[i])


# ---------------------------------------------------------------------------- Python side
def _keys(seed: int, stream: int, lane: int):
    """Round keys (uint64 arrays of 10) and round 2's constant product (hi, lo)."""
    mask = (1 << 64) - 1
    k0, k1 = int(seed), int(stream)
    rk0 = np.array([(k0 + r * _noise._W0) & mask for r in range(10)], dtype=np.uint64)
    rk1 = np.array([(k1 + r * _noise._W1) & mask for r in range(10)], dtype=np.uint64)
    p = _M0 * (int(lane) ^ k0)
    return rk0, rk1, np.uint64(p >> 64), np.uint64(p & mask)


def _check_counters(seed, stream, lane, start, count):
    seed, stream, lane, start, count = (int(v) for v in (seed, stream, lane, start, count))
    if not all(0 <= v < 2**64 for v in (seed, stream, lane)):
        raise ValueError("seed, stream and lane must be in [0, 2**64)")
    if start < 0 or count < 0 or start + count > 2**62:
        raise ValueError("need start >= 0, count >= 0 and start + count <= 2**62")
    return seed, stream, lane, start, count


def check_coefficients(seed, stream, lane, start, count, a, b):
    """The arguments of ``log_weights`` checked and converted: (ints..., a, b float64 1-D)."""
    seed, stream, lane, start, count = _check_counters(seed, stream, lane, start, count)
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError("a and b must be non-empty 1-D arrays of the same length")
    return seed, stream, lane, start, count, a, b


def log_weights(seed: int, stream: int, lane: int, start: int, count: int, a: np.ndarray, b: np.ndarray,
                c: float) -> np.ndarray:
    """ln w_n for candidates ``start .. start+count-1`` of ``(seed, stream, lane)`` (float64, (count,))."""
    seed, stream, lane, start, count, a, b = check_coefficients(seed, stream, lane, start, count, a, b)
    out = np.empty(count, dtype=np.float64)
    if count:
        parts = min(-(-count // TILE), _PARTS_PER_THREAD * numba.get_num_threads())
        with numba.parallel_chunksize(1):
            _log_weights_kernel(*_keys(seed, stream, lane), start, count, a, b, float(c), parts, out)
    return out


def normals(seed: int, stream: int, lane: int, start: int, count: int, d: int) -> np.ndarray:
    """The kernel's float64 normals (its word and normal passes), (count, d); they should equal
    ``SharedNoise(seed).normals(stream, start, count, d)`` to ~1e-15."""
    seed, stream, lane, start, count = _check_counters(seed, stream, lane, start, count)
    d = int(d)
    if d < 1:
        raise ValueError("need d >= 1")
    out = np.empty((count, d), dtype=np.float64)
    if count:
        _normals_kernel(*_keys(seed, stream, lane), start, count, d, out)
    return out


def box_muller_words(w_rad: np.ndarray, w_ang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's normal pair of given uint64 words (recipe steps 4–5), for edge-case tests."""
    w_rad = np.ascontiguousarray(w_rad, dtype=np.uint64).ravel()
    w_ang = np.ascontiguousarray(w_ang, dtype=np.uint64).ravel()
    if w_rad.shape != w_ang.shape:
        raise ValueError("w_rad and w_ang must have the same size")
    x, y = np.empty(w_rad.size), np.empty(w_rad.size)
    _pairs_kernel(w_rad, w_ang, x, y)
    return x, y
