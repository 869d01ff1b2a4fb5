"""The forward-process schedule: linear β, derived coefficients, respacing, validation.

Every check compares against an independent recomputation from the paper's definitions
(β_t linear 1e-4..0.02, α_t = 1 − β_t, ᾱ_t = ∏ α_s), not against the module's own arrays.
"""

import numpy as np
import pytest

from diffcodec.schedule import Schedule, ScheduleConfig, ScheduleKind

T = 1000
BETAS = np.linspace(1e-4, 0.02, T, dtype=np.float64)  # the paper's schedule, recomputed here
ABAR = np.cumprod(1.0 - BETAS)

COEFFICIENTS = (
    "alphas_cumprod", "alphas_cumprod_prev", "alphas", "betas", "posterior_variance",
    "posterior_mean_coef_x0", "posterior_mean_coef_xt", "timesteps",
)


@pytest.fixture(scope="module")
def sched() -> Schedule:
    return ScheduleConfig().build()


def test_default_config_is_the_paper_schedule():
    cfg = ScheduleConfig()
    assert (cfg.kind, cfg.num_timesteps, cfg.beta_start, cfg.beta_end) == (ScheduleKind.LINEAR, 1000, 1e-4, 0.02)
    assert ScheduleConfig.from_dict(cfg.to_dict()) == cfg
    assert ScheduleConfig.from_dict({"kind": "linear", "num_timesteps": 10, "beta_start": 0.1, "beta_end": 0.2}) \
        == ScheduleConfig(ScheduleKind.LINEAR, 10, 0.1, 0.2)


def test_linear_betas_float64(sched):
    assert len(sched) == sched.num_steps == T
    for name in COEFFICIENTS[:-1]:
        arr = getattr(sched, name)
        assert arr.dtype == np.float64 and arr.shape == (T,), name
    np.testing.assert_array_equal(sched.timesteps, np.arange(1, T + 1))
    # ᾱ is the cumulative product itself (bit-identical); β is recovered as 1 − ᾱ_k/ᾱ_{k−1},
    # which loses ~1 ulp of α (≈1.1e-16 absolute) per step: 1e-14 absolute is ample yet far below
    # the 2e-5 spacing of consecutive β.
    np.testing.assert_array_equal(sched.alphas_cumprod, ABAR)
    np.testing.assert_allclose(sched.betas, BETAS, rtol=0, atol=1e-14)
    assert sched.betas[0] == pytest.approx(1e-4, abs=1e-15)
    assert sched.betas[-1] == pytest.approx(0.02, abs=1e-14)
    # float32 would make ᾱ_T wrong in the 4th digit; pin its float64 value.
    assert sched.alphas_cumprod[-1] == pytest.approx(4.035829e-05, rel=1e-6)


def test_derived_coefficients_against_direct_formulas(sched):
    abar_prev = np.concatenate([[1.0], ABAR[:-1]])
    alphas = 1.0 - BETAS
    np.testing.assert_array_equal(sched.alphas_cumprod_prev, abar_prev)
    np.testing.assert_allclose(sched.alphas, alphas, rtol=1e-14)
    # Eqs. 6-7 of the paper, term by term.
    np.testing.assert_allclose(sched.posterior_variance, (1 - abar_prev) / (1 - ABAR) * BETAS, rtol=1e-10, atol=0)
    np.testing.assert_allclose(sched.posterior_mean_coef_x0, np.sqrt(abar_prev) * BETAS / (1 - ABAR), rtol=1e-10)
    np.testing.assert_allclose(
        sched.posterior_mean_coef_xt, np.sqrt(alphas) * (1 - abar_prev) / (1 - ABAR), rtol=1e-10, atol=0
    )
    assert sched.posterior_variance[0] == 0.0  # q(x_0|x_1, x_0) is a point mass
    assert sched.posterior_mean_coef_x0[0] == pytest.approx(1.0, abs=1e-15)
    assert sched.posterior_mean_coef_xt[0] == 0.0
    # Tower property: averaging μ̃_k = c0·x_0 + ct·x_k over x_k ~ q(x_k|x_0) must give
    # E[x_{k−1}|x_0] = √ᾱ_{k−1} x_0, i.e. c0 + ct·√ᾱ_k = √ᾱ_{k−1}.
    np.testing.assert_allclose(
        sched.posterior_mean_coef_x0 + sched.posterior_mean_coef_xt * np.sqrt(ABAR), np.sqrt(abar_prev), rtol=1e-12
    )
    # β̃_k < β_k for k ≥ 2 and both in (0, 1).
    assert np.all(sched.posterior_variance[1:] < sched.betas[1:])
    assert np.all(sched.posterior_variance[1:] > 0)


def test_other_configs_build_their_own_schedule():
    s = ScheduleConfig(num_timesteps=7, beta_start=0.1, beta_end=0.4).build()
    np.testing.assert_allclose(s.betas, np.linspace(0.1, 0.4, 7), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(s.timesteps, np.arange(1, 8))
    one = ScheduleConfig(num_timesteps=1, beta_start=0.3, beta_end=0.3).build()
    assert len(one) == 1 and one.betas[0] == pytest.approx(0.3, abs=1e-15)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_timesteps": 0},
        {"beta_start": 0.0},
        {"beta_start": -1e-4},
        {"beta_start": 0.03, "beta_end": 0.02},
        {"beta_end": 1.0},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ScheduleConfig(**kwargs)


def test_config_rejects_unknown_kind():
    with pytest.raises(ValueError):
        ScheduleConfig(kind="cosine")


def test_respace_all_steps_is_identity(sched):
    for ts in (np.arange(1, T + 1), np.arange(T, 0, -1), list(range(1, T + 1))):
        r = sched.respace(ts)
        for name in COEFFICIENTS:
            np.testing.assert_array_equal(getattr(r, name), getattr(sched, name), err_msg=name)


@pytest.mark.parametrize(
    "kept",
    [
        [1, 2, 3, 10, 11, 500, 999, 1000],
        [1000, 250, 3],  # unsorted, no t = 1
        [7],
        list(range(1, 1001, 37)),
    ],
)
def test_respace_keeps_marginals_and_gives_exact_betas(sched, kept):
    r = sched.respace(kept)
    ts = np.sort(np.asarray(kept))
    np.testing.assert_array_equal(r.timesteps, ts)
    # Marginals q(x_t|x_0) = N(√ᾱ_t x_0, 1 − ᾱ_t) are kept bit for bit.
    np.testing.assert_array_equal(r.alphas_cumprod, ABAR[ts - 1])
    # β'_k = 1 − ᾱ_{t_k}/ᾱ_{t_{k−1}} = 1 − ∏_{t_{k−1} < j ≤ t_k} (1 − β_j), with ᾱ_{t_0} = 1.
    prev = np.concatenate([[0], ts[:-1]])
    expect_beta = np.array([1.0 - np.prod(1.0 - BETAS[p:t]) for p, t in zip(prev, ts)])
    # Product of ≤1000 factors: relative error ≤ ~1000 ulp ≈ 2e-13 in α', and β' ≥ 1e-4.
    np.testing.assert_allclose(r.betas, expect_beta, rtol=1e-9, atol=0)
    # Composing the respaced steps reproduces the marginals (each respaced step is a genuine
    # Gaussian transition x_{t_k} = √α'_k x_{t_{k−1}} + √β'_k ε).
    np.testing.assert_allclose(np.cumprod(1.0 - r.betas), ABAR[ts - 1], rtol=1e-12)
    # The respaced posterior variance is that of the two-time posterior q(x_s|x_t, x_0).
    abar_s = np.concatenate([[1.0], ABAR[ts[:-1] - 1]])
    abar_t = ABAR[ts - 1]
    np.testing.assert_allclose(
        r.posterior_variance, (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s), rtol=1e-10, atol=1e-300
    )
    # A respaced chain is coarser than the original: β'_k ≥ every original β in its span.
    assert np.all(r.betas >= BETAS[ts - 1] * (1 - 1e-12))


def test_respace_of_respace(sched):
    a = sched.respace([1, 5, 9, 100, 400, 1000])
    b = a.respace([5, 400, 1000])
    c = sched.respace([5, 400, 1000])
    for name in COEFFICIENTS:
        np.testing.assert_array_equal(getattr(b, name), getattr(c, name), err_msg=name)


@pytest.mark.parametrize("count", [2, 3, 4, 10, 17, 50, 100, 333, 999, 1000])
def test_evenly_spaced(sched, count):
    r = sched.evenly_spaced(count)
    assert len(r) == count
    assert r.timesteps[0] == 1 and r.timesteps[-1] == T
    assert np.all(np.diff(r.timesteps) > 0)
    gaps = np.diff(r.timesteps)
    ideal = (T - 1) / (count - 1)
    assert gaps.min() >= np.floor(ideal) and gaps.max() <= np.ceil(ideal)
    np.testing.assert_array_equal(r.alphas_cumprod, ABAR[r.timesteps - 1])


def test_evenly_spaced_edge_counts(sched):
    np.testing.assert_array_equal(sched.evenly_spaced(1).timesteps, [T])
    np.testing.assert_array_equal(sched.evenly_spaced(2).timesteps, [1, T])
    np.testing.assert_array_equal(sched.evenly_spaced(T).alphas_cumprod, sched.alphas_cumprod)
    for bad in (0, -3, T + 1):
        with pytest.raises(ValueError):
            sched.evenly_spaced(bad)


@pytest.mark.parametrize(
    "ts",
    [
        [1, 5, 5],  # repeat
        [3, 3],
        [0, 10],  # t = 0 is not a step
        [10, 1001],  # beyond T
        [-1],
    ],
)
def test_respace_rejects_bad_timesteps(sched, ts):
    with pytest.raises(ValueError):
        sched.respace(ts)


def test_respace_rejects_steps_missing_from_a_respaced_chain(sched):
    r = sched.respace([1, 10, 100])
    with pytest.raises(ValueError):
        r.respace([1, 50])


@pytest.mark.parametrize(
    "abar, ts",
    [
        ([0.9, 0.9, 0.5], [1, 2, 3]),  # not strictly decreasing
        ([0.5, 0.9], [1, 2]),  # increasing
        ([1.0, 0.5], [1, 2]),  # ᾱ = 1
        ([0.5, 0.0], [1, 2]),  # ᾱ = 0
        ([0.5, -0.1], [1, 2]),
        ([0.9, 0.5], [2, 1]),  # timesteps decreasing
        ([0.9, 0.5], [1, 1]),  # timesteps repeat
        ([0.9, 0.5], [0, 1]),  # timestep 0
        ([0.9, 0.5], [1, 2, 3]),  # length mismatch
        ([], []),  # empty
        ([[0.9, 0.5]], [[1, 2]]),  # not 1-D
    ],
)
def test_schedule_rejects_invalid_chains(abar, ts):
    with pytest.raises(ValueError):
        Schedule(np.array(abar, dtype=np.float64), np.array(ts, dtype=np.int64))
