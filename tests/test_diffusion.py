"""Gaussian diffusion math: forward marginals, posteriors, ε-parameterisation, reverse variances.

References are computed independently here: the forward chain is simulated step by step
(Monte Carlo), posteriors come from Bayes' rule evaluated on a 1-D grid, and the reverse mean
is compared with eq. 11 of Ho et al. written out directly.
"""

import math

import numpy as np
import pytest
import torch

from diffcodec.diffusion import GaussianDiffusion, ReverseVariance

T = 1000
BETAS = np.linspace(1e-4, 0.02, T, dtype=np.float64)
ABAR = np.cumprod(1.0 - BETAS)
ABAR0 = np.concatenate([[1.0], ABAR])  # ABAR0[t] = ᾱ_t with ᾱ_0 = 1
RESPACED = [1, 2, 10, 50, 300, 999, 1000]
RESPACED_NO_T1 = [5, 100, 1000]


def _steps(ks, shape=(1, 2, 2)):
    """A batch with one image per step index in ``ks``."""
    k = torch.tensor(ks, dtype=torch.long)
    return k, (len(ks), *shape)


# ---- forward process ----------------------------------------------------------------------

def test_q_mean_std_closed_form(diff):
    ks = [1, 2, 3, 57, 500, 999, 1000]
    k, shape = _steps(ks)
    x0 = torch.linspace(-1, 1, math.prod(shape), dtype=torch.float64).reshape(shape)
    mean, std = diff.q_mean_std(x0, k)
    a = torch.from_numpy(ABAR[np.array(ks) - 1]).view(-1, 1, 1, 1)
    torch.testing.assert_close(mean, a.sqrt() * x0, rtol=1e-14, atol=0)
    torch.testing.assert_close(std.expand_as(x0), (1 - a).sqrt().expand_as(x0), rtol=1e-14, atol=0)
    # float32 inputs stay float32 (the coefficients are cast, not the images).
    m32, s32 = diff.q_mean_std(x0.float(), k)
    assert m32.dtype == torch.float32 and s32.dtype == torch.float32


def test_forward_marginal_matches_step_by_step_chain(diff):
    """q(x_t|x_0) (eq. 4) vs. iterating x_t = √(1−β_t) x_{t−1} + √β_t ε with the paper's β.

    N = 200,000 float64 scalar chains: 50,000 for each of 4 starting values. For each group the
    sample mean has standard error √(v/n) and the sample variance √(2/(n−1))·v (Gaussian), where
    v = 1 − ᾱ_t. We allow 5 standard errors (the seed is fixed, so the test is deterministic).
    The variance SE is 0.63 % of v, so an off-by-one in t (v off by 120 % at t = 1, 10 % at
    t = 10) fails here; test_q_mean_std_closed_form pins the indexing exactly.
    """
    starts = np.array([-1.0, -0.3, 0.5, 1.0])
    n = 50_000
    x = np.repeat(starts, n)
    buf = np.empty_like(x)
    rng = np.random.default_rng(20240611)
    checks = {1, 2, 10, 100, 500, 1000}
    for t in range(1, T + 1):
        rng.standard_normal(out=buf)
        x *= math.sqrt(1.0 - BETAS[t - 1])
        buf *= math.sqrt(BETAS[t - 1])
        x += buf
        if t not in checks:
            continue
        k = torch.full((len(starts),), t, dtype=torch.long)
        mean, std = diff.q_mean_std(torch.from_numpy(starts).view(-1, 1, 1, 1), k)
        groups = x.reshape(len(starts), n)
        for g in range(len(starts)):
            m, v = float(mean[g]), float(std[g]) ** 2
            se_mean = math.sqrt(v / n)
            se_var = v * math.sqrt(2.0 / (n - 1))
            assert abs(groups[g].mean() - m) < 5 * se_mean, (t, g)
            assert abs(groups[g].var(ddof=1) - v) < 5 * se_var, (t, g)


def test_respaced_steps_compose_to_the_same_marginals(sched):
    """Running the respaced chain's own transitions x_k = √α'_k x_{k−1} + √β'_k ε gives the
    original marginal q(x_t|x_0) at every kept t. 400,000 chains; 5 SE as above."""
    r = sched.respace(RESPACED_NO_T1 + [2, 37])
    n = 400_000
    x0 = 0.8
    x = np.full(n, x0)
    rng = np.random.default_rng(7)
    for k, t in enumerate(r.timesteps):
        x = math.sqrt(r.alphas[k]) * x + math.sqrt(r.betas[k]) * rng.standard_normal(n)
        v = 1 - ABAR0[t]
        assert abs(x.mean() - math.sqrt(ABAR0[t]) * x0) < 5 * math.sqrt(v / n), t
        assert abs(x.var(ddof=1) - v) < 5 * v * math.sqrt(2.0 / (n - 1)), t


# ---- posterior q(x_{k−1}|x_k, x_0) ---------------------------------------------------------

def _bayes_posterior(prior_mean, prior_var, scale, lik_var, x_t):
    """Mean and variance of p(x_s) ∝ N(x_s; prior_mean, prior_var) · N(x_t; scale·x_s, lik_var),
    by brute-force normalisation on a uniform grid.

    The posterior lies between the prior mean and x_t/scale, with standard deviation at least
    min(prior sd, likelihood sd in x_s)/√2, so a spacing of a tenth of that min makes the Riemann
    sum exact to rounding (its error for a Gaussian is ~exp(−2π²σ²/h²)), and ±14 of it on either
    side covers all but e^{−98} of the mass.
    """
    lik_sd = math.sqrt(lik_var) / scale
    width = min(math.sqrt(prior_var), lik_sd)
    lo = min(prior_mean, x_t / scale) - 14 * width
    hi = max(prior_mean, x_t / scale) + 14 * width
    n = max(4001, math.ceil((hi - lo) / (width / 10)) + 1)
    xs = np.linspace(lo, hi, n)
    logp = -0.5 * (xs - prior_mean) ** 2 / prior_var - 0.5 * (x_t - scale * xs) ** 2 / lik_var
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = float(np.sum(w * xs))
    return mean, float(np.sum(w * (xs - mean) ** 2))


def _check_posterior_against_bayes(diffusion, ks, ts):
    """``ks`` step indices of ``diffusion``'s chain; ``ts`` their original timesteps (k−1 → s)."""
    cases = []
    for k, (s, t) in zip(ks, ts):
        for x0 in (-1.0, 0.2, 1.0):
            for z in (-2.5, 0.3, 3.0):
                x_t = math.sqrt(ABAR0[t]) * x0 + math.sqrt(1 - ABAR0[t]) * z
                cases.append((k, s, t, x0, x_t))
    k = torch.tensor([c[0] for c in cases])
    x0 = torch.tensor([c[3] for c in cases], dtype=torch.float64).view(-1, 1, 1, 1)
    x_t = torch.tensor([c[4] for c in cases], dtype=torch.float64).view(-1, 1, 1, 1)
    mean, var = diffusion.q_posterior(x0, x_t, k)
    assert var.shape == (len(cases), 1, 1, 1)
    for i, (_, s, t, x0_, x_t_) in enumerate(cases):
        ratio = ABAR0[t] / ABAR0[s]  # q(x_t|x_s) = N(√(ᾱ_t/ᾱ_s) x_s, 1 − ᾱ_t/ᾱ_s) of the original chain
        m, v = _bayes_posterior(math.sqrt(ABAR0[s]) * x0_, 1 - ABAR0[s], math.sqrt(ratio), 1 - ratio, x_t_)
        # Grid sums are exact to ~1e-13 relative; the posterior mean can be near 0, hence atol.
        assert float(mean[i]) == pytest.approx(m, rel=1e-9, abs=1e-12), (s, t, x0_, x_t_)
        assert float(var[i]) == pytest.approx(v, rel=1e-8), (s, t, x0_, x_t_)


def test_posterior_matches_bayes_rule_full_chain(diff):
    ks = [2, 3, 11, 100, 500, 999, 1000]
    _check_posterior_against_bayes(diff, ks, [(k - 1, k) for k in ks])


@pytest.mark.parametrize("kept", [RESPACED, RESPACED_NO_T1, [3, 40]])
def test_posterior_matches_bayes_rule_respaced(sched, kept):
    d = GaussianDiffusion(sched.respace(kept))
    ks = list(range(2, len(kept) + 1))
    _check_posterior_against_bayes(d, ks, [(kept[k - 2], kept[k - 1]) for k in ks])


@pytest.mark.parametrize("kept", [None, RESPACED_NO_T1])
def test_posterior_at_first_step_is_the_point_mass_at_x0(sched, kept):
    d = GaussianDiffusion(sched if kept is None else sched.respace(kept))
    x0 = torch.tensor([-1.0, 0.25, 1.0], dtype=torch.float64).view(-1, 1, 1, 1)
    x_1 = torch.tensor([3.0, -2.0, 0.0], dtype=torch.float64).view(-1, 1, 1, 1)
    mean, var = d.q_posterior(x0, x_1, torch.ones(3, dtype=torch.long))
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-15)
    assert torch.all(var == 0)


# ---- ε-parameterisation --------------------------------------------------------------------

@pytest.mark.parametrize("kept", [None, RESPACED])
def test_x0_eps_conversions_invert_q_sample(sched, kept):
    d = GaussianDiffusion(sched if kept is None else sched.respace(kept))
    g = torch.Generator().manual_seed(3)
    ks = list(range(1, d.num_steps + 1, max(1, d.num_steps // 50))) + [d.num_steps]
    k = torch.tensor(ks)
    shape = (len(ks), 3, 4, 4)
    x0 = torch.randint(0, 256, shape, generator=g).double() / 127.5 - 1
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    x_k = d.q_sample(x0, k, noise)
    a = torch.from_numpy(d.schedule.alphas_cumprod[np.array(ks) - 1]).view(-1, 1, 1, 1)
    torch.testing.assert_close(x_k, a.sqrt() * x0 + (1 - a).sqrt() * noise, rtol=0, atol=1e-15)
    # Dividing by √ᾱ_T ≈ 6e-3 or √(1−ᾱ_1) = 1e-2 amplifies the ~4e-16 rounding of x_k: 1e-12 is ample.
    torch.testing.assert_close(d.x0_from_eps(x_k, k, noise), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(d.eps_from_x0(x_k, k, x0), noise, rtol=0, atol=1e-12)
    # And they invert each other for arbitrary x_k, not just q-samples.
    x_any = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(d.x0_from_eps(x_any, k, d.eps_from_x0(x_any, k, x0)), x0, rtol=0, atol=1e-11)


@pytest.mark.parametrize("kept", [None, RESPACED, RESPACED_NO_T1])
def test_p_mean_is_eq_11(sched, kept):
    """μ_θ = (x_k − β_k/√(1−ᾱ_k) ε) / √α_k; for a respaced chain with its own β'_k, α'_k."""
    s = sched if kept is None else sched.respace(kept)
    d = GaussianDiffusion(s)
    g = torch.Generator().manual_seed(5)
    ks = np.arange(1, d.num_steps + 1)
    if kept is None:
        ks = np.concatenate([ks[:20], ks[20::37], [T]])
    k = torch.from_numpy(ks)
    shape = (len(ks), 2, 3, 3)
    x_k = torch.randn(shape, generator=g, dtype=torch.float64) * 1.5
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    if kept is None:
        beta, abar = BETAS[ks - 1], ABAR[ks - 1]
    else:  # the respaced chain, recomputed from the original ᾱ
        ts = np.array(sorted(kept))[ks - 1]
        prev = np.concatenate([[0], np.array(sorted(kept))[:-1]])[ks - 1]
        abar = ABAR0[ts]
        beta = 1 - ABAR0[ts] / ABAR0[prev]
    beta_t = torch.from_numpy(beta).view(-1, 1, 1, 1)
    abar_t = torch.from_numpy(abar).view(-1, 1, 1, 1)
    expect = (x_k - beta_t / (1 - abar_t).sqrt() * eps) / (1 - beta_t).sqrt()
    torch.testing.assert_close(d.p_mean(x_k, k, eps), expect, rtol=1e-10, atol=1e-11)


def test_posterior_mean_with_true_noise_recovers_true_posterior(diff):
    """p_mean with the true ε equals μ̃(x_0, x_k): the reverse model is exact for a perfect predictor."""
    g = torch.Generator().manual_seed(11)
    k = torch.tensor([1, 2, 5, 300, 1000])
    x0 = torch.rand((5, 1, 3, 3), generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn((5, 1, 3, 3), generator=g, dtype=torch.float64)
    x_k = diff.q_sample(x0, k, noise)
    mu_q, _ = diff.q_posterior(x0, x_k, k)
    torch.testing.assert_close(diff.p_mean(x_k, k, noise), mu_q, rtol=0, atol=1e-12)


# ---- reverse variances ---------------------------------------------------------------------

def test_reverse_variances_full_chain(diff):
    abar_prev = ABAR0[:-1]
    beta_tilde = (1 - abar_prev) / (1 - ABAR) * BETAS
    large = diff.reverse_variances(ReverseVariance.FIXED_LARGE)
    small = diff.reverse_variances(ReverseVariance.FIXED_SMALL)
    np.testing.assert_allclose(large[1:], BETAS[1:], rtol=1e-10, atol=0)
    np.testing.assert_allclose(small[1:], beta_tilde[1:], rtol=1e-10, atol=0)
    # Step 1 uses β̃_2 for both (β̃_1 = 0 would make the decoder degenerate).
    assert large[0] == small[0] == pytest.approx(beta_tilde[1], rel=1e-12)
    assert large[0] > 0
    # p_variance agrees with reverse_variances, per batch element, accepting the string values.
    k = torch.tensor([1, 2, 700, 1000])
    like = torch.zeros((4, 1, 2, 2), dtype=torch.float64)
    for v, arr in (("fixedlarge", large), ("fixedsmall", small)):
        got = diff.p_variance(k, v, like)
        assert got.shape == (4, 1, 1, 1)
        np.testing.assert_array_equal(got.flatten().numpy(), arr[k.numpy() - 1])
    # reverse_variances hands out copies.
    large[:] = -1
    assert np.all(diff.reverse_variances(ReverseVariance.FIXED_LARGE) > 0)


def test_reverse_variances_respaced(sched):
    r = sched.respace(RESPACED)
    d = GaussianDiffusion(r)
    ts = np.array(RESPACED)
    prev = np.concatenate([[0], ts[:-1]])
    beta = 1 - ABAR0[ts] / ABAR0[prev]
    beta_tilde = (1 - ABAR0[prev]) / (1 - ABAR0[ts]) * beta
    np.testing.assert_allclose(d.reverse_variances("fixedlarge")[1:], beta[1:], rtol=1e-10)
    np.testing.assert_allclose(d.reverse_variances("fixedsmall")[1:], beta_tilde[1:], rtol=1e-10)
    assert d.reverse_variances("fixedlarge")[0] == pytest.approx(beta_tilde[1], rel=1e-12)
    assert d.reverse_variances("fixedsmall")[0] == pytest.approx(beta_tilde[1], rel=1e-12)


def test_single_step_chain_has_a_positive_decoder_variance(sched):
    d = GaussianDiffusion(sched.respace([T]))
    for v in ReverseVariance:
        assert d.reverse_variances(v)[0] == pytest.approx(1 - ABAR[-1], rel=1e-12)


# ---- network conditioning and input checks -------------------------------------------------

def test_predict_eps_passes_original_timesteps_minus_one(sched):
    d = GaussianDiffusion(sched.respace(RESPACED))
    seen = []

    def eps_fn(x, t):
        seen.append(t.clone())
        return torch.zeros_like(x)

    k = torch.tensor([1, 3, 7, 2])
    out = d.predict_eps(eps_fn, torch.zeros((4, 1, 2, 2)), k)
    assert torch.equal(out, torch.zeros((4, 1, 2, 2)))
    assert seen[0].tolist() == [0, 9, 999, 1]
    torch.testing.assert_close(d.network_timesteps(torch.arange(1, 8)), torch.tensor(RESPACED) - 1)


def test_input_validation(diff):
    x = torch.zeros((2, 1, 2, 2), dtype=torch.float64)
    with pytest.raises(ValueError):
        diff.q_mean_std(torch.zeros((2, 2, 2)), torch.tensor([1, 2]))  # not 4-D
    with pytest.raises(ValueError):
        diff.q_mean_std(x, torch.tensor([1, 2, 3]))  # wrong batch
    with pytest.raises(ValueError):
        diff.q_mean_std(x, torch.tensor([[1, 2]]))  # not 1-D
    for bad in ([0, 1], [1, T + 1]):
        with pytest.raises(ValueError):
            diff.q_mean_std(x, torch.tensor(bad))
        with pytest.raises(ValueError):
            diff.q_posterior(x, x, torch.tensor(bad))
        with pytest.raises(ValueError):
            diff.x0_from_eps(x, torch.tensor(bad), x)
    with pytest.raises(ValueError):
        diff.predict_eps(lambda x_, t: torch.zeros((2, 1, 2, 3)), x, torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        diff.p_variance(torch.tensor([1]), "learned", x[:1])


# ---- L_simple ------------------------------------------------------------------------------

def test_l_simple_with_zero_predictor_is_mean_square_noise(diff):
    """ε̂ = 0 gives L_simple = mean(ε²), ≈ 1 with SE √(2/N) for N = 4096·4 elements; the
    timesteps handed to the network are uniform on 0..T−1 (mean 499.5, SD 288.7, SE 4.5)."""
    seen = []

    def eps_fn(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    B = 4096
    x0 = torch.zeros((B, 1, 2, 2), dtype=torch.float64)
    loss = float(diff.l_simple(eps_fn, x0, generator=torch.Generator().manual_seed(0)))
    assert abs(loss - 1.0) < 5 * math.sqrt(2.0 / (B * 4))
    t = seen[0].double()
    assert t.min() >= 0 and t.max() <= T - 1
    assert abs(float(t.mean()) - 499.5) < 5 * 288.7 / math.sqrt(B)
    assert t.min() < 20 and t.max() > T - 20  # both ends of the range are reached


def test_l_simple_vanishes_for_the_exact_predictor(diff):
    """For data that is a single point x*, ε*(x_k, t) = (x_k − √ᾱ x*)/√(1−ᾱ) is the true noise,
    so L_simple = 0: the step used to noise x_0 and the timestep passed to the network agree."""
    g = torch.Generator().manual_seed(1)
    x_star = torch.rand((1, 3, 2, 2), generator=g, dtype=torch.float64) * 2 - 1
    x0 = x_star.expand(64, -1, -1, -1).clone()
    abar = torch.from_numpy(ABAR)

    def eps_fn(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * x_star) / (1 - a).sqrt()

    loss = diff.l_simple(eps_fn, x0, generator=torch.Generator().manual_seed(2))
    assert float(loss) < 1e-20
    # Same generator seed, same loss; a different predictor gives a different loss.
    a1 = diff.l_simple(lambda x, t: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(9))
    a2 = diff.l_simple(lambda x, t: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(9))
    assert float(a1) == float(a2) and float(a1) > 0.1
