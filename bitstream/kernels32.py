"""Compiled candidate scoring of format version 4: log-weights on the float32 normals of
``bitstream.noise32`` (Philox4x32-10 words, float32 Box–Muller from IEEE basic operations).

For candidate n (0 <= n < N = 2**k) of the stream ``(step, chunk_ids[c])`` and the chunk's
coefficients ``b32 = b[offsets[c]:offsets[c+1]]`` (d of them)::

    ln w_n = Σ_{i<d} float64( z_i * (a32 * z_i + b32_i) )        (term in float32)

with z the candidate's float32 normals (recipe step 3) and ``a32 = float32(a)``; the sum is
taken in float64 (its order is free: the kernel and the reference agree to ~1e-15 relative).
The constant term is dropped.

``log_weights_reference`` is the specification (numpy, ``bitstream.noise32``);
``log_weights_step`` is the numba kernel.  It runs one ``prange`` over parts of the flattened
(chunk, tile of 16 candidates, dimension segment) items, parts of about equal cost, so that
few big chunks and many small ones both keep every core busy.  Inside an item the SIMD lane is
the candidate: blocks of ``GROUP`` Philox blocks × 16 candidates go through three passes over
small arrays (words; normals; float64 sums).  No fastmath: without FMA contraction the
normals equal ``SharedNoise32.normals32`` bit for bit (``normals_step`` exposes them, the same
compiled passes, for tests).  Work memory is a few tens of KB per thread plus one float64 per
(candidate, segment) of output.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import noise32 as _n32
from .noise32 import LANE_NORMAL, SharedNoise32, split_stream
from .scoring import check_step_inputs

TILE = 16  # candidates per SIMD tile
GROUP = 64  # Philox blocks per pass (GROUP * TILE words in each of four arrays)
_TARGET_ITEMS_PER_THREAD = 8  # below this many (chunk, tile) items per thread, split dimensions
_MIN_SEGMENT_BLOCKS = 4 * GROUP
_PARTS_PER_THREAD = 16

_M0 = np.uint64(_n32.M0)
_M1 = np.uint64(_n32.M1)
_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)
_U8 = np.uint32(8)
_U6 = np.uint32(6)
_U30 = np.uint32(30)
_U24MASK = np.uint32(0xFFFFFF)

# float32 constants as globals (a Python float literal would promote to float64 in numba)
_LN2 = _n32.LN2
_M_SPLIT = _n32.M_SPLIT
_L3, _L5, _L7, _L9 = _n32.L3, _n32.L5, _n32.L7, _n32.L9
_ANGLE_STEP = _n32.ANGLE_STEP
_S3, _S5, _S7, _S9 = _n32.S3, _n32.S5, _n32.S7, _n32.S9
_C2, _C4, _C6, _C8 = _n32.C2, _n32.C4, _n32.C6, _n32.C8
_TWO_POW_23 = _n32.TWO_POW_23
_MINUS_TWO = _n32.MINUS_TWO
_ONE = _n32.ONE
_ZERO = _n32.ZERO
_HALF = _n32.HALF


@intrinsic
def _f32_bits(typingctx, x):
    """The int32 bit pattern of a float32 (a register bitcast)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    """The float32 with a given int32 bit pattern."""
    if x != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# ---------------------------------------------------------------------------- recipe pieces
@numba.njit(inline="always")
def _round(c0, c1, c2, c3, k0, k1):
    p0 = np.uint64(c0) * _M0
    p1 = np.uint64(c2) * _M1
    return (np.uint32(np.uint32(p1 >> _S32) ^ c1 ^ k0), np.uint32(p1 & _LO32),
            np.uint32(np.uint32(p0 >> _S32) ^ c3 ^ k1), np.uint32(p0 & _LO32))


@numba.njit(inline="always")
def _philox(c0, c1, c2, c3, rk0, rk1):
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[0], rk1[0])
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk0[1], rk1[1])
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
def _log_uniform(w):
    """Recipe step 4: ln u of a uint32 word (float32), exponent/mantissa by bit tricks."""
    k = np.int32(np.int32(w >> _U8) + np.int32(1))  # 1 .. 2**24
    bits = _f32_bits(np.float32(k))  # exact: k has at most 24 significant bits
    e = np.int32((bits >> 23) - 127)
    m = _bits_f32(np.int32((bits & 0x7FFFFF) | 0x3F800000))  # k * 2**-e in [1, 2)
    big = m > _M_SPLIT
    m = m * _HALF if big else m
    e = np.int32(e + np.int32(big))
    r = (m - _ONE) / (m + _ONE)
    s = r * r
    p = (((_L9 * s + _L7) * s + _L5) * s + _L3) * s + _ONE
    ln_m = (r + r) * p
    return np.float32(np.int32(e - 24)) * _LN2 + ln_m


@numba.njit(inline="always")
def _pair(w_rad, w_ang):
    """Recipe steps 4–5: the float32 normal pair of two words."""
    v = _MINUS_TWO * _log_uniform(w_rad)
    rad = np.sqrt(v if v > _ZERO else _ZERO)  # numpy's maximum(-0.0, 0.0) is +0.0
    q = np.int32(w_ang >> _U30)
    g = np.float32(np.int32((w_ang >> _U6) & _U24MASK))
    theta = (g - _TWO_POW_23) * _ANGLE_STEP
    t = theta * theta
    sin = theta * ((((_S9 * t + _S7) * t + _S5) * t + _S3) * t) + theta
    cos = (((_C8 * t + _C6) * t + _C4) * t + _C2) * t + _ONE
    swap = (q & 1) != 0
    x = sin if swap else cos
    y = cos if swap else sin
    x = -x if ((q + 1) & 2) != 0 else x  # q = 1, 2
    y = -y if q >= 2 else y
    return rad * x, rad * y


# ---------------------------------------------------------------------------- passes
@numba.njit(inline="always")
def _words_pass(w0, w1, w2, w3, nblk, j0, n0, chunk, stepw, rk0, rk1):
    """Words of blocks j0 .. j0+nblk-1 for candidates n0 .. n0+15; element jb*16 + lane."""
    for e in range(nblk * TILE):
        c0 = np.uint32(j0 + (e >> 4))
        c1 = np.uint32(n0 + (e & 15))
        r0, r1, r2, r3 = _philox(c0, c1, chunk, stepw, rk0, rk1)
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
def _sums_pass(z0, z1, z2, z3, acc, b, boff, nfull, ntail, a32):
    """acc[lane] += Σ float64(z (a32 z + b)) over nfull full blocks and ntail more dims."""
    for jb in range(nfull):
        i = boff + 4 * jb
        b0, b1, b2, b3 = b[i], b[i + 1], b[i + 2], b[i + 3]
        base = jb * TILE
        for lane in range(TILE):
            x0 = z0[base + lane]
            x1 = z1[base + lane]
            x2 = z2[base + lane]
            x3 = z3[base + lane]
            t0 = x0 * (a32 * x0 + b0)
            t1 = x1 * (a32 * x1 + b1)
            t2 = x2 * (a32 * x2 + b2)
            t3 = x3 * (a32 * x3 + b3)
            acc[lane] += (np.float64(t0) + np.float64(t1)) + (np.float64(t2) + np.float64(t3))
    if ntail > 0:
        i = boff + 4 * nfull
        base = nfull * TILE
        b0 = b[i]
        for lane in range(TILE):
            x0 = z0[base + lane]
            acc[lane] += np.float64(x0 * (a32 * x0 + b0))
        if ntail > 1:
            b1 = b[i + 1]
            for lane in range(TILE):
                x1 = z1[base + lane]
                acc[lane] += np.float64(x1 * (a32 * x1 + b1))
        if ntail > 2:
            b2 = b[i + 2]
            for lane in range(TILE):
                x2 = z2[base + lane]
                acc[lane] += np.float64(x2 * (a32 * x2 + b2))


@numba.njit(inline="always")
def _work_arrays():
    """One task's words and normals: GROUP blocks of a TILE of candidates, lane-contiguous."""
    n = GROUP * TILE
    return (np.empty(n, np.uint32), np.empty(n, np.uint32), np.empty(n, np.uint32), np.empty(n, np.uint32),
            np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32))


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _log_weights_kernel(rk0, rk1, stepw, a32, b, offsets, chunk_ids, tiles, segs, part_start, acc_out):
    n_parts = part_start.size - 1
    for p in numba.prange(n_parts):
        w0, w1, w2, w3, z0, z1, z2, z3 = _work_arrays()
        acc = np.empty(TILE, np.float64)
        for item in range(part_start[p], part_start[p + 1]):
            seg = item % segs
            ct = item // segs
            tile = ct % tiles
            c = ct // tiles
            off = offsets[c]
            d = offsets[c + 1] - off
            nb = (d + 3) // 4
            seg_blocks = (nb + segs - 1) // segs
            jb0 = seg * seg_blocks
            jb1 = min(nb, jb0 + seg_blocks)
            chunk = np.uint32(chunk_ids[c])
            n0 = tile * TILE
            for lane in range(TILE):
                acc[lane] = 0.0
            for g0 in range(jb0, jb1, GROUP):
                g1 = min(jb1, g0 + GROUP)
                nblk = g1 - g0
                _words_pass(w0, w1, w2, w3, nblk, g0, n0, chunk, stepw, rk0, rk1)
                _normals_pass(w0, w1, w2, w3, z0, z1, z2, z3, nblk * TILE)
                dims = min(d, 4 * g1) - 4 * g0
                _sums_pass(z0, z1, z2, z3, acc, b, off + 4 * g0, dims // 4, dims % 4, a32)
            base = item * TILE
            for lane in range(TILE):
                acc_out[base + lane] = acc[lane]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _normals_kernel(rk0, rk1, stepw, chunk, start, count, d, out):
    nb = (d + 3) // 4
    tiles = (count + TILE - 1) // TILE
    for tile in numba.prange(tiles):
        w0, w1, w2, w3, z0, z1, z2, z3 = _work_arrays()
        n0 = start + tile * TILE
        lanes = min(TILE, count - tile * TILE)
        for g0 in range(0, nb, GROUP):
            nblk = min(nb, g0 + GROUP) - g0
            _words_pass(w0, w1, w2, w3, nblk, g0, n0, chunk, stepw, rk0, rk1)
            _normals_pass(w0, w1, w2, w3, z0, z1, z2, z3, nblk * TILE)
            for jb in range(nblk):
                i = 4 * (g0 + jb)
                for lane in range(lanes):
                    row = tile * TILE + lane
                    e = jb * TILE + lane
                    out[row, i] = z0[e]
                    if i + 1 < d:
                        out[row, i + 1] = z1[e]
                    if i + 2 < d:
                        out[row, i + 2] = z2[e]
                    if i + 3 < d:
                        out[row, i + 3] = z3[e]


@numba.njit(cache=True, error_model="numpy")
def _pairs_kernel(w_rad, w_ang, x, y):
    for i in range(w_rad.size):
        x[i], y[i] = _pair(w_rad[i], w_ang[i])


# ---------------------------------------------------------------------------- Python side
def round_keys(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ten Philox4x32-10 round keys (k0, k1) of ``seed`` (uint32 arrays)."""
    k0, k1 = SharedNoise32(seed).key
    rk0, rk1 = np.empty(10, np.uint32), np.empty(10, np.uint32)
    for r in range(10):
        rk0[r], rk1[r] = (k0 + r * _n32.W0) & 0xFFFFFFFF, (k1 + r * _n32.W1) & 0xFFFFFFFF
    return rk0, rk1


def log_weights_reference(seed: int, step: int, a: float, b: np.ndarray, offsets: np.ndarray,
                          chunk_ids: np.ndarray, log2_candidates: int) -> np.ndarray:
    """The specification (numpy): (chunks, 2**k) float64 log-weights, constant term dropped."""
    seed, step, a32, b32, offs, ids, k = check_step_inputs(seed, step, a, b, offsets, chunk_ids, log2_candidates)
    n_total = 1 << k
    noise = SharedNoise32(seed)
    out = np.empty((ids.size, n_total), dtype=np.float64)
    for c in range(ids.size):
        bc = b32[offs[c]:offs[c + 1]]
        d = bc.size
        rows = max(1, (1 << 20) // (4 * noise.blocks_per_row(d)))  # bounded memory
        for n0 in range(0, n_total, rows):
            count = min(rows, n_total - n0)
            z = _reference_normals(noise, step, int(ids[c]), n0, count, d)
            terms = z * (a32 * z + bc)  # float32
            out[c, n0:n0 + count] = terms.astype(np.float64).sum(axis=1)
    return out


def _reference_normals(noise: SharedNoise32, step: int, chunk: int, start: int, count: int, d: int) -> np.ndarray:
    """``noise.normals32((step, chunk), start, count, d)`` with all rows in one numpy call."""
    nb = noise.blocks_per_row(d)
    n = np.arange(start, start + count, dtype=np.uint32)[:, None]
    j = np.arange(nb, dtype=np.uint32)[None, :]
    words = _n32.philox4x32_10(j, n, np.uint32(chunk), np.uint32(step | LANE_NORMAL << 30), *noise.key)
    words = [np.broadcast_to(w, (count, nb)) for w in words]
    return _n32.block_normals(words).reshape(count, 4 * nb)[:, :d]


def _plan(lengths: np.ndarray, tiles: int, threads: int):
    """(segs, part_start) for the flattened (chunk, tile, segment) items."""
    chunks = lengths.size
    nb = (lengths + 3) // 4
    items0 = chunks * tiles
    segs = 1
    target = _TARGET_ITEMS_PER_THREAD * threads
    if items0 < target:
        segs = int(max(1, min(-(-target // items0), int(nb.max()) // _MIN_SEGMENT_BLOCKS)))
    total_items = items0 * segs
    cost = -(-nb // segs) + 4  # per item, in Philox blocks (+ overhead)
    chunk_cost = cost * (tiles * segs)
    cum = np.concatenate([[0], np.cumsum(chunk_cost)])
    n_parts = int(min(total_items, _PARTS_PER_THREAD * threads))
    targets = (cum[-1] * np.arange(1, n_parts, dtype=np.float64) / n_parts).astype(np.int64)
    c = np.searchsorted(cum, targets, side="right") - 1
    item = c * (tiles * segs) + (targets - cum[c]) // cost[c]
    part_start = np.concatenate([[0], np.maximum.accumulate(np.minimum(item, total_items)), [total_items]])
    return segs, total_items, np.ascontiguousarray(part_start, dtype=np.int64)


def log_weights_step(seed: int, step: int, a: float, b: np.ndarray, offsets: np.ndarray,
                     chunk_ids: np.ndarray, log2_candidates: int) -> np.ndarray:
    """``log_weights_reference`` by the parallel numba kernel: (chunks, 2**k) float64."""
    seed, step, a32, b32, offs, ids, k = check_step_inputs(seed, step, a, b, offsets, chunk_ids, log2_candidates)
    n_total = 1 << k
    chunks = ids.size
    if chunks == 0:
        return np.empty((0, n_total), dtype=np.float64)
    tiles = -(-n_total // TILE)
    threads = numba.get_num_threads()
    segs, total_items, part_start = _plan(np.diff(offs), tiles, threads)
    rk0, rk1 = round_keys(seed)
    acc = np.empty(total_items * TILE, dtype=np.float64)
    with numba.parallel_chunksize(1):
        _log_weights_kernel(rk0, rk1, np.uint32(step | LANE_NORMAL << 30), a32, b32, offs, ids,
                            np.int64(tiles), np.int64(segs), part_start, acc)
    acc = acc.reshape(chunks, tiles, segs, TILE)
    sums = acc[:, :, 0, :] if segs == 1 else acc.sum(axis=2)
    return np.ascontiguousarray(sums.reshape(chunks, tiles * TILE)[:, :n_total])


def normals_step(seed: int, stream, start: int, count: int, d: int) -> np.ndarray:
    """float32 (count, d): the kernel's normals (its word and normal passes), which must equal
    ``SharedNoise32(seed).normals32(stream, start, count, d)`` bit for bit."""
    step, chunk = split_stream(stream)
    start, count, d = int(start), int(count), int(d)
    if d < 1 or count < 0 or start < 0 or start + count > 2**32:
        raise ValueError("need d >= 1, count >= 0, start >= 0 and start + count <= 2**32")
    rk0, rk1 = round_keys(seed)
    out = np.empty((count, d), dtype=np.float32)
    if count:
        _normals_kernel(rk0, rk1, np.uint32(step | LANE_NORMAL << 30), np.uint32(chunk), np.int64(start),
                        np.int64(count), np.int64(d), out)
    return out


def box_muller_words(w_rad: np.ndarray, w_ang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's normal pair (recipe steps 4–5) of given uint32 words, for edge-case tests
    against ``noise32.box_muller``."""
    w_rad = np.ascontiguousarray(w_rad, dtype=np.uint32).ravel()
    w_ang = np.ascontiguousarray(w_ang, dtype=np.uint32).ravel()
    if w_rad.shape != w_ang.shape:
        raise ValueError("w_rad and w_ang must have the same size")
    x, y = np.empty(w_rad.size, np.float32), np.empty(w_rad.size, np.float32)
    _pairs_kernel(w_rad, w_ang, x, y)
    return x, y
