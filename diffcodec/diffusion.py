"""Gaussian diffusion math on tensors: forward marginals, posteriors, the reverse model.

Everything here is a function of a :class:`~diffcodec.schedule.Schedule` (float64 constants)
and of tensors shaped (B, C, H, W); steps ``k`` are 1-based step indices of that schedule,
one per batch element, shaped (B,). The ε-predictor is any callable
``eps_fn(x_k, t) -> ε̂`` where ``t`` are the *original* timesteps minus one (0..T−1, the
convention of the released DDPM weights); :meth:`GaussianDiffusion.predict_eps` maps
between the two so respaced chains condition the network correctly.
"""

from __future__ import annotations

import enum
from typing import Callable

import numpy as np
import torch

from .schedule import Schedule

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ReverseVariance(str, enum.Enum):
    """The fixed variance σ_k² of p_θ(x_{k−1}|x_k)."""

    FIXED_LARGE = "fixedlarge"  # σ² = β_k, the paper's CIFAR-10 model
    FIXED_SMALL = "fixedsmall"  # σ² = β̃_k, the forward posterior's variance


def _check_batch(x: torch.Tensor, k: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(x.shape)}")
    if k.ndim != 1 or k.shape[0] != x.shape[0]:
        raise ValueError(f"expected steps shaped ({x.shape[0]},), got {tuple(k.shape)}")


class GaussianDiffusion:
    """Forward process q and ε-parameterised reverse process p_θ of one schedule."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        s = schedule
        # Reverse variances, step 1 uses β̃_2 for both choices: β̃_1 = 0, and the reference
        # implementation sets the decoder's variance so "to get a better decoder likelihood".
        first = s.posterior_variance[1] if len(s) > 1 else s.betas[0]
        self._variance = {
            ReverseVariance.FIXED_LARGE: np.concatenate([[first], s.betas[1:]]),
            ReverseVariance.FIXED_SMALL: np.concatenate([[first], s.posterior_variance[1:]]),
        }

    @property
    def num_steps(self) -> int:
        return len(self.schedule)

    # ---- helpers ------------------------------------------------------------------------
    @staticmethod
    def _take(values: np.ndarray, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[k−1] as a (B,1,1,1) tensor with ``like``'s dtype and device."""
        if int(k.min()) < 1 or int(k.max()) > values.size:
            raise ValueError(f"step index out of range 1..{values.size}")
        v = torch.from_numpy(values).to(like.device)[k.to(like.device) - 1]
        return v.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def network_timesteps(self, k: torch.Tensor) -> torch.Tensor:
        """Original timestep minus one (0..T−1) for each step index ``k``."""
        return torch.from_numpy(self.schedule.timesteps - 1).to(k.device)[k - 1]

    def predict_eps(self, eps_fn: EpsFn, x_k: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        _check_batch(x_k, k)
        eps = eps_fn(x_k, self.network_timesteps(k))
        if eps.shape != x_k.shape:
            raise ValueError(f"ε-predictor returned {tuple(eps.shape)} for input {tuple(x_k.shape)}")
        return eps

    # ---- forward process ----------------------------------------------------------------
    def q_mean_std(self, x0: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(x_k|x_0) (eq. 4)."""
        _check_batch(x0, k)
        abar = self._take(self.schedule.alphas_cumprod, k, x0)
        return abar.sqrt() * x0, (1 - abar).sqrt()

    def q_sample(self, x0: torch.Tensor, k: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mean, std = self.q_mean_std(x0, k)
        return mean + std * noise

    def q_posterior(
        self, x0: torch.Tensor, x_k: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean μ̃ and variance β̃ of q(x_{k−1}|x_k, x_0) (eqs. 6–7); variance is (B,1,1,1)."""
        _check_batch(x_k, k)
        s = self.schedule
        mean = self._take(s.posterior_mean_coef_x0, k, x_k) * x0 + self._take(s.posterior_mean_coef_xt, k, x_k) * x_k
        return mean, self._take(s.posterior_variance, k, x_k)

    # ---- reverse process ----------------------------------------------------------------
    def x0_from_eps(self, x_k: torch.Tensor, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_k − √(1−ᾱ_k) ε) / √ᾱ_k (eq. 15), unclipped."""
        abar = self._take(self.schedule.alphas_cumprod, k, x_k)
        return (x_k - (1 - abar).sqrt() * eps) / abar.sqrt()

    def eps_from_x0(self, x_k: torch.Tensor, k: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = self._take(self.schedule.alphas_cumprod, k, x_k)
        return (x_k - abar.sqrt() * x0) / (1 - abar).sqrt()

    def denoise(
        self, x_k: torch.Tensor, k: torch.Tensor, eps: torch.Tensor, clip_denoised: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x̂_0 (clipped to [−1, 1] if asked) and μ_θ(x_k, k), the posterior mean with that x̂_0
        plugged in; unclipped, μ_θ equals eq. 11."""
        x0_hat = self.x0_from_eps(x_k, k, eps)
        if clip_denoised:
            x0_hat = x0_hat.clamp(-1, 1)
        mean, _ = self.q_posterior(x0_hat, x_k, k)
        return x0_hat, mean

    def p_mean(self, x_k: torch.Tensor, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """μ_θ(x_k, k) of eq. 11."""
        return self.denoise(x_k, k, eps)[1]

    def p_variance(self, k: torch.Tensor, variance: ReverseVariance, like: torch.Tensor) -> torch.Tensor:
        """σ_k² of p_θ(x_{k−1}|x_k) as a (B,1,1,1) tensor."""
        return self._take(self._variance[ReverseVariance(variance)], k, like)

    def reverse_variances(self, variance: ReverseVariance) -> np.ndarray:
        """σ_k² for k = 1..K (float64 copy)."""
        return self._variance[ReverseVariance(variance)].copy()

    # ---- training ------------------------------------------------------------------------
    def l_simple(self, eps_fn: EpsFn, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple (eq. 14): E_{k,ε} ‖ε − ε_θ(√ᾱ_k x_0 + √(1−ᾱ_k) ε, k)‖², mean over dims and batch."""
        k = torch.randint(1, self.num_steps + 1, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_k = self.q_sample(x0, k, noise)
        return torch.mean((noise - self.predict_eps(eps_fn, x_k, k)) ** 2)
