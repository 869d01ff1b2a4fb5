"""Bjøntegaard delta rate (VCEG-M33): the average rate difference between two rate–distortion
curves over the quality range they share, from cubic fits of log rate against quality."""

from __future__ import annotations

import numpy as np


def bd_rate(rate_ref, quality_ref, rate_test, quality_test) -> float | None:
    """Percent rate change of ``test`` against ``ref`` at equal quality (negative: ``test`` is
    smaller). Each curve needs ≥ 2 points (cubic fits from 4, lower degree below); None when
    the quality ranges do not overlap."""
    fits, ranges = [], []
    for rate, quality in ((rate_ref, quality_ref), (rate_test, quality_test)):
        rate, quality = np.asarray(rate, float), np.asarray(quality, float)
        keep = np.isfinite(quality) & (rate > 0)
        rate, quality = rate[keep], quality[keep]
        if rate.size < 2:
            raise ValueError("a curve needs at least two finite points")
        fits.append(np.polyfit(quality, np.log(rate), min(3, rate.size - 1)))
        ranges.append((quality.min(), quality.max()))
    low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if high <= low:
        return None
    integrals = [np.polyval(np.polyint(f), high) - np.polyval(np.polyint(f), low) for f in fits]
    mean_log_ratio = (integrals[1] - integrals[0]) / (high - low)
    return float((np.exp(mean_log_ratio) - 1) * 100)


def overlap(quality_a, quality_b) -> tuple[float, float] | None:
    """The shared quality interval of two curves, or None."""
    low, high = max(np.min(quality_a), np.min(quality_b)), min(np.max(quality_a), np.max(quality_b))
    return (float(low), float(high)) if high > low else None
