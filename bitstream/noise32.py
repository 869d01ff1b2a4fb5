"""Shared randomness of format version 4: Philox4x32-10 words and float32 normals built from
IEEE basic operations, so that every machine and device computes the same bits.

Versions 1–3 draw their candidates from Philox4x64-10 with float64 Box–Muller through libm
(``bitstream.noise``).  That recipe costs about 6 ns a normal on an AVX2 core (no 64-bit
vector multiply, libm's log/cos/sin never vectorise), which made candidate scoring 75–92 % of
every encode.  This recipe uses 32-bit words (the generator of cuRAND, JAX and torch on CUDA)
and a float32 Box–Muller whose log, sine and cosine are short polynomials; every operation is
an exactly rounded +, −, ×, ÷ or √ on float32, or integer arithmetic, with no fused
multiply-add.  So numpy (this module, the reference), the compiled CPU kernel
(``bitstream.kernels32``) and torch on any device (``bitstream.torch_noise32``) produce the
same float32 normals bit for bit, and the decoder's candidates equal the encoder's on every
machine.

Recipe (FORMAT.md §8.1):

1. Block cipher: Philox4x32-10 (Salmon et al. 2011; Random123's ``philox4x32_10``):
   multipliers M0 = 0xD2511F53, M1 = 0xCD9E8D57, key increments W0 = 0x9E3779B9,
   W1 = 0xBB67AE85, 10 rounds; a round maps ``(c0, c1, c2, c3)`` to
   ``(hi(M1·c2) ^ c1 ^ k0, lo(M1·c2), hi(M0·c0) ^ c3 ^ k1, lo(M0·c0))``, the key is bumped
   before every round but the first.
2. Key ``(seed mod 2**32, seed >> 32)``.  Counter ``(j, n, chunk, step | lane << 30)`` for
   the stream ``(step, chunk)`` (``step < 2**30``), candidate ``n`` and block ``j``.
3. Normal lane (0): candidate ``n`` of dimension ``d`` uses blocks ``j = 0 .. ceil(d/4) − 1``;
   the four words of block j give normals ``4j .. 4j+3`` by Box–Muller on the pairs
   (w0, w1) and (w2, w3), below; values past ``d`` are discarded.
4. Radius from word ``w``: ``k = (w >> 8) + 1`` (1 … 2**24, ``u = k · 2**-24`` in (0, 1]);
   ``e`` = bit length of k − 1, ``m = k · 2**-e`` in [1, 2) (exact); if ``m > M_SPLIT``:
   ``m = m / 2``, ``e = e + 1``; ``r = (m − 1) / (m + 1)``, ``s = r·r``,
   ``p = (((L9·s + L7)·s + L5)·s + L3)·s + 1``, ``ln m = (r + r)·p``,
   ``ln u = (e − 24)·LN2 + ln m``; ``rad = √(max(−2·ln u, 0))``.
5. Angle from word ``w``: quadrant ``q = w >> 30``, ``g = (w >> 6) & 0xFFFFFF``,
   ``θ = (g − 2**23)·ANGLE_STEP`` (θ in [−π/4, π/4)), ``t = θ·θ``,
   ``sin θ = θ·(((S9·t + S7)·t + S5)·t + S3)·t + θ``, ``cos θ = (((C8·t + C6)·t + C4)·t + C2)·t + 1``;
   the pair is ``(rad·x, rad·y)`` with ``(x, y)`` = ``(cos, sin)``, ``(−sin, cos)``,
   ``(−cos, −sin)``, ``(sin, −cos)`` for q = 0, 1, 2, 3 (the angle θ + q·π/2, uniform on the
   circle).  Operations in the order written, each rounded to float32.
6. Arrival lane (1, encoder only): E_n = −ln u of word ``n mod 4`` of block ``(n >> 2, 0,
   chunk, step | 1 << 30)``, ln u as in step 4 (float32); arrival times T_n = Σ_{m ≤ n} E_m in
   float64.  Never needed to decode.
7. The permutation of a step's dimensions stays that of ``bitstream.noise`` (recipe step 7).
"""

from __future__ import annotations

import numpy as np

from .noise import SharedNoise, stream_key

LANE_NORMAL = 0
LANE_ARRIVAL = 1
MAX_STEP = (1 << 30) - 1

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85

F32 = np.float32
# float32 constants of steps 4 and 5, written as the exact binary values the recipe uses
LN2 = F32(0.693147180559945309)
M_SPLIT = F32(1.41421356237309505)  # √2 rounded to float32
L3, L5, L7, L9 = F32(1 / 3), F32(1 / 5), F32(1 / 7), F32(1 / 9)
ANGLE_STEP = F32(np.pi / 2**25)  # (π/2) / 2**24
S3, S5, S7, S9 = F32(-1 / 6), F32(1 / 120), F32(-1 / 5040), F32(1 / 362880)
C2, C4, C6, C8 = F32(-1 / 2), F32(1 / 24), F32(-1 / 720), F32(1 / 40320)
TWO_POW_23 = F32(2.0**23)
MINUS_TWO = F32(-2.0)
ONE = F32(1.0)
ZERO = F32(0.0)
HALF = F32(0.5)

_M32 = np.uint64(0xFFFFFFFF)


def split_stream(stream) -> tuple[int, int]:
    """(step, chunk) of a stream key (an int ``step << 32 | chunk`` or a tuple)."""
    key = stream_key(stream)
    step, chunk = key >> 32, key & 0xFFFFFFFF
    if step > MAX_STEP:
        raise ValueError(f"version-4 streams need step < 2**30, not {step}")
    return step, chunk


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 arrays (broadcast together); returns four uint32 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in (c0, c1, c2, c3))
    k0, k1 = np.uint32(k0), np.uint32(k1)
    m0, m1 = np.uint64(M0), np.uint64(M1)
    for r in range(10):
        if r:
            k0 = np.uint32((int(k0) + W0) & 0xFFFFFFFF)
            k1 = np.uint32((int(k1) + W1) & 0xFFFFFFFF)
        p0 = m0 * c0.astype(np.uint64)
        p1 = m1 * c2.astype(np.uint64)
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & _M32).astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & _M32).astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox4x32_10_reference(counter, key):
    """One block in plain Python ints (the specification of ``philox4x32_10``)."""
    c0, c1, c2, c3 = (int(v) & 0xFFFFFFFF for v in counter)
    k0, k1 = (int(v) & 0xFFFFFFFF for v in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1, p0 & 0xFFFFFFFF
    return [c0, c1, c2, c3]


def log_uniform(w: np.ndarray) -> np.ndarray:
    """ln u of recipe step 4 for uint32 words, float32 (u = ((w >> 8) + 1)·2**-24)."""
    k = (np.asarray(w, dtype=np.uint32) >> np.uint32(8)).astype(np.int64) + 1
    mant, exp = np.frexp(k.astype(np.float32))  # k = mant·2**exp, mant in [0.5, 1): exact
    m = mant * F32(2.0)
    e = (exp - 1).astype(np.int64)
    big = m > M_SPLIT
    m = np.where(big, m * HALF, m)
    e = e + big
    r = (m - ONE) / (m + ONE)
    s = r * r
    p = (((L9 * s + L7) * s + L5) * s + L3) * s + ONE
    ln_m = (r + r) * p
    return (e - 24).astype(np.float32) * LN2 + ln_m


def box_muller(w_rad: np.ndarray, w_ang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 normal pair of recipe steps 4–5 from two uint32 word arrays."""
    rad = np.sqrt(np.maximum(MINUS_TWO * log_uniform(w_rad), ZERO))
    w_ang = np.asarray(w_ang, dtype=np.uint32)
    q = (w_ang >> np.uint32(30)).astype(np.int64)
    g = ((w_ang >> np.uint32(6)) & np.uint32(0xFFFFFF)).astype(np.float32)
    theta = (g - TWO_POW_23) * ANGLE_STEP
    t = theta * theta
    sin = theta * ((((S9 * t + S7) * t + S5) * t + S3) * t) + theta
    cos = (((C8 * t + C6) * t + C4) * t + C2) * t + ONE
    x = np.select([q == 0, q == 1, q == 2], [cos, -sin, -cos], sin)
    y = np.select([q == 0, q == 1, q == 2], [sin, cos, -sin], -cos)
    return rad * x, rad * y


def block_normals(words) -> np.ndarray:
    """(..., 4) float32 normals from the four words of each block, shape (...,)."""
    w0, w1, w2, w3 = words
    z0, z1 = box_muller(w0, w1)
    z2, z3 = box_muller(w2, w3)
    return np.stack([z0, z1, z2, z3], axis=-1)


class SharedNoise32:
    """Version-4 shared randomness keyed by ``seed``: the interface of
    ``bitstream.noise.SharedNoise`` (``normals``, ``normal``, ``words``, ``exponentials``) on
    the recipe above.  Normals are returned as float64 arrays holding float32 values."""

    def __init__(self, seed: int):
        self._permutation = SharedNoise(seed)  # validates the seed; recipe step 7
        self.seed = self._permutation.seed
        self.key = (self.seed & 0xFFFFFFFF, self.seed >> 32)

    @staticmethod
    def blocks_per_row(d: int) -> int:
        return -(-int(d) // 4)

    def normals32(self, stream, start: int, count: int, d: int, piece_blocks: int = 1 << 16) -> np.ndarray:
        """float32 array (count, d): candidates ``start .. start+count-1`` of ``stream``."""
        if d < 1 or count < 0 or start < 0:
            raise ValueError("need d >= 1, count >= 0, start >= 0")
        step, chunk = split_stream(stream)
        b = self.blocks_per_row(d)
        out = np.empty((int(count), 4 * b), dtype=np.float32)
        for row in range(int(count)):
            n = np.uint32(int(start) + row)
            for j0 in range(0, b, piece_blocks):
                j = np.arange(j0, min(b, j0 + piece_blocks), dtype=np.uint32)
                words = philox4x32_10(j, n, np.uint32(chunk), np.uint32(step | LANE_NORMAL << 30), *self.key)
                out[row, 4 * j0:4 * (j0 + j.size)] = block_normals(words).reshape(-1)
        return out[:, :d]

    def normals(self, stream, start: int, count: int, d: int) -> np.ndarray:
        return self.normals32(stream, start, count, d).astype(np.float64)

    def normal(self, stream, n: int, d: int) -> np.ndarray:
        return self.normals(stream, n, 1, d)[0]

    def words(self, stream, lane: int, count: int) -> np.ndarray:
        """The permutation lane's words, as in versions 1–3 (recipe step 7)."""
        return self._permutation.words(stream, lane, count)

    def exponentials32(self, stream, start: int, count: int) -> np.ndarray:
        """E_start .. E_{start+count-1} of the arrival lane (recipe step 6), float32."""
        step, chunk = split_stream(stream)
        n = np.arange(int(start), int(start) + int(count), dtype=np.int64)
        blocks = np.unique(n >> 2)
        words = philox4x32_10(blocks.astype(np.uint32), np.uint32(0), np.uint32(chunk),
                              np.uint32(step | LANE_ARRIVAL << 30), *self.key)
        table = np.stack(words, axis=-1)  # (blocks, 4)
        w = table[(n >> 2) - blocks[0], n & 3]
        return -log_uniform(w)

    def exponentials(self, stream, start: int, count: int) -> np.ndarray:
        return self.exponentials32(stream, start, count).astype(np.float64)

    def selected_normals32(self, step: int, sizes, indices) -> np.ndarray:
        """The candidates a decoder rebuilds for one coded step, in one pass: chunk j (stream
        ``(step, j + 1)``, ``sizes[j]`` dimensions) contributes candidate ``indices[j]``; float32,
        concatenated in chunk order."""
        sizes = np.asarray(sizes, dtype=np.int64)
        indices = np.asarray(indices, dtype=np.int64)
        if sizes.shape != indices.shape or sizes.ndim != 1 or np.any(sizes < 1):
            raise ValueError("need one index per chunk and positive chunk sizes")
        if np.any(indices < 0) or np.any(indices >= 1 << 32):
            raise ValueError("candidate indices must be in [0, 2**32)")
        split_stream((step, 0))
        blocks = -(-sizes // 4)
        owner = np.repeat(np.arange(sizes.size), blocks)  # the chunk of every block
        first = np.concatenate([[0], np.cumsum(blocks)[:-1]])
        j = np.arange(owner.size) - first[owner]
        words = philox4x32_10(j.astype(np.uint32), indices[owner].astype(np.uint32), (owner + 1).astype(np.uint32),
                              np.uint32(step | LANE_NORMAL << 30), *self.key)
        z = block_normals(words).reshape(-1)
        keep = (4 * j[:, None] + np.arange(4)[None, :] < sizes[owner][:, None]).reshape(-1)
        return z[keep]
