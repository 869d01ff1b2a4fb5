"""Vector channel simulation of a diagonal Gaussian by truncated Poisson functional
representation (PFR; ordered random coding), plus entropy coding of the selected index.

Encoder: wants a sample of q = N(q_mean, diag q_std^2) while the decoder only knows the
prior p = N(p_mean, diag p_std^2).  Both sides derive N = 2**k candidates
z_n = p_mean + p_std * u_n from shared normals u_n (``bitstream.noise``).  The encoder draws
arrival times T_n = E_0 + ... + E_n (E_m ~ Exp(1), encoder-only lane) and sends

    n* = argmin_n  T_n / w_n,   w_n = q(z_n) / p(z_n),

i.e. argmin (ln T_n - ln w_n).  For N -> infinity z_{n*} ~ q exactly; with N = 2**k it is
approximately q when k is comfortably above KL(q||p) in bits (the truncation error shows up
as bias/under-dispersion of the sample when N is not >> 2**KL).  The index is coded with a
truncated Zipf law P(n) ~ (n+1)^-s, s = 1 + 1/(B + ln(e+1)/e), B = KL budget in bits known to
both sides; expected cost about B + log2(B + 1) + O(1) bits.

ln w_n is computed from u_n without forming z_n (all terms are per-dimension sums):

    ln w_n = sum_i a_i u_{n,i}^2 + b_i u_{n,i} + c_i,
    a_i = 1/2 - p_std_i^2 / (2 q_std_i^2),
    b_i = p_std_i * delta_i / q_std_i^2,       delta = q_mean - p_mean,
    c_i = ln(p_std_i / q_std_i) - delta_i^2 / (2 q_std_i^2).

The candidates' log-weights are computed by a compiled loop (``bitstream.kernels``) that
never holds the candidate vectors in memory.  No neural network code here: numpy, numba and
constriction only.
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np

from . import portable_math
from .noise import SharedNoise
from .scoring import Scorer, check_log2_candidates


def _as_std(std, d: int) -> np.ndarray:
    s = np.broadcast_to(np.asarray(std, dtype=np.float64), (d,))
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("standard deviations must be finite and > 0")
    return s


def _check_mean(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 1 or m.size == 0:
        raise ValueError("means must be non-empty 1-D arrays")
    if not np.all(np.isfinite(m)):
        raise ValueError("means must be finite")
    return m


def gaussian_kl_bits(q_mean, q_std, p_mean, p_std) -> float:
    """KL(q || p) in bits for diagonal Gaussians."""
    q_mean = _check_mean(q_mean)
    p_mean = _check_mean(p_mean)
    d = q_mean.size
    qs, ps = _as_std(q_std, d), _as_std(p_std, d)
    nats = np.sum(np.log(ps / qs) + (qs**2 + (q_mean - p_mean) ** 2) / (2 * ps**2) - 0.5)
    return float(nats / math.log(2))


def log_weight_coefficients(q_mean, q_std, p_mean, p_std):
    """(a, b, c) with ln q(z)/p(z) = sum(a u^2 + b u) + c for z = p_mean + p_std u."""
    q_mean = _check_mean(q_mean)
    p_mean = _check_mean(p_mean)
    if q_mean.shape != p_mean.shape:
        raise ValueError("q_mean and p_mean must have the same shape")
    d = q_mean.size
    qs, ps = _as_std(q_std, d), _as_std(p_std, d)
    delta = q_mean - p_mean
    inv_q2 = 1.0 / (qs * qs)
    a = 0.5 - 0.5 * ps * ps * inv_q2
    b = ps * delta * inv_q2
    c = float(np.sum(np.log(ps / qs) - 0.5 * delta * delta * inv_q2))
    return a, b, c


def simulate(q_mean, q_std, p_mean, p_std, noise: SharedNoise, key, log2_candidates: int,
             scorer: Scorer | None = None):
    """Encoder: returns (index, sample) with sample approximately ~ q.

    ``sample`` is exactly what ``reconstruct(index, p_mean, p_std, noise, key)`` returns.
    ``scorer`` is the strategy that finds the index (``bitstream.scoring.Scorer``): by default
    ``bitstream.kernels.CompiledScorer`` (numba, CPU); ``bitstream.torch_scoring.TorchScorer``
    scores on any torch device.
    """
    k = check_log2_candidates(log2_candidates)
    if scorer is None:
        from .kernels import CompiledScorer  # numba: imported by the encoder only, the decoder starts faster

        scorer = CompiledScorer()
    a, b, c = log_weight_coefficients(q_mean, q_std, p_mean, p_std)
    best_index = int(scorer.best_index(noise.seed, key, a, b, c, k))
    return best_index, reconstruct(best_index, p_mean, p_std, noise, key)


def reconstruct(index: int, p_mean, p_std, noise: SharedNoise, key) -> np.ndarray:
    """Decoder: the candidate ``index`` under the prior p."""
    p_mean = _check_mean(p_mean)
    d = p_mean.size
    ps = _as_std(p_std, d)
    u = noise.normal(key, int(index), d)
    return p_mean + ps * u


# ---------------------------------------------------------------------------------------
# Index coding


ZIPF_OFFSET = 0.48312197571606913  # ln(e + 1)/e, as a constant so that s is the same on every machine


def zipf_exponent(kl_budget_bits: float) -> float:
    """s = 1 + 1/(B + ln(e+1)/e) (basic operations only)."""
    b = max(0.0, float(kl_budget_bits))
    return 1.0 + 1.0 / (b + ZIPF_OFFSET)


@functools.lru_cache(maxsize=64)
def _zipf_model(k: int, budget_key: float, portable: bool):
    n = np.arange(1, (1 << k) + 1, dtype=np.float64)
    s = zipf_exponent(budget_key)
    if portable:  # format version 3: identical probabilities on every machine
        p = portable_math.normalised(portable_math.exp(-s * portable_math.log(n)))
    else:  # versions 1 and 2: numpy's exp and log (machine-dependent in the last ulp)
        logp = -s * np.log(n)
        p = np.exp(logp - logp.max())
        p /= p.sum()
    model = constriction.stream.model.Categorical(p, perfect=False)
    return model, p


@functools.lru_cache(maxsize=8)
def _uniform_model(k: int):
    return constriction.stream.model.Uniform(1 << k)


class IndexModel:
    """Law of the selected index over ``2**log2_candidates`` candidates: a truncated Zipf law for a
    KL budget in bits (the PFR rules), or with ``uniform`` the uniform law, k bits exactly (the
    greedy rule of format version 4, ``bitstream.selection``).

    ``B`` is rounded to 1e-6 bits for caching; both sides must derive the same B.  ``portable``
    (format version 3) builds the law from :mod:`bitstream.portable_math`; False gives the law of
    versions 1 and 2.
    """

    def __init__(self, log2_candidates: int, kl_budget_bits: float, *, portable: bool = True, uniform: bool = False):
        self.k = int(log2_candidates)
        if not 1 <= self.k <= 24:
            raise ValueError("log2_candidates must be in [1, 24] (one candidate carries no information)")
        self.budget = round(float(kl_budget_bits), 6)
        self.uniform = bool(uniform)
        if self.uniform:
            self.model, self.probs = _uniform_model(self.k), None
        else:
            self.model, self.probs = _zipf_model(self.k, self.budget, bool(portable))

    @property
    def size(self) -> int:
        return 1 << self.k

    def ideal_bits(self, index: int) -> float:
        if self.uniform:
            return float(self.k)
        return float(-np.log2(self.probs[int(index)]))


def _models_for(models, count: int):
    if isinstance(models, IndexModel):
        return [models] * count
    models = list(models)
    if len(models) != count:
        raise ValueError("need one IndexModel per index")
    return models


def encode_indices(indices, models) -> bytes:
    """Range-code (FIFO) a sequence of indices; ``models``: one IndexModel or one per index."""
    indices = [int(i) for i in indices]
    models = _models_for(models, len(indices))
    enc = constriction.stream.queue.RangeEncoder()
    for i, m in zip(indices, models):
        if not 0 <= i < m.size:
            raise ValueError(f"index {i} outside [0, {m.size})")
        enc.encode(np.array([i], dtype=np.int32), m.model)
    return enc.get_compressed().astype("<u4").tobytes()


def decode_indices(data: bytes, models, count: int | None = None) -> list[int]:
    """Inverse of ``encode_indices``; pass ``count`` when ``models`` is a single IndexModel."""
    if isinstance(models, IndexModel):
        if count is None:
            raise ValueError("count is required with a single IndexModel")
        models = [models] * int(count)
    else:
        models = list(models)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    return [int(dec.decode(m.model, 1)[0]) for m in models]
