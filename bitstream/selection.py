"""Which candidate a channel-simulation call sends (format version 4), for all chunks of a coded
step at once.

A call has N = 2**k candidates z_n = p_mean + p_std·u_n and log-weights ln w_n = ln q(z_n)/p(z_n)
(up to a constant of the call).  The rules:

* **exact PFR** (λ = 1, the only rule of versions 1–3): n* = argmin ln T_n − ln w_n with the
  arrival times T_n of the encoder's arrival lane.  z_{n*} follows q as N → ∞, which keeps every
  x_t a sample of q(x_t|x_0); its index has entropy about KL + 2.5 bits and is Zipf-coded.
* **tempered PFR** (λ > 1): argmin ln T_n − λ ln w_n, between the two; Zipf-coded as PFR.
* **greedy** (λ = ∞): n* = argmax ln w_n, the candidate q favours most over p.  q/p peaks beyond
  q's mean, on the far side from p's (at p_mean + δ/(1 − σ_q²/σ_p²) for a shift δ), so greedy
  samples overshoot q's mean and spread far less than q.  Its index is uniform over the N
  candidates, coded in exactly k bits; a call carries about k − 2 bits of KL for those k: the
  cheapest rule per bit of x̂_0 quality on the real models (``benchmarks.studies.selection_rules``), but
  x_t is no longer a sample of q (``--stats`` shows the chain's spread per record).

The decoder only needs the index law (Zipf or uniform, ``bitstream.index_law``), never the rule's
scores.  Scores come from a ``log_weights(seed, step, a, b, offsets, chunk_ids, k)`` function
(``bitstream.scoring.StepLogWeights``): the compiled CPU kernel (``bitstream.kernels32``) or
torch on a device (``bitstream.torch_noise32``); they agree to ~1e-12, so the selected indices
agree but for ties that close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import noise32
from .container import SELECTION_EXACT, SELECTION_GREEDY
from .scoring import StepLogWeights

# log-weights (and arrival times) of at most this many candidates are held at once: 16 MiB a pass
CANDIDATES_PER_PASS = 1 << 21


@dataclass(frozen=True)
class SelectionRule:
    """λ of argmin ln T_n − λ ln w_n: 1 exact PFR, a multiple of 1/4 up to 63.5 tempered, inf greedy."""

    temper: float = 1.0

    def __post_init__(self):
        t = float(self.temper)
        if not (math.isinf(t) and t > 0) and not (1 <= t <= 63.5 and abs(t * 4 - round(t * 4)) < 1e-9):
            raise ValueError(f"the selection's λ must be inf or a multiple of 1/4 in 1..63.5, not {self.temper}")

    @property
    def greedy(self) -> bool:
        return math.isinf(self.temper)

    @property
    def byte(self) -> int:
        """The header's selection byte (``bitstream.container``)."""
        return SELECTION_GREEDY if self.greedy else round(self.temper * 4)

    @classmethod
    def from_byte(cls, value: int) -> "SelectionRule":
        if value == SELECTION_GREEDY:
            return cls(math.inf)
        if not SELECTION_EXACT <= value < SELECTION_GREEDY:
            raise ValueError(f"selection byte {value} is reserved")
        return cls(value / 4)

    @classmethod
    def parse(cls, text: str) -> "SelectionRule":
        """``pfr`` (exact), ``greedy``, or ``tempered:λ``."""
        text = text.strip().lower()
        if text in ("pfr", "exact"):
            return cls(1.0)
        if text == "greedy":
            return cls(math.inf)
        if text.startswith("tempered:"):
            return cls(float(text.split(":", 1)[1]))
        raise ValueError(f"unknown selection rule {text!r} (pfr, greedy or tempered:λ)")

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        return "exact PFR" if self.temper == 1 else f"tempered PFR (λ = {self.temper:g})"


EXACT = SelectionRule(1.0)
GREEDY = SelectionRule(math.inf)


def step_coefficients(q_mean: np.ndarray, q_std: float, p_mean: np.ndarray, p_std: float,
                      order: np.ndarray) -> tuple[float, np.ndarray]:
    """(a, b) of ln w = Σ a u² + b_i u + const for z = p_mean + p_std·u, with b in the order
    ``order`` (the step's shared permutation) as float32, as the version-4 scorers take them."""
    if not (q_std > 0 and p_std > 0 and math.isfinite(q_std) and math.isfinite(p_std)):
        raise ValueError("standard deviations must be finite and > 0")
    inv_q2 = 1.0 / (q_std * q_std)
    a = 0.5 - 0.5 * p_std * p_std * inv_q2
    b = (p_std * inv_q2) * (q_mean[order] - p_mean[order])
    if not np.all(np.isfinite(b)):
        raise ValueError("means must be finite")
    return a, b.astype(np.float32)


def log_arrival_times(seed: int, step: int, chunk_ids: np.ndarray, log2_candidates: int) -> np.ndarray:
    """ln T_n of every candidate of the calls ``chunk_ids`` of ``step`` (recipe step 6 of
    ``bitstream.noise32``), (chunks, N) float64."""
    n = 1 << int(log2_candidates)
    blocks = np.arange(-(-n // 4), dtype=np.uint32)[None, :]
    ids = np.asarray(chunk_ids, dtype=np.uint32)[:, None]
    key = (int(seed) & 0xFFFFFFFF, int(seed) >> 32)
    words = noise32.philox4x32_10(blocks, np.uint32(0), ids, np.uint32(step | noise32.LANE_ARRIVAL << 30), *key)
    w = np.stack(words, axis=-1).reshape(ids.shape[0], -1)[:, :n]
    e = -noise32.log_uniform(w).astype(np.float64)
    return np.log(np.cumsum(e, axis=1))


def select(rule: SelectionRule, log_w: np.ndarray, log_t: np.ndarray | None) -> np.ndarray:
    """Selected index per row of ``log_w`` (ties: the smallest index)."""
    if rule.greedy:
        return np.argmax(log_w, axis=1)
    return np.argmin(log_t - rule.temper * log_w, axis=1)


def select_step(seed: int, step: int, a: float, b: np.ndarray, sizes, log2_candidates: int,
                rule: SelectionRule, log_weights: StepLogWeights) -> list[int]:
    """The index of every chunk of one coded step: chunk j (stream ``(step, j + 1)``) holds the next
    ``sizes[j]`` entries of ``b``.  Chunks are scored in passes of ``CANDIDATES_PER_PASS``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes < 1) or int(sizes.sum()) != b.size:
        raise ValueError("chunk sizes must be positive and add up to the coefficients")
    k = int(log2_candidates)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    per_pass = max(1, CANDIDATES_PER_PASS >> k)
    out: list[int] = []
    for first in range(0, sizes.size, per_pass):
        last = min(sizes.size, first + per_pass)
        ids = np.arange(first + 1, last + 1, dtype=np.int64)
        lo, hi = offsets[first], offsets[last]
        log_w = log_weights(seed, step, a, b[lo:hi], offsets[first:last + 1] - lo, ids, k)
        log_t = None if rule.greedy else log_arrival_times(seed, step, ids, k)
        out += [int(i) for i in select(rule, log_w, log_t)]
    return out
