"""The exact variational bound of a DDPM, term by term, as the paper measured it.

For one batch of images x_0 ∈ {0..255} scaled to [−1, 1]:

* prior L_T = KL(q(x_K|x_0) ‖ N(0, I)),
* for each step k ≥ 2: KL(q(x_{k−1}|x_k, x_0) ‖ p_θ(x_{k−1}|x_k)) in closed form, with a fresh
  x_k ~ q(x_k|x_0) per step (not a chain),
* L_0 = −log p_θ(x_0|x_1) under the discretised Gaussian decoder with the exact normal CDF,
* the MSE of x̂_0 (eq. 15, clipped to [−1, 1]) from every x_k.

Rate is L_T + Σ_{k≥2} KL, distortion is L_0. All terms are float64 and in bits per image;
both reverse variances are evaluated from the same network outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion import EpsFn, GaussianDiffusion, ReverseVariance

LN2 = math.log(2.0)
BIN_HALF_WIDTH = 1.0 / 255.0  # half the spacing of the 256 levels on [−1, 1]


def gaussian_kl(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) ‖ N(mean2, var2)) per element, in nats."""
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log_diff_ndtr(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) − Φ(lo)) for lo < hi, accurate in both tails."""
    upper = lo > 0  # both in the upper tail: use Φ(−lo) − Φ(−hi) instead
    a = torch.where(upper, -hi, lo)
    b = torch.where(upper, -lo, hi)
    log_b = torch.special.log_ndtr(b)
    return log_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_b))


def discretized_gaussian_log_prob(x0: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log p(x_0) per element for the 256-level decoder of eq. 13, in nats (float64).

    Each level x owns [x − 1/255, x + 1/255]; the bins of −1 and +1 extend to ∓∞.
    """
    x0, mean, std = (v.to(torch.float64) for v in torch.broadcast_tensors(x0, mean, std))
    lo = (x0 - BIN_HALF_WIDTH - mean) / std
    hi = (x0 + BIN_HALF_WIDTH - mean) / std
    lo = torch.where(x0 < -1 + 1e-9, torch.full_like(lo, -math.inf), lo)
    hi = torch.where(x0 > 1 - 1e-9, torch.full_like(hi, math.inf), hi)
    return _log_diff_ndtr(lo, hi)


@dataclass
class BoundTerms:
    """Per-image, per-step terms of the bound for one batch (float64, bits per image).

    ``step_bits[v][:, k−1]`` is the KL of step k ≥ 2, and L_0 at k = 1, for reverse variance v.
    ``mse[:, k−1]`` is the MSE of clipped x̂_0 from x_k on the [−1, 1] scale.
    """

    prior_bits: np.ndarray  # (B,)
    step_bits: dict[ReverseVariance, np.ndarray]  # (B, K) each
    mse: np.ndarray  # (B, K)
    dims: int  # C·H·W

    def rate_bits(self, variance: ReverseVariance) -> np.ndarray:
        """L_T + Σ_{k≥2} KL_k per image."""
        return self.prior_bits + self.step_bits[ReverseVariance(variance)][:, 1:].sum(axis=1)

    def distortion_bits(self, variance: ReverseVariance) -> np.ndarray:
        """L_0 per image."""
        return self.step_bits[ReverseVariance(variance)][:, 0].copy()


def prior_kl_bits(diffusion: GaussianDiffusion, x0: torch.Tensor) -> np.ndarray:
    """L_T = KL(q(x_K|x_0) ‖ N(0, I)) per image, in bits."""
    x0 = x0.to(torch.float64)
    k = torch.full((x0.shape[0],), diffusion.num_steps, dtype=torch.long, device=x0.device)
    mean, std = diffusion.q_mean_std(x0, k)
    kl = gaussian_kl(mean, std**2, torch.zeros_like(mean), torch.ones_like(mean))
    return (kl.flatten(1).sum(1) / LN2).cpu().numpy()


@torch.no_grad()
def evaluate_bound(
    diffusion: GaussianDiffusion,
    eps_fn: EpsFn,
    x0: torch.Tensor,
    *,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
    steps=None,
    progress=None,
) -> BoundTerms:
    """All terms of the bound for a batch ``x0`` (B, C, H, W) on the 256 levels of [−1, 1].

    ``clip_denoised`` clips x̂_0 to [−1, 1] before forming μ_θ, as the reference evaluation
    does. ``steps`` restricts evaluation to some step indices (others stay NaN); ``progress``
    is called once per step evaluated.
    """
    if x0.ndim != 4:
        raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(x0.shape)}")
    x0 = x0.to(torch.float64)
    levels = torch.round((x0 + 1) * 127.5)
    on_levels = (levels >= 0) & (levels <= 255) & ((levels / 127.5 - 1 - x0).abs() <= 1e-6)
    if not torch.all(on_levels):  # written so that NaN fails it too
        raise ValueError("x0 must lie on the 256 levels of [-1, 1]")
    B, K = x0.shape[0], diffusion.num_steps
    dims = int(np.prod(x0.shape[1:]))
    variances = list(ReverseVariance)
    step_bits = {v: np.full((B, K), np.nan) for v in variances}
    mse = np.full((B, K), np.nan)
    for kk in range(K, 0, -1) if steps is None else sorted(steps, reverse=True):
        k = torch.full((B,), kk, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, dtype=torch.float64, device=x0.device, generator=generator)
        x_k = diffusion.q_sample(x0, k, noise)
        eps = diffusion.predict_eps(eps_fn, x_k.to(torch.float32), k).to(torch.float64)
        x0_hat, mean_p = diffusion.denoise(x_k, k, eps, clip_denoised)
        mse[:, kk - 1] = ((x0_hat.clamp(-1, 1) - x0) ** 2).flatten(1).mean(1).cpu().numpy()
        if kk == 1:
            for v in variances:
                std = diffusion.p_variance(k, v, x_k).sqrt()
                nll = -discretized_gaussian_log_prob(x0, mean_p, std)
                step_bits[v][:, 0] = (nll.flatten(1).sum(1) / LN2).cpu().numpy()
        else:
            mean_q, var_q = diffusion.q_posterior(x0, x_k, k)
            for v in variances:
                kl = gaussian_kl(mean_q, var_q, mean_p, diffusion.p_variance(k, v, x_k))
                step_bits[v][:, kk - 1] = (kl.flatten(1).sum(1) / LN2).cpu().numpy()
        if progress is not None:
            progress()
    return BoundTerms(prior_kl_bits(diffusion, x0), step_bits, mse, dims)
