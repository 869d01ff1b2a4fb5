"""The paper's rate/distortion split of a model on a data set (its §4.3 and Table 4).

Runs :func:`~diffcodec.bound.evaluate_bound` over batches on the model's device (several
timesteps per network call if asked) and reduces the per-image terms to bits per dimension:
rate = L_T + Σ_{t≥2} KL_t, distortion = L_0, and the RMSE of x̂_0 on [0, 255] (√ of the
data-set mean MSE × 127.5) at every t, for both reverse variances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .bound import BoundTerms, evaluate_bound, variance_key
from .checkpoint import Model
from .data import to_model_range
from .diffusion import ReverseVariance

OPTIMAL = "optimal"  # the name of the bound under the model's optimal reverse variances (diffcodec.variances)

# The paper's CIFAR-10 test figures (bits/dim; RMSE on [0, 255]), for side-by-side printing.
PAPER_CIFAR10 = {"rate_bits_per_dim": 1.78, "distortion_bits_per_dim": 1.97, "total_bits_per_dim": 3.75,
                 "rmse_0_255": 0.95}


PIXELS_PER_CALL = 512 * 32 * 32  # what auto_steps_per_call aims a network call at


def auto_steps_per_call(batch_size: int, height: int, width: int, steps: int = 1000) -> int:
    """Timesteps per network call that put about 512 CIFAR-sized images through the network at
    once (1 when a batch alone is that large): enough to keep a GPU busy with a small network."""
    return max(1, min(steps, PIXELS_PER_CALL // (batch_size * height * width)))


@dataclass
class DatasetBound:
    """Per-image terms of a whole data set, concatenated over batches."""

    prior_bits: np.ndarray  # (N,)
    step_bits: dict[str, np.ndarray]  # (N, T); column 0 is L_0; keys: ReverseVariance values, "optimal"
    mse: np.ndarray  # (N, T)
    dims: int

    @property
    def images(self) -> int:
        return int(self.prior_bits.shape[0])

    @property
    def variances(self) -> list[str]:
        return list(self.step_bits)

    def split(self, variance: str) -> dict:
        """Data-set means in bits/dim, and RMSE of x̂_0 from x_1."""
        bits = self.step_bits[variance_key(variance)]
        rate = (self.prior_bits + bits[:, 1:].sum(1)).mean() / self.dims
        distortion = bits[:, 0].mean() / self.dims
        return {"rate_bits_per_dim": float(rate), "distortion_bits_per_dim": float(distortion),
                "total_bits_per_dim": float(rate + distortion), "rmse_0_255": float(self.rmse_0_255()[0])}

    def rmse_0_255(self) -> np.ndarray:
        """RMSE of clipped x̂_0 from x_t for t = 1..T, on [0, 255]."""
        return np.sqrt(self.mse.mean(0)) * 127.5

    def cumulative_rate(self, variance: str) -> np.ndarray:
        """Bits/dim sent after n reverse steps, n = 1..T (Table 4's rate column).

        After n steps the receiver holds x_{T−n+1}: it has L_T and the KL terms of t = T−n+2..T.
        """
        kl = self.step_bits[variance_key(variance)][:, 1:].mean(0) / self.dims  # t = 2..T
        tail_sums = np.concatenate([[0.0], np.cumsum(kl[::-1])])  # Σ over the last n−1 KL terms
        return self.prior_bits.mean() / self.dims + tail_sums

    def report(self, primary: str) -> dict:
        """The JSON document of ``diffcodec nll``: the primary split at top level, both variances,
        per-t arrays (index t−1) and per-image totals."""
        primary = variance_key(primary)
        if primary not in self.step_bits:
            raise ValueError(f"no bound for variance {primary!r} (have {', '.join(self.step_bits)})")
        doc = {**self.split(primary), "variance": primary, "images": self.images, "dims": self.dims}
        doc["by_variance"] = {}
        for v, bits in self.step_bits.items():
            doc["by_variance"][v] = {
                **self.split(v),
                "step_bits_per_dim": (bits.mean(0) / self.dims).tolist(),
                "cumulative_rate_bits_per_dim": self.cumulative_rate(v).tolist(),
                "per_image_rate_bits_per_dim": ((self.prior_bits + bits[:, 1:].sum(1)) / self.dims).tolist(),
                "per_image_distortion_bits_per_dim": (bits[:, 0] / self.dims).tolist(),
            }
        doc["prior_bits_per_dim"] = float(self.prior_bits.mean() / self.dims)
        doc["rmse_0_255_by_t"] = self.rmse_0_255().tolist()
        return doc


def nll_document(result: DatasetBound, model: Model, variance: str, **facts) -> dict:
    """The JSON document of ``diffcodec nll`` and of the reports' stored bounds: the bound under
    ``variance`` at top level (:meth:`DatasetBound.report`), the model's error table (with the
    totals at ±1 standard error when they were evaluated), the model, and ``facts`` of the run."""
    doc = result.report(variance)
    table = model.error_table
    if table is not None:
        doc["optimal_table"] = {"sha256": table.sha256, "meta": table.meta}
        margins = [doc["by_variance"].pop(f"{OPTIMAL}{d}", None) for d in ("-1se", "+1se")]
        if all(m is not None for m in margins):
            doc["optimal_table"] |= {"total_bits_per_dim_at_minus_1se": margins[0]["total_bits_per_dim"],
                                     "total_bits_per_dim_at_plus_1se": margins[1]["total_bits_per_dim"]}
    return doc | {"model": model.name, "model_sha256": model.weights_sha256, "clip_denoised": True} | facts


def network_function(model: Model, bf16: bool = False):
    """The model's ε-predictor, under bfloat16 autocast on its device if ``bf16``."""
    if not bf16:
        return model.eps_fn
    device_type = next(model.net.parameters()).device.type

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return model.eps_fn(x, t)

    return eps_fn


def evaluate_dataset(
    model: Model,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    seed: int = 0,
    clip_denoised: bool = True,
    progress: bool = True,
    steps_per_call: int = 1,
    bf16: bool = False,
    steps=None,
    error_table=None,
    error_margin: bool = False,
) -> DatasetBound:
    """The bound's terms for every image of a uint8 stack (N, C, H, W).

    Batches of ``batch_size`` images go through the network ``steps_per_call`` timesteps at a
    time (see :func:`~diffcodec.bound.evaluate_bound`); each batch's terms come back to the host
    once. ``bf16`` runs the network under bfloat16 autocast (faster on GPUs, ε̂ rounded to about
    3 significant digits); the bound's own arithmetic is float64 either way. ``steps`` restricts
    the evaluation to some timesteps (the others stay NaN). With an ``error_table``
    (:class:`~diffcodec.variances.ErrorTable`, estimated on training data) the bound under its
    optimal variances is evaluated too, as ``"optimal"``; ``error_margin`` adds the bounds under the
    table moved by ∓1 standard error (``"optimal-1se"``, ``"optimal+1se"``): the estimate's own
    Monte Carlo error as it reaches the bound.
    """
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {tuple(images.shape)} {images.dtype}")
    diffusion = model.diffusion()
    device = next(model.net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = math.ceil(images.shape[0] / batch_size)
    eps_fn = network_function(model, bf16)
    parts: list[BoundTerms] = []
    extra = {}
    if error_table is not None:
        extra[OPTIMAL] = error_table.variances(diffusion.schedule)
        if error_margin:
            extra[OPTIMAL + "-1se"] = error_table.shifted(-1).variances(diffusion.schedule)
            extra[OPTIMAL + "+1se"] = error_table.shifted(+1).variances(diffusion.schedule)
    count = diffusion.num_steps if steps is None else len(set(int(k) for k in steps))
    with tqdm(total=batches * count, disable=not progress, desc="bound", unit="step",
              dynamic_ncols=True) as bar:
        for b in range(batches):
            x0 = to_model_range(images[b * batch_size : (b + 1) * batch_size].to(device))
            bar.set_postfix(batch=f"{b + 1}/{batches}")
            parts.append(evaluate_bound(diffusion, eps_fn, x0, clip_denoised=clip_denoised, generator=generator,
                                        progress=lambda: bar.update(1), steps_per_call=steps_per_call, steps=steps,
                                        variances=extra))
    return DatasetBound(
        prior_bits=np.concatenate([p.prior_bits for p in parts]),
        step_bits={v: np.concatenate([p.step_bits[v] for p in parts]) for v in parts[0].step_bits},
        mse=np.concatenate([p.mse for p in parts]),
        dims=parts[0].dims,
    )
