"""Vector channel simulation of a diagonal Gaussian by truncated Poisson functional
representation (PFR; ordered random coding).

Encoder: wants a sample of q = N(q_mean, diag q_std^2) while the decoder only knows the
prior p = N(p_mean, diag p_std^2).  Both sides derive N = 2**k candidates
z_n = p_mean + p_std * u_n from shared normals u_n (``bitstream.noise``).  The encoder draws
arrival times T_n = E_0 + ... + E_n (E_m ~ Exp(1), encoder-only lane) and sends

    n* = argmin_n  T_n / w_n,   w_n = q(z_n) / p(z_n),

i.e. argmin (ln T_n - ln w_n).  For N -> infinity z_{n*} ~ q exactly; with N = 2**k it is
approximately q when k is comfortably above KL(q||p) in bits (the truncation error shows up
as bias/under-dispersion of the sample when N is not >> 2**KL).  The index is sent under one of
the laws of ``bitstream.index_law``.

ln w_n is computed from u_n without forming z_n (all terms are per-dimension sums):

    ln w_n = sum_i a_i u_{n,i}^2 + b_i u_{n,i} + c_i,
    a_i = 1/2 - p_std_i^2 / (2 q_std_i^2),
    b_i = p_std_i * delta_i / q_std_i^2,       delta = q_mean - p_mean,
    c_i = ln(p_std_i / q_std_i) - delta_i^2 / (2 q_std_i^2).

The candidates' log-weights are computed by a compiled loop (``bitstream.kernels``) that
never holds the candidate vectors in memory.  No neural network code here: numpy, and numba
through the default scorer.
"""

from __future__ import annotations

import math

import numpy as np

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
