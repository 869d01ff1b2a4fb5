"""Optimal reverse variances: on Gaussian data the best ε-predictor, its error e_t and the optimal
σ² are closed forms, and the estimator must find them within its stated Monte Carlo error; the
optimum beats both fixed variances in the bound; the table's file round-trips and guards itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffcodec.checkpoint import Model
from diffcodec.errors import CheckpointError
from diffcodec.nll import OPTIMAL, evaluate_dataset
from diffcodec.schedule import ScheduleConfig
from diffcodec.variance_estimation import default_grid, estimate, interpolate, table_from_samples
from diffcodec.variances import ErrorTable

S = 0.25  # standard deviation of the data on the [−1, 1] scale
SCHEDULE = ScheduleConfig()


class GaussianOptimal(Model):
    """The exact posterior-mean predictor for x_0 ~ N(0, S²): x̂_0 = √ᾱ S²/(ᾱ S² + 1 − ᾱ) · x_t."""

    def __init__(self):
        super().__init__(torch.nn.Linear(1, 1), SCHEDULE, "gaussian-optimal", "0" * 64)
        self.abar = torch.from_numpy(SCHEDULE.build().alphas_cumprod)

    def eps_fn(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar[t.cpu()].to(torch.float64).view(-1, 1, 1, 1)
        x = x.to(torch.float64)
        x0_hat = abar.sqrt() * S**2 / (abar * S**2 + 1 - abar) * x
        return ((x - abar.sqrt() * x0_hat) / (1 - abar).sqrt()).to(torch.float32)


def closed_form_error(t: np.ndarray, s2: float) -> np.ndarray:
    """e_t of the posterior mean: the posterior variance s²(1 − ᾱ)/(ᾱ s² + 1 − ᾱ)."""
    abar = SCHEDULE.build().alphas_cumprod[np.asarray(t) - 1]
    return s2 * (1 - abar) / (abar * s2 + 1 - abar)


def gaussian_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    x = np.random.default_rng(seed).normal(0, S, (n, 3, size, size))
    return torch.from_numpy(np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def table():
    grid = np.array([1, 2, 5, 10, 20, 50, 100, 200, 400, 700, 1000])
    return estimate(GaussianOptimal(), gaussian_images(48), grid=grid, batch_size=16, steps_per_call=11,
                    progress=False)


def test_estimator_recovers_the_closed_form_error_within_its_stated_error(table):
    grid = np.array(table.meta["grid"])
    s2 = float(((gaussian_images(48).double() / 127.5 - 1) ** 2).mean())  # the data's own variance
    truth = closed_form_error(grid, s2)
    got, err = table.mse[grid - 1], table.stderr[grid - 1]
    assert np.all(err > 0)
    z = (got - truth) / err
    assert np.all(np.abs(z) < 4.5), z
    assert table.meta["relative_stderr_max"] < 0.1  # 48 images of 192 dims pin e_t to a few per cent


def test_optimal_variances_are_the_closed_form_and_never_below_posterior(table):
    schedule = SCHEDULE.build()
    sigma2 = table.variances(schedule)
    expected = schedule.posterior_variance + schedule.posterior_mean_coef_x0**2 * table.mse
    np.testing.assert_allclose(sigma2, expected, rtol=0, atol=0)
    assert np.all(sigma2 >= schedule.posterior_variance) and sigma2[0] == table.mse[0]  # t = 1: the decoder's
    respaced = schedule.respace([1000, 500, 100, 20, 5])
    s = respaced.posterior_variance + respaced.posterior_mean_coef_x0**2 * table.mse[respaced.timesteps - 1]
    np.testing.assert_array_equal(table.variances(respaced), s)


def test_the_optimum_beats_both_fixed_variances(table):
    result = evaluate_dataset(GaussianOptimal(), gaussian_images(16, seed=1), batch_size=16, progress=False,
                              steps_per_call=50, error_table=table)
    totals = {v: result.split(v)["total_bits_per_dim"] for v in result.variances}
    assert set(totals) == {"fixedlarge", "fixedsmall", OPTIMAL}
    assert totals[OPTIMAL] < totals["fixedsmall"] and totals[OPTIMAL] < totals["fixedlarge"]
    rate = {v: result.split(v)["rate_bits_per_dim"] for v in result.variances}
    assert rate[OPTIMAL] < min(rate["fixedsmall"], rate["fixedlarge"])


def test_interpolation_is_exact_on_power_laws_and_keeps_grid_values():
    grid = np.array([1, 3, 10, 40, 100])
    values = 2.0 * grid.astype(float) ** 0.7
    full = interpolate(grid, values, 100)
    np.testing.assert_allclose(full, 2.0 * np.arange(1, 101) ** 0.7, rtol=1e-12)
    g = default_grid(1000)
    assert g[0] == 1 and g[-1] == 1000 and np.all(np.diff(g) > 0) and set(range(1, 21)) <= set(g.tolist())


def test_table_file_round_trip_and_hash(tmp_path, table):
    path = tmp_path / "reverse_variances.json"
    table.save(path)
    back = ErrorTable.load(path)
    assert np.array_equal(back.mse, table.mse) and back.sha256 == table.sha256 and len(back.short_hash) == 4
    doc = json.loads(path.read_text())
    doc["mse"][10] = float.hex(float.fromhex(doc["mse"][10]) * 1.0000001)
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match its own hash"):
        ErrorTable.load(path)
    path.write_text("{}")
    with pytest.raises(CheckpointError, match="not a valid reverse-variance table"):
        ErrorTable.load(path)


def test_table_from_samples_needs_two_images_and_reports_its_error():
    with pytest.raises(ValueError):
        table_from_samples(np.array([1, 2]), np.ones((1, 2)), 2, {})
    samples = np.array([[1.0, 2.0], [3.0, 6.0]])
    t = table_from_samples(np.array([1, 2]), samples, 2, {})
    np.testing.assert_allclose(t.mse, [2.0, 4.0])
    np.testing.assert_allclose(t.stderr, [math.sqrt(2) / math.sqrt(2), math.sqrt(8) / math.sqrt(2)])
    assert t.meta["images"] == 2
