"""Shared randomness for channel simulation: counter-based, platform independent.

Encoder and decoder must draw *identical* candidate vectors.  Everything here is a pure
function of ``(seed, stream, lane, candidate index, dimension)``; no generator state is
carried between calls, so the decoder can produce candidate ``n`` alone and it equals,
bit for bit, row ``n`` of the block that the encoder generates for many candidates at once.

Exact recipe (a GPU port must reproduce the uniform bits exactly):

1. Block cipher: Philox4x64-10 (Salmon et al. 2011), as in numpy's ``np.random.Philox``:
   multipliers M0 = 0xD2E7470EE14C6C93, M1 = 0xCA5A826395121157, Weyl key increments
   W0 = 0x9E3779B97F4A7C15, W1 = 0xBB67AE8584CAA73B, 10 rounds.  One block maps a 256-bit
   counter ``(c0, c1, c2, c3)`` and a 128-bit key ``(k0, k1)`` to four uint64 words.
   (``philox4x64_10_reference`` below is a plain-Python transcription used in the tests.)
2. Key: ``k0 = seed`` (uint64), ``k1 = stream`` (uint64; see ``stream_key``: a tuple
   ``(step, chunk)`` packs to ``step << 32 | chunk``, each part < 2**32).
3. Counter: ``c1 = lane`` (``LANE_NORMAL = 0`` for candidate vectors,
   ``LANE_ARRIVAL = 1`` for the encoder-only arrival times), ``c2 = c3 = 0``.
   Candidate ``n`` of dimension ``d`` uses ``b = ceil(d / 4)`` blocks with
   ``c0 = n * b + 1 + j`` for ``j = 0 .. b-1`` (the ``+1`` is numpy's convention: a Philox
   generator constructed with ``counter = c`` increments before its first block).  Its
   ``4 b`` raw words ``r_0 .. r_{4b-1}`` are the block outputs in order, words within a
   block in order 0..3.
4. Uniforms: ``u_i = ((r_i >> 11) + 1) * 2**-53``, 53 bits, in (0, 1], never 0 (exact in
   float64; the value 1.0 occurs with probability 2**-53 and is harmless below).
5. Normals (Box-Muller on consecutive pairs): for ``i = 0 .. 2b-1``,
   ``rad = sqrt(-2 ln u_{2i})``, ``z_{2i} = rad * cos(2 pi u_{2i+1})``,
   ``z_{2i+1} = rad * sin(2 pi u_{2i+1})``; the candidate vector is ``z_0 .. z_{d-1}``
   (the padding values are discarded).  The transcendental functions may differ in the last
   ulp between platforms; that is harmless for decoding, because the decoder reads the index
   from the bit stream and never compares candidate values.  (It does change the decoded
   sample by ~1 ulp, i.e. encoder and decoder may hold x_{t-1} differing in the last bit when
   they run on different platforms; the next step's model evaluation sees that difference.)
6. Arrival lane (encoder only): candidate ``n`` uses the single word ``r`` = word 0 of the
   block at ``c0 = n + 1`` (i.e. ``b = 1``, first word), ``c1 = LANE_ARRIVAL``;
   ``E_n = -ln(u)`` with ``u`` as in step 4.  Arrival times are ``T_n = sum_{m<=n} E_m``.
   The decoder never needs these.
7. Permutation lane (``LANE_PERMUTATION = 2``): ``words(stream, 2, d)`` are the first ``d``
   raw words of blocks ``c0 = 1, 2, …``; the shared permutation of ``d`` dimensions is the
   stable ascending argsort of those words (``bitstream.chunks.permutation``).
"""

from __future__ import annotations

import numpy as np

LANE_NORMAL = 0
LANE_ARRIVAL = 1
LANE_PERMUTATION = 2

# Philox blocks turned into normals at once when a request is large (x_T, a one-chunk step): the
# working arrays then take a few MiB whatever the image size, and only the result grows with it.
PIECE_BLOCKS = 1 << 16

_MASK64 = (1 << 64) - 1
_TWO_PI = 2.0 * np.pi
_INV_2_53 = 2.0**-53


def stream_key(stream) -> int:
    """Pack an int or a tuple ``(step, chunk)`` into one uint64 stream key."""
    if isinstance(stream, (tuple, list)):
        if len(stream) != 2:
            raise ValueError("stream tuple must be (step, chunk)")
        hi, lo = (int(v) for v in stream)
        if not (0 <= hi < 2**32 and 0 <= lo < 2**32):
            raise ValueError("step and chunk must be in [0, 2**32)")
        return (hi << 32) | lo
    s = int(stream)
    if not 0 <= s <= _MASK64:
        raise ValueError("stream key must fit in 64 bits")
    return s


def _philox_raw(seed: int, stream: int, lane: int, c0: int, nwords: int) -> np.ndarray:
    """``nwords`` raw uint64 words starting with the block at counter ``(c0 + 1, lane, 0, 0)``."""
    key = np.array([seed & _MASK64, stream & _MASK64], dtype=np.uint64)
    ctr = np.array([c0 & _MASK64, lane, 0, 0], dtype=np.uint64)
    return np.random.Philox(key=key, counter=ctr).random_raw(nwords)


def raw_to_uniform(raw: np.ndarray) -> np.ndarray:
    """53-bit uniforms in (0, 1] from uint64 words (recipe step 4); exact in float64."""
    return ((raw >> np.uint64(11)).astype(np.float64) + 1.0) * _INV_2_53


def _box_muller(u: np.ndarray) -> np.ndarray:
    """Normals from uniforms of shape (..., 2m) -> (..., 2m), pairs (even, odd)."""
    u1 = u[..., 0::2]
    u2 = u[..., 1::2]
    rad = np.sqrt(-2.0 * np.log(u1))
    ang = _TWO_PI * u2
    out = np.empty_like(u)
    out[..., 0::2] = rad * np.cos(ang)
    out[..., 1::2] = rad * np.sin(ang)
    return out


class SharedNoise:
    """Counter-based shared randomness keyed by ``seed`` (per file / session).

    ``normals(stream, start, count, d)`` -> array (count, d) of candidate vectors
    ``start .. start+count-1``; ``normal(stream, n, d)`` -> candidate ``n`` alone.
    """

    def __init__(self, seed: int):
        seed = int(seed)
        if not 0 <= seed <= _MASK64:
            raise ValueError("seed must fit in 64 bits")
        self.seed = seed

    @staticmethod
    def blocks_per_row(d: int) -> int:
        return -(-int(d) // 4)

    def uniforms(self, stream, start: int, count: int, d: int) -> np.ndarray:
        """Raw-row uniforms, shape (count, 4*ceil(d/4)) (padding included)."""
        b = self.blocks_per_row(d)
        raw = _philox_raw(self.seed, stream_key(stream), LANE_NORMAL, int(start) * b, int(count) * 4 * b)
        return raw_to_uniform(raw).reshape(int(count), 4 * b)

    def normals(self, stream, start: int, count: int, d: int) -> np.ndarray:
        if d < 1 or count < 0 or start < 0:
            raise ValueError("need d >= 1, count >= 0, start >= 0")
        b = self.blocks_per_row(d)
        if int(count) * b <= PIECE_BLOCKS:
            z = _box_muller(self.uniforms(stream, start, count, d))
            return z[:, :d]
        # the same words in pieces of whole blocks (Box-Muller pairs never straddle a block)
        key = stream_key(stream)
        out = np.empty((int(count), d))
        for row in range(int(count)):
            first = (int(start) + row) * b
            for j in range(0, b, PIECE_BLOCKS):
                blocks = min(PIECE_BLOCKS, b - j)
                z = _box_muller(raw_to_uniform(_philox_raw(self.seed, key, LANE_NORMAL, first + j, 4 * blocks)))
                lo, hi = 4 * j, min(d, 4 * (j + blocks))
                out[row, lo:hi] = z[:hi - lo]
        return out

    def normal(self, stream, n: int, d: int) -> np.ndarray:
        return self.normals(stream, n, 1, d)[0]

    def words(self, stream, lane: int, count: int) -> np.ndarray:
        """``count`` raw uint64 words of ``lane``: block ``c0 = 1, 2, …`` in order, four words each."""
        return _philox_raw(self.seed, stream_key(stream), int(lane), 0, int(count))

    def exponentials(self, stream, start: int, count: int) -> np.ndarray:
        """Exp(1) draws E_start .. E_{start+count-1} of the arrival lane (recipe step 6)."""
        raw = _philox_raw(self.seed, stream_key(stream), LANE_ARRIVAL, int(start), int(count) * 4)
        return -np.log(raw_to_uniform(raw[0::4]))


# ---------------------------------------------------------------------------------------
# Plain-Python Philox4x64-10, the specification the fast path must agree with.

_M0 = 0xD2E7470EE14C6C93
_M1 = 0xCA5A826395121157
_W0 = 0x9E3779B97F4A7C15
_W1 = 0xBB67AE8584CAA73B


def philox4x64_10_reference(counter, key):
    """One Philox4x64-10 block: counter (4 ints), key (2 ints) -> 4 ints (uint64)."""
    c0, c1, c2, c3 = (int(v) & _MASK64 for v in counter)
    k0, k1 = (int(v) & _MASK64 for v in key)
    for r in range(10):
        if r:
            k0 = (k0 + _W0) & _MASK64
            k1 = (k1 + _W1) & _MASK64
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> 64, p0 & _MASK64
        hi1, lo1 = p1 >> 64, p1 & _MASK64
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]
