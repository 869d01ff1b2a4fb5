"""Bjøntegaard delta rate: the average rate difference between two rate–distortion curves over
the quality range they share, from the ``bjontegaard`` package's piecewise cubic (PCHIP)
interpolation of log rate against quality, the method of the video-coding common test conditions.

Our curve conventions stay here: which points count, what a curve needs, and None where the
quality ranges do not overlap (the package would warn and give NaN)."""

from __future__ import annotations

import bjontegaard
import numpy as np


def _curve(rate, quality) -> tuple[np.ndarray, np.ndarray]:
    """The points of a curve that count (finite quality, positive rate), in increasing quality;
    points of equal quality are merged at the mean of their log rates (PCHIP needs a function)."""
    rate, quality = np.asarray(rate, float), np.asarray(quality, float)
    keep = np.isfinite(quality) & (rate > 0)
    quality, at = np.unique(quality[keep], return_inverse=True)
    if quality.size < 2:
        raise ValueError("a curve needs at least two finite points of different quality")
    log_rate = np.bincount(at, np.log(rate[keep])) / np.bincount(at)
    return np.exp(log_rate), quality


def bd_rate(rate_ref, quality_ref, rate_test, quality_test) -> float | None:
    """Percent rate change of ``test`` against ``ref`` at equal quality (negative: ``test`` is
    smaller). Each curve needs ≥ 2 points (two: linear in log rate); None when the quality
    ranges do not overlap."""
    (rate_ref, quality_ref), (rate_test, quality_test) = _curve(rate_ref, quality_ref), _curve(rate_test, quality_test)
    if min(quality_ref[-1], quality_test[-1]) <= max(quality_ref[0], quality_test[0]):
        return None
    return float(bjontegaard.bd_rate(rate_ref, quality_ref, rate_test, quality_test, method="pchip",
                                     require_matching_points=False, min_overlap=0))


def overlap(quality_a, quality_b) -> tuple[float, float] | None:
    """The shared quality interval of two curves, or None."""
    low, high = max(np.min(quality_a), np.min(quality_b)), min(np.max(quality_a), np.max(quality_b))
    return (float(low), float(high)) if high > low else None
