"""The stratified-timestep estimate of the bound: its plan covers every t once, it is exact when
every t is planned, and over many seeds it is unbiased with a standard error that covers."""

import numpy as np
import pytest

from benchmarks.common.datasets import centre_crop, five_crops
from benchmarks.studies.sampled_bound import estimate_sum, make_plan


def test_plan_covers_every_timestep_once_and_draws_inside_each_stratum():
    plan = make_plan(1000, 20, 0.1, 50, seed=3)
    assert plan.exact == tuple(range(1, 21))
    covered = [t for first, last in plan.strata for t in range(first, last + 1)]
    assert covered == list(range(21, 1001))
    for (first, last), (a, b) in zip(plan.strata, plan.draws):
        assert last - first + 1 >= 2 and last - first + 1 <= 50
        assert first <= a < b <= last
    assert plan.steps == sorted(set(plan.exact) | {t for pair in plan.draws for t in pair})
    assert make_plan(1000, 20, 0.1, 50, seed=3) == plan and make_plan(1000, 20, 0.1, 50, seed=4) != plan


def test_every_timestep_planned_gives_the_exact_sum():
    terms = np.random.default_rng(0).random(50)
    total, se = estimate_sum(terms, make_plan(50, 50, 0.1, 50, seed=0))
    assert total == pytest.approx(terms.sum(), rel=1e-12) and se == 0.0


def test_unbiased_over_seeds_and_the_standard_error_covers():
    """A bound-like curve (L_0 large, then terms falling like 1/t, plus per-t noise): the mean
    of 600 estimates is the exact sum within 4 standard errors of that mean, and about 95 % of
    the estimates lie within 2 of their own reported standard errors."""
    rng = np.random.default_rng(1)
    t = np.arange(1, 1001)
    terms = np.where(t == 1, 2.0, 0.4 / t) * (1 + 0.3 * rng.standard_normal(1000))
    exact = terms.sum()
    runs = np.array([estimate_sum(terms, make_plan(1000, 5, 0.2, 50, seed)) for seed in range(600)])
    estimates, errors = runs[:, 0], runs[:, 1]
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(runs))
    assert estimates.std() > 0
    assert np.mean(np.abs(estimates - exact) <= 2 * errors) > 0.85


def test_five_crops_are_the_centre_and_the_quadrants():
    rgb = np.random.default_rng(2).integers(0, 256, (512, 768, 3), dtype=np.uint8)
    crops = five_crops(rgb, 64)
    assert len(crops) == 5 and all(c.shape == (64, 64, 3) for c in crops)
    assert np.array_equal(crops[0], centre_crop(rgb, 64))
    assert np.array_equal(crops[1], rgb[128 - 32:128 + 32, 192 - 32:192 + 32])
    assert np.array_equal(crops[4], rgb[384 - 32:384 + 32, 576 - 32:576 + 32])
    assert len({c.tobytes() for c in crops}) == 5
