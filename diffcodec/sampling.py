"""Ancestral sampling (Algorithm 2), on the full chain or a respaced one."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from .diffusion import EpsFn, GaussianDiffusion, ReverseVariance


@torch.no_grad()
def sample(
    diffusion: GaussianDiffusion,
    eps_fn: EpsFn,
    shape: tuple[int, int, int, int],
    *,
    variance: ReverseVariance = ReverseVariance.FIXED_LARGE,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Draw x_K ~ N(0, I), then x_{k−1} ~ p_θ(x_{k−1}|x_k) down to k = 1, returning the mean
    μ_θ(x_1, 1) (no noise on the last step, as Algorithm 2), in [−1, 1]."""
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, H, W), got {shape}")
    x = torch.randn(shape, generator=generator, device=device)
    for kk in tqdm(range(diffusion.num_steps, 0, -1), disable=not progress, desc="sample", unit="step",
                   dynamic_ncols=True):
        k = torch.full((shape[0],), kk, dtype=torch.long, device=device)
        eps = diffusion.predict_eps(eps_fn, x, k)
        _, mean = diffusion.denoise(x, k, eps, clip_denoised)
        if kk > 1:
            noise = torch.randn(shape, generator=generator, device=device)
            x = mean + diffusion.p_variance(k, variance, mean).sqrt() * noise
        else:
            x = mean
    return x.clamp(-1, 1)


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile uint8 images (N, C, H, W) into one uint8 image (C, rows·(H+pad)−pad, …) on white."""
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError("expected uint8 images (N, C, H, W)")
    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.full((c, rows * (h + pad) - pad, cols * (w + pad) - pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i]
    return grid
