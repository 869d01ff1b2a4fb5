"""Splitting one coded step's dimensions into channel-simulation calls ("chunks").

A call should carry about ``B`` bits of KL: fewer and the per-call overhead dominates, more
and the candidate count needed grows as 2**KL.  The encoder knows the step's total KL K; the
decoder does not.  So the encoder sends a *level* e per step, meaning m(e) = ceil(2**(e/4))
chunks of near-equal size (chosen as the smallest e with K / m(e) <= B), coded as the change
from the previous step's level in the same record (from 0 at a record's start, so records
decode independently) under a fixed heavy-tailed law.  The dimensions are first
shuffled by a permutation both sides derive from the shared seed, so each chunk gets a
random mix of pixels and the chunks carry similar KL.
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np

from . import portable_math
from .noise import LANE_PERMUTATION, SharedNoise

MAX_LEVEL = 127  # m(127) = 2**31.75: more chunks than any allowed image has dimensions


def chunk_count(level: int) -> int:
    """m(e) = ceil(2**(e/4)) chunks at level e, in integer arithmetic: the smallest m with
    m**4 >= 2**e (so it is the same on every machine)."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level {level} outside 0..{MAX_LEVEL}")
    target = 1 << int(level)
    m = math.isqrt(math.isqrt(target))  # floor of the 4th root
    return m if m**4 >= target else m + 1


def level_for(kl_bits: float, budget_bits: float, dims: int) -> int:
    """Smallest level whose chunks carry at most ``budget_bits`` each, capped at one dim per chunk."""
    if budget_bits <= 0:
        raise ValueError("budget must be positive")
    e = 0
    while e < MAX_LEVEL and chunk_count(e) < dims and kl_bits / chunk_count(e) > budget_bits:
        e += 1
    while e > 0 and chunk_count(e) > dims:
        e -= 1
    return e


def permutation(noise: SharedNoise, stream, dims: int) -> np.ndarray:
    """Shared random permutation of ``range(dims)`` (noise recipe step 7)."""
    words = noise.words(stream, LANE_PERMUTATION, int(dims))
    return np.argsort(words, kind="stable")


def split_sizes(dims: int, count: int) -> np.ndarray:
    """Sizes of the ``count`` chunks of ``split``: near-equal, the first ``dims mod count`` one longer
    (``numpy.array_split``'s rule, FORMAT.md §6)."""
    dims, count = int(dims), int(count)
    if not 1 <= count <= dims:
        raise ValueError(f"cannot split {dims} dims into {count} chunks")
    sizes = np.full(count, dims // count, dtype=np.int64)
    sizes[:dims % count] += 1
    return sizes


def split(order: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` contiguous slices of ``order`` of the sizes ``split_sizes`` gives."""
    return np.split(order, np.cumsum(split_sizes(order.size, count))[:-1])


@functools.lru_cache(maxsize=2)
def _delta_model(portable: bool):
    delta = np.arange(-MAX_LEVEL, MAX_LEVEL + 1, dtype=np.float64)
    if portable:  # format version 3: basic operations and an exactly rounded sum
        w = np.abs(delta) + 1.0
        p = portable_math.normalised(1.0 / (w * w))
    else:  # versions 1 and 2
        p = (np.abs(delta) + 1.0) ** -2.0
        p /= p.sum()
    return constriction.stream.model.Categorical(p, perfect=False), p


class LevelModel:
    """Law of the level change e_step − e_previous: P(Δ) ∝ (|Δ| + 1)^−2 on −127..127.

    ``portable`` (format version 3) computes it with basic operations only; False gives the law
    of versions 1 and 2."""

    def __init__(self, *, portable: bool = True):
        self.portable = bool(portable)

    @property
    def model(self):
        return _delta_model(self.portable)[0]

    @staticmethod
    def symbol(delta: int) -> int:
        if not -MAX_LEVEL <= delta <= MAX_LEVEL:
            raise ValueError(f"level change {delta} out of range")
        return int(delta) + MAX_LEVEL

    @staticmethod
    def delta(symbol: int) -> int:
        return int(symbol) - MAX_LEVEL

    def ideal_bits(self, delta: int) -> float:
        return float(-np.log2(_delta_model(self.portable)[1][int(delta) + MAX_LEVEL]))
