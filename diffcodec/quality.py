"""Image-quality metrics, on uint8 arrays (H, W, C): of the reports, and of ``encode --stats``
(each record's picture, its mean and its probability-flow reconstruction).

``psnr_rgb``     10·log10(255² / MSE), the MSE over all pixels and all three channels.
``pooled_psnr``  the PSNR of the mean MSE of several images (from their PSNRs): the convention of
                 the bound's RMSE of x̂_0, which a mean of per-image PSNRs is not.
``ms_ssim_rgb``  MS-SSIM (Wang, Simoncelli, Bovik 2003) as ``pytorch_msssim.ms_ssim`` computes
                 it with its defaults: Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, data range
                 255, 5 scales with weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, "valid"
                 filtering, 2×2 average pooling between scales (zero padding of odd sides,
                 counted in the mean), contrast terms and the last SSIM clipped at 0, the
                 product over scales taken per channel, then the channels averaged.
                 (Filtering in float32 about the midpoint, the rest in float64; agrees with
                 pytorch_msssim in float64 to about 1e-6.)

Small images (the convention, see :func:`ms_ssim_convention`): five scales need the smaller
side to exceed (11 − 1)·2⁴ = 160 pixels. Below that, the number of scales M is the largest
one with ``min(H, W) > 10·2^(M−1)`` (the same test for M scales), the window stays 11 × 11,
σ 1.5, and the first M weights are used, renormalised to sum to 1; the last of the M scales
carries the luminance term as usual. CIFAR-10 (32×32) thus gets M = 2 scales (32 and 16
pixels) with weights 0.1356 and 0.8644. Images with a side of 10 pixels or less are refused.
For images with a side above 160 the convention is the standard one and the value equals
``pytorch_msssim.ms_ssim`` (to float rounding; computed here in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of ``test`` against ``ref`` (uint8, same shape); ``inf`` when identical."""
    _check(ref, test)
    mse = float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def psnr_from_rmse(rmse):
    """PSNR in dB of an RMSE on [0, 255] (a number or an array)."""
    return 20.0 * np.log10(DATA_RANGE / np.asarray(rmse, dtype=float))


def pooled_psnr(psnrs, axis=-1):
    """PSNR of the mean MSE of the images whose PSNRs are ``psnrs`` (along ``axis``)."""
    mse = DATA_RANGE**2 / 10 ** (np.asarray(psnrs, dtype=float) / 10)
    return 10.0 * np.log10(DATA_RANGE**2 / mse.mean(axis=axis))


@dataclass(frozen=True)
class MsSsimConvention:
    """How MS-SSIM is computed for one image size (see the module docstring)."""

    scales: int
    window: int
    sigma: float
    weights: tuple[float, ...]

    @property
    def standard(self) -> bool:
        """True when this is the usual 5-scale MS-SSIM."""
        return self.scales == len(WEIGHTS)

    def describe(self) -> str:
        w = ", ".join(f"{x:.4f}" for x in self.weights)
        if self.standard:
            return (f"MS-SSIM (RGB, channels averaged): standard 5 scales, Gaussian window {self.window}, "
                    f"σ {self.sigma}, weights {w} (as pytorch_msssim)")
        return (f"MS-SSIM (RGB, channels averaged), small-image convention: {self.scales} scale(s) (the most "
                f"that fit an {self.window}×{self.window} window, σ {self.sigma}), weights = the first "
                f"{self.scales} standard weights renormalised to sum 1: {w}")


def ms_ssim_convention(height: int, width: int) -> MsSsimConvention:
    """The scales and weights used for an image of this size."""
    side = min(height, width)
    scales = max((m for m in range(1, len(WEIGHTS) + 1) if side > (WINDOW - 1) * 2 ** (m - 1)), default=0)
    if scales == 0:
        raise ValueError(f"MS-SSIM needs both sides larger than {WINDOW - 1} pixels (got {width}×{height})")
    if scales == len(WEIGHTS):
        weights = WEIGHTS
    else:
        total = sum(WEIGHTS[:scales])
        weights = tuple(w / total for w in WEIGHTS[:scales])
    return MsSsimConvention(scales, WINDOW, SIGMA, weights)


def ms_ssim_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of ``test`` against ``ref`` (uint8 (H, W, 3)), in [0, 1]; 1 when identical."""
    _check(ref, test)
    conv = ms_ssim_convention(*ref.shape[:2])
    x = torch.from_numpy(ref.astype(np.float32)).permute(2, 0, 1)[None]
    y = torch.from_numpy(test.astype(np.float32)).permute(2, 0, 1)[None]
    win = _window(conv.window, conv.sigma)
    terms = []
    for level in range(conv.scales):
        ssim, cs = _ssim(x, y, win)
        if level < conv.scales - 1:
            terms.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(torch.relu(ssim))
    stacked = torch.stack(terms)  # (scales, channels), float64
    weights = torch.tensor(conv.weights, dtype=torch.float64).view(-1, 1)
    return float(torch.prod(stacked**weights, dim=0).mean())


def ms_ssim_or_none(ref: np.ndarray, test: np.ndarray) -> float | None:
    """:func:`ms_ssim_rgb`, or None for an image with a side of 10 pixels or less (no scale fits)."""
    return ms_ssim_rgb(ref, test) if min(ref.shape[:2]) > WINDOW - 1 else None


@lru_cache(maxsize=4)
def _window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(torch.float32)


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' (no padding), each channel alone."""
    c = x.shape[1]
    x = F.conv2d(x, win.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, win.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and mean contrast-structure term, shapes (C,), float64.

    Filtering runs in float32 (float64 convolutions are several times slower on CPU); the
    second moments are taken about the midpoint 127.5, which leaves them unchanged in exact
    arithmetic and keeps float32 cancellation far below the constant C2 = 58.5.
    """
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    x, y = x - DATA_RANGE / 2, y - DATA_RANGE / 2
    c = x.shape[1]
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), win).to(torch.float64)
    m1, m2, e11, e22, e12 = moments.split(c, dim=1)
    s11, s22, s12 = e11 - m1**2, e22 - m2**2, e12 - m1 * m2
    mu1, mu2 = m1 + DATA_RANGE / 2, m2 + DATA_RANGE / 2
    cs_map = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim_map = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs_map
    return ssim_map.flatten(2).mean(-1)[0], cs_map.flatten(2).mean(-1)[0]


def _check(ref: np.ndarray, test: np.ndarray) -> None:
    if ref.shape != test.shape or ref.ndim != 3:
        raise ValueError(f"expected two (H, W, C) arrays of one shape, got {ref.shape} and {test.shape}")
