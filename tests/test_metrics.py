"""diffcodec.quality: PSNR by hand, MS-SSIM against pytorch_msssim, the small-image convention."""

import math

import numpy as np
import pytest
import torch

from diffcodec.quality import WEIGHTS, ms_ssim_convention, ms_ssim_rgb, psnr_rgb


def smooth_image(h, w, seed=0):
    """A textured, image-like uint8 array (smooth gradients plus detail)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(x / (7 + 3 * c) + y / (11 + c)) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def noisy(img, sigma, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_psnr_by_hand():
    ref = np.zeros((2, 2, 3), np.uint8)
    test = ref.copy()
    test[0, 0, 0] = 10  # one of 12 values off by 10: MSE = 100/12
    assert psnr_rgb(ref, test) == pytest.approx(10 * math.log10(255**2 * 12 / 100), abs=1e-12)
    assert psnr_rgb(ref, ref) == math.inf
    full = np.full((4, 4, 3), 255, np.uint8)
    assert psnr_rgb(full, np.zeros_like(full)) == pytest.approx(0.0, abs=1e-12)


def test_ms_ssim_matches_pytorch_msssim():
    reference = pytest.importorskip("pytorch_msssim")
    a = smooth_image(192, 192)
    b = noisy(a, 15)
    as_tensor = lambda z: torch.from_numpy(z.astype(np.float64)).permute(2, 0, 1)[None]  # noqa: E731
    expected = float(reference.ms_ssim(as_tensor(a), as_tensor(b), data_range=255))
    assert ms_ssim_convention(192, 192).standard
    assert ms_ssim_rgb(a, b) == pytest.approx(expected, abs=1e-4)
    assert abs(ms_ssim_rgb(a, b) - expected) < 1e-5


@pytest.mark.parametrize("size", [32, 192])
def test_identical_is_one_and_more_noise_is_lower(size):
    a = smooth_image(size, size)
    assert ms_ssim_rgb(a, a) == pytest.approx(1.0, abs=1e-9)
    values = [ms_ssim_rgb(a, noisy(a, s)) for s in (2, 8, 30)]
    assert values[0] > values[1] > values[2]


def test_small_image_convention():
    conv = ms_ssim_convention(32, 32)
    assert (conv.scales, conv.window, conv.sigma) == (2, 11, 1.5)
    assert sum(conv.weights) == pytest.approx(1.0)
    assert conv.weights[0] / conv.weights[1] == pytest.approx(WEIGHTS[0] / WEIGHTS[1])
    assert "small-image convention" in conv.describe()
    assert ms_ssim_convention(161, 400).scales == 5 and ms_ssim_convention(160, 400).scales == 4
    assert ms_ssim_convention(161, 400).weights == WEIGHTS
    with pytest.raises(ValueError):
        ms_ssim_convention(10, 64)
    a, b = smooth_image(32, 32), noisy(smooth_image(32, 32), 20)
    v = ms_ssim_rgb(a, b)
    assert 0 < v <= 1
    assert ms_ssim_rgb(b, a) == pytest.approx(v, abs=1e-12)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        psnr_rgb(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError):
        ms_ssim_rgb(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))
