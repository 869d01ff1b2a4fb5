"""What a decoder shows from a chain state x_t: three ways to turn x_t into an image.

- MEAN: x̂_0 of eq. 15 (clipped), one network pass; the estimate the rate–distortion
  figures of the paper use.
- FLOW: the deterministic probability-flow / DDIM (η = 0) path from x_t to x_0, on ``steps``
  timesteps spread evenly over 1..t.
- ANCESTRAL: Algorithm 2 from x_t on the same timesteps (σ² = β̃ of the respaced chain),
  with decoder-side noise from ``seed``: a sample of p_θ(x_0|x_t), sharper but random.
"""

from __future__ import annotations

import enum

import numpy as np
import torch

from .diffusion import EpsFn, GaussianDiffusion
from .schedule import Schedule


class Reconstruction(str, enum.Enum):
    MEAN = "mean"
    FLOW = "flow"
    ANCESTRAL = "ancestral"


def _respaced_below(schedule: Schedule, t: int, steps: int) -> GaussianDiffusion:
    """The chain on ``min(steps, t)`` timesteps spread evenly over 1..t (t always kept)."""
    count = max(1, min(int(steps), int(t)))
    ts = np.unique(np.round(np.linspace(1, int(t), count)).astype(np.int64))
    return GaussianDiffusion(schedule.respace(ts))


@torch.no_grad()
def reconstruct(
    schedule: Schedule,
    eps_fn: EpsFn,
    x_t: torch.Tensor,
    t: int,
    how: Reconstruction = Reconstruction.MEAN,
    *,
    steps: int = 50,
    seed: int = 0,
) -> torch.Tensor:
    """An image in [−1, 1], shaped like ``x_t`` (B, C, H, W), from the state at timestep ``t``."""
    how = Reconstruction(how)
    if x_t.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x_t.shape)}")
    B = x_t.shape[0]
    if how is Reconstruction.MEAN:
        d = GaussianDiffusion(schedule.respace([t]))
        k = torch.ones(B, dtype=torch.long)
        eps = d.predict_eps(eps_fn, x_t.float(), k).to(x_t.dtype)
        return d.x0_from_eps(x_t, k, eps).clamp(-1, 1)
    d = _respaced_below(schedule, t, steps)
    s = d.schedule
    generator = torch.Generator().manual_seed(int(seed))
    x = x_t
    for kk in range(d.num_steps, 0, -1):
        k = torch.full((B,), kk, dtype=torch.long)
        eps = d.predict_eps(eps_fn, x.float(), k).to(x.dtype)
        x0_hat, mean = d.denoise(x, k, eps, clip_denoised=True)
        if kk == 1:
            return x0_hat
        if how is Reconstruction.FLOW:
            abar_prev = float(s.alphas_cumprod[kk - 2])
            eps_c = d.eps_from_x0(x, k, x0_hat)  # ε consistent with the clipped x̂_0
            x = abar_prev**0.5 * x0_hat + (1 - abar_prev) ** 0.5 * eps_c
        else:
            var = float(s.posterior_variance[kk - 1])
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = mean + var**0.5 * noise
    return x.clamp(-1, 1)  # pragma: no cover - the loop always returns at kk == 1
