"""The shared randomness of ``bitstream.noise`` on torch tensors, for any device.

Same recipe, same words: Philox4x64-10 keyed ``(seed, stream)`` with counters
``(c0, lane, 0, 0)`` gives, bit for bit, the uint64 words of numpy's ``np.random.Philox``
path in ``bitstream.noise`` (and hence the same uniforms); normals and exponentials follow
with torch's log/cos/sin, equal up to the last ulp of the device's libm.

torch has no general uint64 arithmetic, so a uint64 word is held in an int64 tensor with the
same 64 bits.  Addition, multiplication and left shifts wrap modulo 2**64 in two's complement
exactly as uint64 does; right shifts of int64 are arithmetic, so every ``>>`` is followed by a
mask; and the 64 x 64 -> 128-bit product of a Philox round is built from 32-bit halves.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .noise import _M0, _M1, _W0, _W1, LANE_ARRIVAL, LANE_NORMAL, stream_key

_MASK64 = (1 << 64) - 1
_M32 = 0xFFFFFFFF
_M53 = (1 << 53) - 1
_INV_2_53 = 2.0**-53
_TWO_PI = 2.0 * math.pi


def as_int64(value: int) -> int:
    """The int64 with the same 64 bits as the uint64 ``value`` (any int, taken mod 2**64)."""
    value = int(value) & _MASK64
    return value - (1 << 64) if value >> 63 else value


def to_uint64(words: torch.Tensor) -> np.ndarray:
    """int64 tensor of words -> numpy uint64 array with the same bits (on the host)."""
    return words.detach().cpu().numpy().view(np.uint64)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of uint64 words held in int64."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mulhilo(m: int, x: torch.Tensor):
    """(high, low) 64-bit halves of the 128-bit product of the constant ``m`` and words ``x``."""
    m_lo, m_hi = m & _M32, m >> 32
    x_lo, x_hi = x & _M32, _shr(x, 32)
    lo_lo = x_lo * m_lo  # each product of two 32-bit halves wraps to its exact 64 bits
    hi_lo = x_hi * m_lo
    cross = _shr(lo_lo, 32) + (hi_lo & _M32) + x_lo * m_hi  # < 2**64: no carry lost
    hi = x_hi * m_hi + _shr(hi_lo, 32) + _shr(cross, 32)
    lo = (cross << 32) | (lo_lo & _M32)
    return hi, lo


def philox4x64_10(c0, c1, c2, c3, k0, k1):
    """Philox4x64-10 blocks, elementwise with broadcasting: counters and key -> four words.

    Arguments are int64 tensors (or ints) holding uint64 bits; the result is four int64
    tensors of the broadcast shape.
    """
    args = (c0, c1, c2, c3, k0, k1)
    device = next((x.device for x in args if isinstance(x, torch.Tensor)), torch.device("cpu"))
    c0, c1, c2, c3, k0, k1 = (torch.as_tensor(x, dtype=torch.int64, device=device) for x in args)
    w0, w1 = as_int64(_W0), as_int64(_W1)
    for r in range(10):
        if r:
            k0 = k0 + w0
            k1 = k1 + w1
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    shape = torch.broadcast_shapes(c0.shape, c1.shape, c2.shape, c3.shape)
    return tuple(c.expand(shape) for c in (c0, c1, c2, c3))


def raw_words(seed: int, stream, lane: int, c0: int, nwords: int, device="cpu") -> torch.Tensor:
    """``nwords`` raw words from the block at counter ``(c0 + 1, lane, 0, 0)``: int64, (nwords,), on ``device``.

    The counterpart of ``np.random.Philox(key=(seed, stream), counter=(c0, lane, 0, 0))
    .random_raw(nwords)``, including its 256-bit counter increment (``c0`` wrapping past
    2**64 carries into the lane word).
    """
    nblocks = -(-int(nwords) // 4)
    first = (int(c0) + 1) & _MASK64
    i = torch.arange(nblocks, dtype=torch.int64, device=device)
    ctr0 = i + as_int64(first)
    ctr1 = torch.full((), as_int64(lane), dtype=torch.int64, device=device)
    if first == 0:
        ctr1 = ctr1 + 1  # the increment before the first block carried already
    elif (1 << 64) - first < nblocks:  # blocks from this index on wrapped past 2**64
        ctr1 = ctr1 + (i >= (1 << 64) - first).to(torch.int64)
    key0 = torch.tensor(as_int64(seed), device=device)
    key1 = torch.tensor(as_int64(stream_key(stream)), device=device)
    words = torch.stack(philox4x64_10(ctr0, ctr1, 0, 0, key0, key1), dim=-1)
    return words.reshape(-1)[: int(nwords)]


def words_to_uniform(words: torch.Tensor) -> torch.Tensor:
    """53-bit uniforms in (0, 1] (recipe step 4), exact in float64."""
    return (_shr(words, 11).to(torch.float64) + 1.0) * _INV_2_53


def box_muller(words: torch.Tensor) -> torch.Tensor:
    """Normals from words of shape (..., 2m): each pair (radius word, angle word) gives two."""
    u = words_to_uniform(words)
    rad = torch.sqrt(-2.0 * torch.log(u[..., 0::2]))
    ang = _TWO_PI * u[..., 1::2]
    return torch.stack((rad * torch.cos(ang), rad * torch.sin(ang)), dim=-1).flatten(-2)


def normal_lane_words(seed: int, streams: torch.Tensor, blocks_per_row: torch.Tensor, start: int, count: int,
                      width: int) -> torch.Tensor:
    """Words of candidates ``start .. start+count-1`` for several streams at once.

    ``streams`` and ``blocks_per_row`` (int64, shape (C,)) give each stream's key and
    ``b = ceil(d / 4)``; the result has shape (C, count, 4 * width) with ``width >= max(b)``:
    row n of stream s holds its 4 b words, then words of other counters (to be discarded).
    """
    device = streams.device
    n = torch.arange(int(start), int(start) + int(count), dtype=torch.int64, device=device)
    j = torch.arange(int(width), dtype=torch.int64, device=device)
    ctr0 = n[None, :, None] * blocks_per_row[:, None, None] + j + 1
    key0 = torch.tensor(as_int64(seed), device=device)
    words = philox4x64_10(ctr0, LANE_NORMAL, 0, 0, key0, streams[:, None, None])
    return torch.stack(words, dim=-1).flatten(-2)


def arrival_exponentials(seed: int, streams: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """E_n = -ln u for n = start .. start+count-1 of the arrival lane (recipe step 6), shape (C, count)."""
    device = streams.device
    n = torch.arange(int(start), int(start) + int(count), dtype=torch.int64, device=device)
    key0 = torch.tensor(as_int64(seed), device=device)
    word0 = philox4x64_10(n[None, :] + 1, LANE_ARRIVAL, 0, 0, key0, streams[:, None])[0]
    return -torch.log(words_to_uniform(word0))


class TorchNoise:
    """``bitstream.noise.SharedNoise`` on a torch device: the same methods, tensors out."""

    def __init__(self, seed: int, device="cpu"):
        seed = int(seed)
        if not 0 <= seed <= _MASK64:
            raise ValueError("seed must fit in 64 bits")
        self.seed = seed
        self.device = torch.device(device)

    def _streams(self, stream) -> torch.Tensor:
        return torch.tensor([as_int64(stream_key(stream))], dtype=torch.int64, device=self.device)

    def words(self, stream, lane: int, count: int) -> torch.Tensor:
        """``count`` raw words of ``lane``: blocks ``c0 = 1, 2, …`` in order, four words each."""
        return raw_words(self.seed, stream, lane, 0, count, self.device)

    def _row_words(self, stream, start: int, count: int, d: int) -> torch.Tensor:
        b = torch.tensor([-(-int(d) // 4)], dtype=torch.int64, device=self.device)
        return normal_lane_words(self.seed, self._streams(stream), b, start, count, int(b))[0]

    def uniforms(self, stream, start: int, count: int, d: int) -> torch.Tensor:
        """Raw-row uniforms, shape (count, 4*ceil(d/4)) (padding included)."""
        return words_to_uniform(self._row_words(stream, start, count, d))

    def normals(self, stream, start: int, count: int, d: int) -> torch.Tensor:
        if d < 1 or count < 0 or start < 0:
            raise ValueError("need d >= 1, count >= 0, start >= 0")
        return box_muller(self._row_words(stream, start, count, d))[:, : int(d)]

    def exponentials(self, stream, start: int, count: int) -> torch.Tensor:
        """Exp(1) draws E_start .. E_{start+count-1} of the arrival lane."""
        return arrival_exponentials(self.seed, self._streams(stream), start, count)[0]
