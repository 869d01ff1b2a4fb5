"""The model's bound on the report's images, by the paper's method (``diffcodec nll``), as the
JSON document that command writes; reused from a file when it covers the same model and images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from diffcodec.checkpoint import Model
from diffcodec.diffusion import ReverseVariance
from diffcodec.nll import evaluate_dataset


def bound_document(model: Model, images: list[np.ndarray], cache: Path | None = None,
                   batch_size: int = 64) -> dict:
    """``diffcodec nll``'s JSON for ``images`` (uint8 H×W×3, one size); read from ``cache`` if
    it was made with the same weights on as many images, else computed (and written there)."""
    if cache is not None and cache.exists():
        doc = json.loads(cache.read_text())
        if doc.get("model_sha256") == model.weights_sha256 and doc.get("images") == len(images):
            return doc
    stack = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    bound = evaluate_dataset(model, stack, batch_size=batch_size, seed=0)
    doc = bound.report(ReverseVariance.FIXED_LARGE) | {
        "model": model.name, "model_sha256": model.weights_sha256, "seed": 0, "clip_denoised": True}
    if cache is not None:
        cache.write_text(json.dumps(doc) + "\n")
    return doc


def cache_path(folder: Path, model: Model, images: int, complete: bool, crop: int | None = None) -> Path:
    """Where a report keeps the bound of its images: ``nll_<model>.json`` for a whole data set,
    ``nll_<model>_first<N>.json`` for its first N images (``-c<crop>`` for crops)."""
    suffix = f"-c{crop}" if crop else ""
    return folder / (f"nll_{model.name}{suffix}.json" if complete else f"nll_{model.name}_first{images}{suffix}.json")


def load_document(path: Path, model: Model) -> dict | None:
    """A stored bound of this model's weights, or None."""
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return doc if doc.get("model_sha256") == model.weights_sha256 else None


def rate_after(doc: dict, t: int, variance: str = "fixedlarge") -> float:
    """Cumulative rate (bits/dim) once the receiver holds x_t: T − t + 1 reverse steps done."""
    cum = doc["by_variance"][variance]["cumulative_rate_bits_per_dim"]
    return float(cum[len(cum) - t])


def rmse_at(doc: dict, t: int) -> float:
    return float(doc["rmse_0_255_by_t"][t - 1])
