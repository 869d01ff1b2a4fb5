"""The error table of optimal reverse variances (``diffcodec.variances``), estimated by running
the network over a sample of the model's training data.

e_t = E‖x_0 − x̂_0(x_t)‖² / d is measured on a grid of timesteps (``default_grid``), each from the
same images with fresh x_t ~ q(x_t|x_0) and with the bound's own evaluation (``diffcodec.nll``),
with its Monte Carlo standard error, then interpolated linearly in (log t, log e) to every t.
Apart from the table so that ``diffcodec.checkpoint`` loads a model's table without the bound,
which needs the model.
"""

from __future__ import annotations

import numpy as np
import torch

from .nll import evaluate_dataset
from .variances import ErrorTable


def default_grid(num_timesteps: int = 1000, small: int = 20, points: int = 100) -> np.ndarray:
    """Every t up to ``small`` (where e_t changes fastest and the codec's last steps are), then
    ``points`` log-spaced timesteps up to T."""
    T = int(num_timesteps)
    small = min(small, T)
    rest = np.unique(np.round(np.geomspace(small, T, points)).astype(np.int64))
    return np.unique(np.concatenate([np.arange(1, small + 1), rest, [T]]))


def interpolate(grid: np.ndarray, values: np.ndarray, num_timesteps: int) -> np.ndarray:
    """Values on a grid of timesteps → every t = 1..T, linear in (log t, log value)."""
    grid = np.asarray(grid, dtype=np.float64)
    values = np.maximum(np.asarray(values, dtype=np.float64), 1e-300)
    t = np.arange(1, num_timesteps + 1, dtype=np.float64)
    return np.exp(np.interp(np.log(t), np.log(grid), np.log(values)))


def table_from_samples(grid: np.ndarray, per_image: np.ndarray, num_timesteps: int, meta: dict) -> ErrorTable:
    """An ErrorTable from per-image squared errors (N, len(grid)) measured on ``grid``."""
    per_image = np.asarray(per_image, dtype=np.float64)
    n = per_image.shape[0]
    if n < 2:
        raise ValueError("need at least two images to estimate an error table")
    mean = per_image.mean(0)
    stderr = per_image.std(0, ddof=1) / np.sqrt(n)
    relative = stderr / np.maximum(mean, 1e-300)
    full = interpolate(grid, mean, num_timesteps)
    meta = {**meta, "images": int(n), "grid": [int(t) for t in grid],
            "relative_stderr_median": float(np.median(relative)), "relative_stderr_max": float(relative.max())}
    return ErrorTable(full, full * interpolate(grid, relative, num_timesteps), meta)


@torch.no_grad()
def estimate(model, images: torch.Tensor, *, grid: np.ndarray | None = None, batch_size: int = 64, seed: int = 0,
             steps_per_call: int = 1, meta: dict | None = None, progress: bool = True) -> ErrorTable:
    """e_t of ``model`` on uint8 ``images`` (N, C, H, W), measured on ``grid`` (default:
    :func:`default_grid`) with the bound's own evaluation (x̂_0 clipped)."""
    T = model.schedule_config.num_timesteps
    grid = default_grid(T) if grid is None else np.unique(np.asarray(grid, dtype=np.int64))
    result = evaluate_dataset(model, images, batch_size=batch_size, seed=seed, progress=progress,
                              steps_per_call=steps_per_call, steps=grid)
    info = {"model": model.name, "model_sha256": model.weights_sha256, "seed": seed,
            "image_size": list(images.shape[1:]), **(meta or {})}
    return table_from_samples(grid, result.mse[:, grid - 1], T, info)
