"""The model's bound on the report's images, by the paper's method (``diffcodec nll``), as the
JSON document that command writes; reused from a file when it covers the same model and images.

With the model's error table the document also holds the bound under the optimal reverse
variances (``"optimal"``).  A stored document made before that gets it added: its rate terms are
exact functions of the stored per-t mean squared errors (the KL is linear in them for a fixed
variance), and L_0 under σ*₁² is evaluated on a fresh x_1 draw (``add_optimal``).

``ideal_curve`` turns a document into the model's own rate–distortion curve, the one real files
are measured against (BD-rate of files against it: "how much of the model's curve they reach")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from diffcodec.checkpoint import Model
from diffcodec.diffusion import ReverseVariance
from diffcodec.nll import OPTIMAL, evaluate_dataset, nll_document

from . import datasets, report
from .datasets import EvalImage
from diffcodec.quality import psnr_from_rmse

IDEAL_POINTS = 30  # samples of the ideal curve, evenly spaced in PSNR
PSNR_WINDOW = (15.0, 45.0)  # dB: the range of interest of an ideal curve
VARIANCE_SYMBOLS = {OPTIMAL: "σ*²", "fixedlarge": "σ² = β", "fixedsmall": "σ² = β̃"}


def bound_document(model: Model, images: list[np.ndarray], cache: Path | None = None,
                   batch_size: int = 64) -> dict:
    """``diffcodec nll``'s JSON for ``images`` (uint8 H×W×3, one size); read from ``cache`` if
    it was made with the same weights on as many images, else computed (and written there)."""
    stack = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    table = model.error_table
    if cache is not None and cache.exists():
        doc = json.loads(cache.read_text())
        if doc.get("model_sha256") == model.weights_sha256 and doc.get("images") == len(images):
            stored = doc.get("optimal_table", {}).get("sha256")
            if table is None or stored == table.sha256:
                return doc
            doc = add_optimal(doc, model, stack, batch_size)
            cache.write_text(json.dumps(doc) + "\n")
            return doc
    bound = evaluate_dataset(model, stack, batch_size=batch_size, seed=0, error_table=table)
    doc = nll_document(bound, model, ReverseVariance.FIXED_LARGE, seed=0)
    if cache is not None:
        cache.write_text(json.dumps(doc) + "\n")
    return doc


def add_optimal(doc: dict, model: Model, stack: torch.Tensor, batch_size: int = 64) -> dict:
    """``doc`` with the bound under the model's optimal variances added (see the module docstring)."""
    table = model.error_table
    schedule = model.diffusion().schedule
    mse = (np.asarray(doc["rmse_0_255_by_t"]) / 127.5) ** 2
    post, coef = schedule.posterior_variance, schedule.posterior_mean_coef_x0

    def step_kl(var: np.ndarray) -> np.ndarray:  # bits/dim of steps 2..T under variances ``var``
        return 0.5 * (np.log(var[1:] / post[1:]) + (post[1:] + coef[1:] ** 2 * mse[1:]) / var[1:] - 1) / math.log(2)

    kl = np.zeros_like(mse)  # bits/dim per step; column 0 (L_0) filled below
    kl[1:] = step_kl(table.variances(schedule))
    moved = [float(step_kl(table.shifted(d).variances(schedule)).sum() - kl[1:].sum()) for d in (-1, 1)]
    first = evaluate_dataset(model, stack, batch_size=batch_size, seed=1, steps=[1], error_table=table,
                             progress=False)
    kl[0] = first.split(OPTIMAL)["distortion_bits_per_dim"]
    rate = doc["prior_bits_per_dim"] + float(kl[1:].sum())
    tail = np.concatenate([[0.0], np.cumsum(kl[1:][::-1])])
    doc = dict(doc)
    doc["by_variance"] = dict(doc["by_variance"]) | {OPTIMAL: {
        "rate_bits_per_dim": rate, "distortion_bits_per_dim": float(kl[0]), "total_bits_per_dim": rate + float(kl[0]),
        "rmse_0_255": doc["rmse_0_255"], "step_bits_per_dim": kl.tolist(),
        "cumulative_rate_bits_per_dim": (doc["prior_bits_per_dim"] + tail).tolist(),
        "distortion_note": "L_0 on a separate x_1 draw (seed 1); the same draw gives "
                           f"{first.split('fixedlarge')['distortion_bits_per_dim']:.4f} under the fixed decoder variance"}}
    doc["optimal_table"] = {"sha256": table.sha256, "meta": table.meta, "added_to_a_stored_bound": True,
                            "rate_change_at_minus_1se": moved[0], "rate_change_at_plus_1se": moved[1]}
    return doc


def cache_path(folder: Path, model: Model, images: int, complete: bool, crop: int | None = None) -> Path:
    """Where a report keeps the bound of its images: ``nll_<model>.json`` for a whole data set,
    ``nll_<model>_first<N>.json`` for its first N images (``-c<crop>`` for crops)."""
    suffix = f"-c{crop}" if crop else ""
    return folder / (f"nll_{model.name}{suffix}.json" if complete else f"nll_{model.name}_first{images}{suffix}.json")


def report_bound(model: Model, images: list[EvalImage], dataset: str, crop: int | None = None,
                 quick: bool = False) -> dict:
    """The bound of a report's ``images`` (one size), kept as ``bound_document`` keeps it: for the
    whole data set in ``results/<dataset>/`` (shared with ``benchmarks.split``), else in a
    first-N file beside the report."""
    whole = len(images) == len(datasets.load(dataset, None, crop))
    if whole and not quick:
        path = cache_path(report.results_dir(dataset), model, 0, True, crop)
    else:
        path = cache_path(report.results_dir(dataset, quick), model, len(images), False, crop)
    return bound_document(model, [im.rgb for im in images], path)


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


def ideal_curve(doc: dict, variance: str = OPTIMAL, span=None, points: int = IDEAL_POINTS,
                low: float = PSNR_WINDOW[0], high: float = PSNR_WINDOW[1]) -> dict:
    """The model's ideal rate–distortion curve: once x_t is held (t = T … 1), the bound's cumulative
    rate (bpp = 3 · bits/dim) against the PSNR of the pooled RMSE of x̂_0 at t (the PSNR of the mean
    MSE over images: compare it with points of that convention).  Under ``variance`` (σ*², those
    the files are coded with), or σ² = β where the document has no such rates (``"variance"`` says
    which).  Resampled at ``points`` PSNRs evenly spaced (in PSNR, not in steps) over the curve's
    range within [low, high] dB, narrowed to that of the PSNRs in ``span`` (the curves it is set
    against) where given."""
    if variance not in doc["by_variance"]:
        variance = "fixedlarge"
    rate = 3 * np.asarray(doc["by_variance"][variance]["cumulative_rate_bits_per_dim"])  # held x_T, x_{T−1}, …
    psnr = psnr_from_rmse(np.asarray(doc["rmse_0_255_by_t"])[::-1])  # of x̂_0 from x_T, x_{T−1}, …
    lo, hi = max(low, psnr.min()), min(high, psnr.max())
    if span is not None:
        span = np.concatenate([np.ravel(s) for s in span])
        lo, hi = max(lo, span.min()), min(hi, span.max())
    order = np.argsort(psnr)
    grid = np.linspace(lo, hi, points)
    return {"bpp": np.interp(grid, psnr[order], rate[order]).tolist(), "psnr": grid.tolist(), "variance": variance,
            "label": f"model's ideal curve (bound, {VARIANCE_SYMBOLS[variance]})", "psnr_convention": "pooled MSE"}


def describe_ideal(ideal: dict, images: int, source: str) -> str:
    """A report's sentence on what its ideal curve is (``source``: where its bound came from)."""
    return (f"The {ideal['label']}: the bound of the same {images} images ({source}), its cumulative rate once "
            f"x_t is held against the PSNR of x̂_0 there (of the pooled MSE over images), at {len(ideal['psnr'])} "
            f"points evenly spaced in PSNR over {ideal['psnr'][0]:.2f}–{ideal['psnr'][-1]:.2f} dB (the range of "
            f"the curves it is set against, within {PSNR_WINDOW[0]:g}–{PSNR_WINDOW[1]:g} dB)"
            + ("" if ideal["variance"] == OPTIMAL else "; the bound has no σ*² rates (no error table), so σ² = β")
            + ".")
