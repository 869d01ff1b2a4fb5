"""The variational bound: Gaussian KL, the discretised decoder, and evaluate_bound end to end.

evaluate_bound is checked with predictors whose bound is known in closed form:

* single-point data x*: the optimal ε-predictor ε*(x_t, t) = (x_t − √ᾱ_t x*)/√(1−ᾱ_t) makes
  x̂_0 exact, so every FIXED_SMALL KL vanishes, every FIXED_LARGE KL is the pure variance term,
  L_0 is the decoder centred on x*, the MSE is 0 and L_T is a closed-form Gaussian KL;
* a linear x̂_0 predictor (the optimal one for Gaussian data N(m, s²)): the expected KL given
  x_0 is closed form, checked by Monte Carlo over evaluate_bound's own noise;
* ε̂ = 0: the expected clipped MSE of x̂_0 = x_k/√ᾱ_k is closed form (truncated normal moments).

The predictor sees x_k rounded to float32 (evaluate_bound feeds the network float32): that
perturbs x̂_0 by at most 2^-24·|x_k|/√ᾱ_k, which sets the (tiny) tolerances of the exact cases.
"""

import math

import numpy as np
import pytest
import torch

from diffcodec.bound import (
    BIN_HALF_WIDTH,
    LN2,
    BoundTerms,
    discretized_gaussian_log_prob,
    evaluate_bound,
    gaussian_kl,
    prior_kl_bits,
)
from diffcodec.diffusion import GaussianDiffusion, ReverseVariance

T = 1000
BETAS = np.linspace(1e-4, 0.02, T, dtype=np.float64)
ABAR = np.cumprod(1.0 - BETAS)
ABAR0 = np.concatenate([[1.0], ABAR])  # ABAR0[t] = ᾱ_t, ᾱ_0 = 1
LARGE, SMALL = ReverseVariance.FIXED_LARGE, ReverseVariance.FIXED_SMALL
LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1


def _chain(kept=None):
    """(ᾱ_{s}, ᾱ_{t}, β', β̃') of each step of the full chain or of a respaced one, from ABAR alone."""
    ts = np.arange(1, T + 1) if kept is None else np.sort(np.asarray(kept))
    prev = np.concatenate([[0], ts[:-1]])
    abar_s, abar_t = ABAR0[prev], ABAR0[ts]
    beta = 1 - abar_t / abar_s
    beta_tilde = (1 - abar_s) / (1 - abar_t) * beta
    return abar_s, abar_t, beta, beta_tilde


def _variance_gap_nats(beta, beta_tilde):
    """KL(N(μ, β̃) ‖ N(μ, β)) per dimension: the price of σ² = β when q has variance β̃."""
    r = beta_tilde / beta
    return 0.5 * (-np.log(r) + r - 1)


def _images(seed, shape):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g).double() / 127.5 - 1
    x.view(-1)[:4] = torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64)  # both edge bins
    return x


def _exact_predictor(x_star):
    """ε* for data that is exactly x_star (per batch element, repeated for calls that hold
    several timesteps); t are original timesteps − 1."""
    abar = torch.from_numpy(ABAR)

    def eps_fn(x, t):
        assert x.dtype == torch.float32  # what a network gets
        a = abar[t].view(-1, 1, 1, 1)
        target = x_star.repeat(x.shape[0] // x_star.shape[0], 1, 1, 1)
        return ((x.double() - a.sqrt() * target) / (1 - a).sqrt()).float()

    return eps_fn


# ---- gaussian_kl ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "m1, v1, m2, v2",
    [
        (0.0, 1.0, 0.0, 1.0),
        (0.3, 0.5, -0.2, 2.0),
        (1.0, 2.0, 0.0, 0.3),
        (0.0, 5.45e-5, 0.004, 1.2e-4),  # the scales of step t = 2
        (-0.7, 0.019, -0.65, 0.02),
    ],
)
def test_gaussian_kl_against_monte_carlo(m1, v1, m2, v2):
    """E_q[log q − log p] over N = 10^6 float64 draws from q; the estimator's standard error is
    sd(log q − log p)/√N, estimated from the same draws, and we allow 5 of them."""
    g = torch.Generator().manual_seed(17)
    x = m1 + math.sqrt(v1) * torch.randn(1_000_000, generator=g, dtype=torch.float64)
    logq = -0.5 * math.log(2 * math.pi * v1) - 0.5 * (x - m1) ** 2 / v1
    logp = -0.5 * math.log(2 * math.pi * v2) - 0.5 * (x - m2) ** 2 / v2
    d = logq - logp
    kl = gaussian_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, v1, m2, v2)))
    se = float(d.std()) / math.sqrt(d.numel())
    assert abs(float(d.mean()) - float(kl)) <= 5 * se + 1e-15
    assert float(kl) >= 0


def test_gaussian_kl_zero_for_equal_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(50, generator=g, dtype=torch.float64)
    v = torch.rand(50, generator=g, dtype=torch.float64) * 3 + 1e-6
    assert torch.all(gaussian_kl(m, v, m, v).abs() <= 1e-15)
    m2 = torch.randn(50, generator=g, dtype=torch.float64)
    v2 = torch.rand(50, generator=g, dtype=torch.float64) * 3 + 1e-6
    assert torch.all(gaussian_kl(m, v, m2, v2) > 0)
    # Pure mean shift: (Δ)²/(2v); pure variance ratio r: ½(r − 1 − log r).
    torch.testing.assert_close(gaussian_kl(m, v, m + 0.1, v), 0.01 / (2 * v), rtol=1e-12, atol=0)
    torch.testing.assert_close(gaussian_kl(m, v, m, 2 * v), torch.full_like(v, 0.5 * (0.5 - 1 + math.log(2))))
    # Broadcasting of a (B,1,1,1) variance against (B,C,H,W) means, as evaluate_bound uses it.
    out = gaussian_kl(torch.zeros(2, 3, 4, 4), torch.ones(2, 1, 1, 1), torch.ones(2, 3, 4, 4), torch.ones(2, 1, 1, 1))
    assert out.shape == (2, 3, 4, 4) and torch.allclose(out, torch.full((2, 3, 4, 4), 0.5))


# ---- discretized_gaussian_log_prob ----------------------------------------------------------

MEANS = [-40.0, -3.0, -1.2, -1.0, -1 + 1 / 255, -0.3, 0.0, 1 / 255, 0.5, 0.99, 1.0, 1.7, 4.0, 1e3]
STDS = [1e-4, 1e-3, 7.4e-3, 1e-2, 0.1, 1.0, 10.0]


def _grid():
    x = LEVELS.view(256, 1, 1)
    mean = torch.tensor(MEANS, dtype=torch.float64).view(1, -1, 1)
    std = torch.tensor(STDS, dtype=torch.float64).view(1, 1, -1)
    return x, mean, std, discretized_gaussian_log_prob(x, mean, std)


def test_discretized_probabilities_sum_to_one_and_are_finite():
    _, _, _, logp = _grid()
    assert logp.shape == (256, len(MEANS), len(STDS)) and logp.dtype == torch.float64
    assert torch.all(torch.isfinite(logp)), "every level keeps a finite log-probability, even 10^6 sd away"
    assert torch.all(logp <= 0)
    # Each bin is computed to ~1e-15 relative; 256 of them sum to 1 within 1e-12.
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(len(MEANS), len(STDS), dtype=torch.float64),
                               rtol=0, atol=1e-12)


def _phi(z):  # Φ(z), accurate in the lower tail
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _q(z):  # 1 − Φ(z), accurate in the upper tail
    return 0.5 * math.erfc(z / math.sqrt(2))


def _bin_prob_erf(level_index, mean, std):
    """Φ(hi) − Φ(lo) in float64 with math.erfc, written so neither tail cancels."""
    x = -1 + level_index / 127.5
    lo = -math.inf if level_index == 0 else (x - 1 / 255 - mean) / std
    hi = math.inf if level_index == 255 else (x + 1 / 255 - mean) / std
    if hi <= 0:
        return _phi(hi) - _phi(lo)
    if lo >= 0:
        return _q(lo) - _q(hi)
    return 1.0 - _phi(lo) - _q(hi)


def test_discretized_matches_erf_cdf_difference():
    """Where the float64 erfc difference is accurate (probability above 1e-250, far from
    underflow), log-probabilities agree to 1e-9. The worst cancellation in the reference is a
    bin of width 2/255 at std 10 next to Φ ≈ ½: relative error ≈ 1e-16/8e-4 ≈ 1e-13."""
    _, _, _, logp = _grid()
    compared = 0
    for j, mean in enumerate(MEANS):
        for s, std in enumerate(STDS):
            for i in range(256):
                p = _bin_prob_erf(i, mean, std)
                if p > 1e-250:
                    compared += 1
                    assert float(logp[i, j, s]) == pytest.approx(math.log(p), rel=1e-12, abs=1e-9), (i, mean, std)
    assert compared > 5000


def test_discretized_deep_tails_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50

    def ref(x, mean, std):
        x, mean, std = (mpmath.mpf(v) for v in (x, mean, std))
        h = mpmath.mpf(1) / 255
        lo = None if x <= -1 else (x - h - mean) / std
        hi = None if x >= 1 else (x + h - mean) / std
        s2 = mpmath.sqrt(2)
        if lo is not None and lo > 0:  # upper tail: Q(lo) − Q(hi)
            p = mpmath.erfc(lo / s2) / 2 - (0 if hi is None else mpmath.erfc(hi / s2) / 2)
        else:  # Φ(hi) − Φ(lo)
            p = (1 if hi is None else mpmath.erfc(-hi / s2) / 2) - (0 if lo is None else mpmath.erfc(-lo / s2) / 2)
        return float(mpmath.log(p))

    points = [
        (0.5, 0.0, 1e-3),  # z ≈ 496 above the mean: log p ≈ −1.2e5
        (-0.5, 0.0, 1e-3),  # the mirror image, lower tail
        (0.0, 0.5, 1e-4),  # z ≈ −5000
        (-1.0, 0.9, 0.01),  # lower edge bin, open to −∞, hi ≈ −190 sd
        (1.0, -1.0, 0.02),  # upper edge bin, open to +∞, lo ≈ +100 sd
        (-1.0, -40.0, 1.0),  # edge bin holding nearly all the mass
        (0.6, -0.5, 0.02),  # narrow bin in the upper tail, z ≈ 55
        (-0.6, 0.5, 0.02),
        (float(LEVELS[200]), 0.0, 0.02),  # z ≈ 28–28.6, where float64 erfc is near underflow
        (float(LEVELS[130]), float(LEVELS[130]) + 0.5 / 255, 1e-4),  # 1/2 bin off centre at tiny std
    ]
    x = torch.tensor([p[0] for p in points], dtype=torch.float64)
    mean = torch.tensor([p[1] for p in points], dtype=torch.float64)
    std = torch.tensor([p[2] for p in points], dtype=torch.float64)
    got = discretized_gaussian_log_prob(x, mean, std)
    for i, p in enumerate(points):
        assert float(got[i]) == pytest.approx(ref(*p), rel=1e-10, abs=1e-10), p


def test_discretized_edges_and_dtype():
    # Edge bins extend to ∓∞: a mean far below −1 puts all mass on level −1.
    lp = discretized_gaussian_log_prob(torch.tensor([-1.0, 1.0]), torch.tensor([-5.0, 5.0]), torch.tensor([0.1, 0.1]))
    assert lp.dtype == torch.float64
    torch.testing.assert_close(lp, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-15)
    # A centred interior bin has probability erf(h/(σ√2)), the edge bin Φ(h/σ).
    sigma = 0.01
    lp = discretized_gaussian_log_prob(LEVELS[[0, 100, 255]], LEVELS[[0, 100, 255]],
                                       torch.tensor(sigma, dtype=torch.float64))
    h = BIN_HALF_WIDTH
    expect = [math.log(_phi(h / sigma)), math.log(math.erf(h / (sigma * math.sqrt(2)))), math.log(_phi(h / sigma))]
    torch.testing.assert_close(lp, torch.tensor(expect, dtype=torch.float64), rtol=1e-13, atol=0)


# ---- the data-independent cost of σ² = β ----------------------------------------------------

def test_fixed_large_variance_cost_is_0486_bits_per_dim():
    """The gap between the two reverse variances in closed form: Σ_{t=2..T} ½(log(β_t/β̃_t) + β̃_t/β_t − 1)/ln 2 ≈ 0.486, 0.40 of it in t = 2..11."""
    _, _, beta, beta_tilde = _chain()
    per_step = _variance_gap_nats(beta[1:], beta_tilde[1:]) / math.log(2)
    assert per_step.sum() == pytest.approx(0.486, abs=5e-4)
    assert per_step[:10].sum() == pytest.approx(0.40, abs=5e-3)
    assert np.all(per_step > 0) and np.all(np.diff(per_step) < 0)  # concentrated at small t


# ---- evaluate_bound with the exact predictor of single-point data ---------------------------

SHAPE = (2, 3, 4, 4)
DIMS = 48


@pytest.fixture(scope="module")
def exact_full(diff):
    x_star = _images(1, SHAPE)
    calls = []
    terms = evaluate_bound(diff, _exact_predictor(x_star), x_star, generator=torch.Generator().manual_seed(0),
                           progress=lambda: calls.append(1))
    return x_star, terms, len(calls)


def _decoder_bits_by_hand(x_star, var):
    """−log₂ of the discretised Gaussian N(x*, var) at x*: erf(h/(σ√2)) inside, Φ(h/σ) at ±1."""
    sigma = math.sqrt(var)
    inner = -math.log(math.erf(BIN_HALF_WIDTH / (sigma * math.sqrt(2))))
    edge = -math.log(_phi(BIN_HALF_WIDTH / sigma))
    flat = x_star.flatten(1)
    n_edge = ((flat == -1) | (flat == 1)).sum(1).double().numpy()
    return (n_edge * edge + (flat.shape[1] - n_edge) * inner) / math.log(2)


def _prior_bits_by_hand(x_star, abar_T):
    # KL(N(√ᾱ x, 1−ᾱ) ‖ N(0, 1)) = ½(ᾱx² + (1−ᾱ) − 1 − log(1−ᾱ)) = ½(ᾱx² − ᾱ − log1p(−ᾱ))
    x2 = (x_star.flatten(1) ** 2).numpy()
    return (0.5 * (abar_T * x2 - abar_T - math.log1p(-abar_T))).sum(1) / math.log(2)


def _check_exact_case(x_star, terms, kept=None):
    abar_s, abar_t, beta, beta_tilde = _chain(kept)
    K = len(abar_t)
    assert isinstance(terms, BoundTerms) and terms.dims == DIMS
    for v in (LARGE, SMALL):
        assert terms.step_bits[v].shape == (SHAPE[0], K) and np.all(np.isfinite(terms.step_bits[v]))
    # FIXED_SMALL: σ² = β̃ and μ_θ = μ̃ → KL = 0, up to the float32 rounding of x_k, which moves
    # x̂_0 by ≤ 2^-24·|x_k|/√ᾱ_k and μ_θ by c0 times that, c0 = √ᾱ_{k−1}β_k/(1−ᾱ_k). With
    # |x_k| ≤ 7 (|x_0| ≤ 1, |noise| ≤ 6) the KL is at most dims·(c0·2^-24·7/√ᾱ_k)²/(2σ²) per step.
    c0 = (np.sqrt(abar_s) * beta / (1 - abar_t))[1:]
    shift = c0 * 2.0**-24 * 7 / np.sqrt(abar_t[1:])
    ceiling_bits = DIMS * shift**2 / (2 * beta_tilde[1:]) / math.log(2)
    small = terms.step_bits[SMALL][:, 1:]
    assert np.all(np.abs(small) <= ceiling_bits), np.abs(small).max()
    # FIXED_LARGE: the variance term alone, times the dimensions (the same rounding adds at most
    # ceiling_bits·β̃/β ≤ ceiling_bits).
    gap_bits = DIMS * _variance_gap_nats(beta[1:], beta_tilde[1:]) / math.log(2)
    err = np.abs(terms.step_bits[LARGE][:, 1:] - gap_bits)
    assert np.all(err <= ceiling_bits + 1e-9 * gap_bits + 1e-15), err.max()
    assert np.all(gap_bits > 0)
    # L_T in closed form.
    np.testing.assert_allclose(terms.prior_bits, _prior_bits_by_hand(x_star, abar_t[-1]), rtol=1e-9, atol=1e-15)
    # L_0: the decoder centred exactly on x* with σ_1² = β̃_2 of this chain, for both choices.
    # x̂_0 is off by ≤ 2^-24|x_1|/√ᾱ_1 ≈ 6e-8; the edge bins feel that at first order
    # (|d log Φ/dμ| ≤ 70 per unit at σ ≈ 7e-3), i.e. ≤ 5e-6 nats per dim: rtol 1e-5 on ~60 bits.
    l0 = _decoder_bits_by_hand(x_star, beta_tilde[1])
    for v in (LARGE, SMALL):
        np.testing.assert_allclose(terms.step_bits[v][:, 0], l0, rtol=1e-5)
        np.testing.assert_allclose(terms.distortion_bits(v), l0, rtol=1e-5)
    # MSE of x̂_0 is zero up to the same rounding: ≤ (2^-24·7/√ᾱ_k)².
    assert terms.mse.shape == (SHAPE[0], K) and np.all(terms.mse >= 0)
    assert np.all(terms.mse <= (2.0**-24 * 7 / np.sqrt(abar_t)) ** 2)
    # Rate is the prior plus the step KLs.
    for v in (LARGE, SMALL):
        np.testing.assert_allclose(terms.rate_bits(v), terms.prior_bits + terms.step_bits[v][:, 1:].sum(1),
                                   rtol=1e-12)


def test_exact_predictor_full_chain(exact_full):
    x_star, terms, calls = exact_full
    assert calls == T
    _check_exact_case(x_star, terms)


def test_variance_cost_through_evaluate_bound(exact_full):
    """With μ_θ = μ̃ the two reverse variances differ by exactly the variance term: 0.486 bits/dim
    over t = 2..T, 0.40 of it in t = 2..11, the same in every image."""
    _, terms, _ = exact_full
    diff_bits = terms.step_bits[LARGE][:, 1:] - terms.step_bits[SMALL][:, 1:]
    per_dim = diff_bits.sum(1) / terms.dims
    _, _, beta, beta_tilde = _chain()
    exact = _variance_gap_nats(beta[1:], beta_tilde[1:]).sum() / math.log(2)
    np.testing.assert_allclose(per_dim, exact, rtol=1e-9)
    assert per_dim[0] == pytest.approx(0.486, abs=5e-4)
    assert diff_bits[:, :10].sum(1)[0] / terms.dims == pytest.approx(0.40, abs=5e-3)
    rate_gap = (terms.rate_bits(LARGE) - terms.rate_bits(SMALL)) / terms.dims
    np.testing.assert_allclose(rate_gap, exact, rtol=1e-9)


@pytest.mark.parametrize("kept", [[1, 5, 50, 1000], [1, 2, 3, 10, 100, 500, 999, 1000], [3, 20, 700]])
def test_exact_predictor_respaced_chain(sched, kept):
    """Same closed forms on a respaced chain: the network must be conditioned on the original
    timesteps (else x̂_0 is wrong and the FIXED_SMALL KLs are far from 0), σ_1² = β̃'_2."""
    d = GaussianDiffusion(sched.respace(kept))
    x_star = _images(2, SHAPE)
    terms = evaluate_bound(d, _exact_predictor(x_star), x_star, generator=torch.Generator().manual_seed(1))
    _check_exact_case(x_star, terms, kept)


def test_prior_kl_bits_closed_form(diff):
    x = _images(3, (3, 2, 5, 5))
    np.testing.assert_allclose(prior_kl_bits(diff, x), _prior_bits_by_hand(x, ABAR[-1]), rtol=1e-9, atol=1e-15)
    # For x = 0 only the variance mismatch is left: ½(−ᾱ − log(1−ᾱ)) ≈ ᾱ²/4 per dim.
    z = torch.zeros((1, 1, 1, 1), dtype=torch.float64)
    assert prior_kl_bits(diff, z)[0] == pytest.approx(0.5 * (-ABAR[-1] - math.log1p(-ABAR[-1])) / LN2, rel=1e-6)


def test_steps_subset_fills_only_those_columns(diff):
    x = _images(4, (2, 1, 2, 2))
    calls = []
    steps = [1, 2, 500, 1000]
    terms = evaluate_bound(diff, _exact_predictor(x), x, steps=steps, progress=lambda: calls.append(1),
                           generator=torch.Generator().manual_seed(0))
    assert len(calls) == len(steps)
    filled = np.zeros(T, dtype=bool)
    filled[np.array(steps) - 1] = True
    for arr in (terms.step_bits[LARGE], terms.step_bits[SMALL], terms.mse):
        assert np.all(np.isfinite(arr[:, filled])) and np.all(np.isnan(arr[:, ~filled]))
    _, _, beta, beta_tilde = _chain()
    np.testing.assert_allclose(terms.step_bits[LARGE][0, 499],
                               4 * _variance_gap_nats(beta[499], beta_tilde[499]) / LN2, rtol=1e-9)


# ---- evaluate_bound with predictors that are not exact: Monte Carlo over its noise -----------

M, S2 = 0.1, 0.25  # the Gaussian data N(m, s²) whose posterior-mean predictor we use


def _linear_predictor(gain_fn):
    """x̂_0 = m + g(ᾱ)(x − √ᾱ m), returned as the ε that yields it."""
    abar = torch.from_numpy(ABAR)

    def eps_fn(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        x = x.double()
        x0_hat = M + gain_fn(a) * (x - a.sqrt() * M)
        return ((x - a.sqrt() * x0_hat) / (1 - a).sqrt()).float()

    return eps_fn


def _gaussian_posterior_gain(a):
    """E[x_0|x_t] = m + g(x_t − √ᾱ m) for x_0 ~ N(m, s²): g = √ᾱ s² / (ᾱ s² + 1 − ᾱ)."""
    return a.sqrt() * S2 / (a * S2 + 1 - a)


@pytest.mark.parametrize("gain", ["gaussian_optimal", "identity"])
def test_step_kl_expectation_for_linear_predictor(diff, gain):
    """Given x_0, with x̂_0 = m + g(x_k − √ᾱ m) and x_k = √ᾱ x_0 + √(1−ᾱ) n:
    e = x_0 − x̂_0 = A(x_0 − m) − g√(1−ᾱ) n, A = 1 − g√ᾱ, and per dimension
    KL = ½(log(σ²/β̃) + β̃/σ² − 1) + c0² e²/(2σ²), c0 = √ᾱ_{k−1} β_k/(1 − ᾱ_k),
    E[e²] = A²d² + g²(1−ᾱ), Var[e²] = 4A²d²g²(1−ᾱ) + 2g⁴(1−ᾱ)² with d = x_0 − m.
    The per-image sum over 768 dims is compared with its expectation within 5 exact standard
    errors, for each of 4 images, 6 steps and both variances (clip_denoised=False).
    'identity' (g = 1/√ᾱ) gives x̂_0 = x_k/√ᾱ, i.e. ε̂ = 0: A = 0, a poor predictor at large k."""
    gain_fn = _gaussian_posterior_gain if gain == "gaussian_optimal" else (lambda a: 1 / a.sqrt())
    shape = (4, 3, 16, 16)
    x0 = _images(5, shape)
    steps = [2, 5, 50, 300, 700, 1000]
    terms = evaluate_bound(diff, _linear_predictor(gain_fn), x0, clip_denoised=False, steps=steps,
                           generator=torch.Generator().manual_seed(123))
    _, abar_t, beta, beta_tilde = _chain()
    d = (x0 - M).flatten(1).numpy()
    for k in steps:
        a, b, bt = abar_t[k - 1], beta[k - 1], beta_tilde[k - 1]
        c0 = math.sqrt(ABAR0[k - 1]) * b / (1 - a)
        g = float(gain_fn(torch.tensor(a, dtype=torch.float64)))
        A = 1 - g * math.sqrt(a)
        e2_mean = (A * d) ** 2 + g**2 * (1 - a)
        e2_var = 4 * (A * d) ** 2 * g**2 * (1 - a) + 2 * g**4 * (1 - a) ** 2
        for v, var in ((LARGE, b), (SMALL, bt)):
            w = c0**2 / (2 * var)
            const = _variance_gap_nats(var, bt) if v is LARGE else 0.0  # ½(log(σ²/β̃)+β̃/σ²−1)
            expect = (shape[1] * shape[2] * shape[3] * const + w * e2_mean.sum(1)) / LN2
            se = w * np.sqrt(e2_var.sum(1)) / LN2
            got = terms.step_bits[v][:, k - 1]
            assert np.all(np.abs(got - expect) < 5 * se + 1e-9 * np.abs(expect)), (k, v, got, expect, se)


def _clipped_err_moments(x0, tau):
    """E[(clip(Y) − x0)^2] and E[(clip(Y) − x0)^4] for Y ~ N(x0, τ²), clip to [−1, 1].

    Inside [−1, 1] these are truncated normal moments: with α = (−1−x0)/τ, β = (1−x0)/τ,
    ∫ z² φ = [Φ − zφ]_α^β and ∫ z⁴ φ = [3Φ − (z³+3z)φ]_α^β; outside, the clipped value is ±1.
    """
    al, be = (-1 - x0) / tau, (1 - x0) / tau

    def pdf(z):
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    mid = _phi(be) - _phi(al)
    m2 = tau**2 * (mid - (be * pdf(be) - al * pdf(al)))
    m4 = tau**4 * (3 * mid - ((be**3 + 3 * be) * pdf(be) - (al**3 + 3 * al) * pdf(al)))
    p_lo, p_hi = _phi(al), _q(be)
    m2 += (1 + x0) ** 2 * p_lo + (1 - x0) ** 2 * p_hi
    m4 += (1 + x0) ** 4 * p_lo + (1 - x0) ** 4 * p_hi
    return m2, m4


def test_mse_of_clipped_x0_hat_for_zero_predictor(diff):
    """ε̂ = 0 gives x̂_0 = x_k/√ᾱ_k ~ N(x_0, τ²), τ² = (1−ᾱ)/ᾱ; the MSE column is of x̂_0 clipped
    to [−1, 1] (also with clip_denoised=False). Each image is 64 copies of one level, 32 images
    per level, so N = 2048 iid squared errors per level; SE = √((E[e⁴] − E[e²]²)/N), 5 SE."""
    values = LEVELS[[0, 102, 190, 255]].tolist()  # −1, −0.2, 0.49, 1
    per = 32
    x0 = torch.tensor(values, dtype=torch.float64).repeat_interleave(per).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    steps = [10, 100, 400, 1000]
    terms = evaluate_bound(diff, lambda x, t: torch.zeros_like(x), x0.contiguous(), clip_denoised=False,
                           steps=steps, generator=torch.Generator().manual_seed(321))
    n = per * 64
    for k in steps:
        tau = math.sqrt((1 - ABAR[k - 1]) / ABAR[k - 1])
        for i, v in enumerate(values):
            m2, m4 = _clipped_err_moments(v, tau)
            se = math.sqrt(max(m4 - m2**2, 0.0) / n)
            got = terms.mse[i * per:(i + 1) * per, k - 1].mean()
            assert abs(got - m2) < 5 * se, (k, v, got, m2, se)
    assert np.all(terms.mse[:, np.array(steps) - 1] <= 4)


def test_clip_denoised_lowers_the_kl_at_high_noise(diff):
    x0 = _images(6, (2, 3, 4, 4))
    def zero(x, t):
        return torch.zeros_like(x)

    kw = {"steps": [2, 1000]}
    a = evaluate_bound(diff, zero, x0, clip_denoised=True, generator=torch.Generator().manual_seed(4), **kw)
    b = evaluate_bound(diff, zero, x0, clip_denoised=False, generator=torch.Generator().manual_seed(4), **kw)
    np.testing.assert_array_equal(a.mse, b.mse)  # the MSE is of the clipped x̂_0 either way
    # At k = 1000 x_k/√ᾱ ~ N(x_0, 157²): clipping moves μ_θ towards μ̃, lowering the KL.
    assert np.all(a.step_bits[SMALL][:, 999] < b.step_bits[SMALL][:, 999])


# ---- input validation -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad",
    [
        lambda x: x + 1e-3,  # between levels
        lambda x: x * 0 + 1 + 2 / 255,  # a 257th level above +1
        lambda x: x * 0 - 1 - 2 / 255,  # below −1
        lambda x: torch.where(torch.arange(x.numel()).view(x.shape) == 3, torch.nan, x),
        lambda x: torch.where(torch.arange(x.numel()).view(x.shape) == 3, torch.inf, x),
        lambda x: x * 0,  # 0 is not a level (127.5 is not an integer)
        lambda x: (x + 1) * 127.5,  # 0..255 instead of [−1, 1]
    ],
)
def test_evaluate_bound_rejects_values_off_the_levels(diff, bad):
    x = _images(7, (2, 1, 2, 2))
    with pytest.raises(ValueError):
        evaluate_bound(diff, _exact_predictor(x), bad(x), steps=[1])


@pytest.mark.parametrize("shape", [(1, 2, 2), (1, 1, 1, 2, 2), (4,)])
def test_evaluate_bound_rejects_wrong_shapes(diff, shape):
    with pytest.raises(ValueError):
        evaluate_bound(diff, lambda x, t: torch.zeros_like(x), -torch.ones(shape, dtype=torch.float64), steps=[1])


def test_evaluate_bound_rejects_bad_predictor_and_steps(diff):
    x = -torch.ones((2, 1, 2, 2), dtype=torch.float64)
    with pytest.raises(ValueError):
        evaluate_bound(diff, lambda x_, t: torch.zeros((2, 1, 2, 3)), x, steps=[5])
    for bad in ([0], [T + 1]):
        with pytest.raises(ValueError):
            evaluate_bound(diff, lambda x_, t: torch.zeros_like(x_), x, steps=bad)


def test_evaluate_bound_accepts_float32_levels(diff):
    """Levels rounded to float32 (how images usually arrive) are within 1e-6 and accepted."""
    x = _images(8, (1, 3, 2, 2))
    terms = evaluate_bound(diff, _exact_predictor(x), x.float(), steps=[1, 2],
                           generator=torch.Generator().manual_seed(0))
    assert np.all(np.isfinite(terms.step_bits[LARGE][:, :2]))


def test_evaluate_bound_draws_fresh_standard_noise_each_step(diff):
    """Standardising the x_k the predictor sees, n = (x_k − √ᾱ_k x_0)/√(1−ᾱ_k), must give iid
    N(0, 1) draws, fresh at every step. Over all 1000 steps of 2×3×8×8 images, N = 384,000:
    SE of the mean 1/√N, of the variance √(2/N) (0.23 %), of a correlation 1/√N' for the
    N' = 383,616 consecutive-step pairs; 5 SE each. (float32 rounding of x_k adds ≤ 1e-5 to n.)"""
    x0 = _images(9, (2, 3, 8, 8))
    seen = {}
    abar = torch.from_numpy(ABAR)

    def eps_fn(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        seen[int(t[0])] = ((x.double() - a.sqrt() * x0) / (1 - a).sqrt()).flatten()
        assert torch.all(t == t[0])
        return torch.zeros_like(x)

    evaluate_bound(diff, eps_fn, x0, generator=torch.Generator().manual_seed(5))
    assert sorted(seen) == list(range(T))
    n = torch.stack([seen[t] for t in range(T)])  # (T, 384), row t is step t + 1
    N = n.numel()
    assert abs(float(n.mean())) < 5 / math.sqrt(N)
    assert abs(float(n.var()) - 1) < 5 * math.sqrt(2 / N)
    lag = float((n[1:] * n[:-1]).mean())
    assert abs(lag) < 5 / math.sqrt(n[1:].numel())
    # The same generator seed reproduces the terms exactly; another seed does not.
    b = evaluate_bound(diff, eps_fn, x0, generator=torch.Generator().manual_seed(5), steps=[3, 800])
    c = evaluate_bound(diff, eps_fn, x0, generator=torch.Generator().manual_seed(6), steps=[3, 800])
    a2 = evaluate_bound(diff, eps_fn, x0, generator=torch.Generator().manual_seed(5), steps=[3, 800])
    np.testing.assert_array_equal(b.step_bits[LARGE], a2.step_bits[LARGE])
    assert not np.allclose(b.step_bits[LARGE][:, [2, 799]], c.step_bits[LARGE][:, [2, 799]])


# ---- several timesteps per network call -----------------------------------------------------

def _recording_linear_predictor(x0, calls):
    """The Gaussian-optimal linear predictor, recording each call's timesteps and the standardised
    noise n = (x_k − √ᾱ_k x_0)/√(1−ᾱ_k) of every (step, image) it sees."""
    inner = _linear_predictor(_gaussian_posterior_gain)
    abar = torch.from_numpy(ABAR)
    B = x0.shape[0]

    def eps_fn(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        n = (x.double() - a.sqrt() * x0.repeat(x.shape[0] // B, 1, 1, 1)) / (1 - a).sqrt()
        calls.append((t.clone(), n))
        return inner(x, t)

    return eps_fn


@pytest.mark.parametrize("per_call, steps", [(7, None), (1000, None), (3, [1, 2, 500, 1000]), (2, [1, 2, 3, 999])])
def test_steps_per_call_gives_the_same_draws_and_terms(diff, per_call, steps):
    """Calls of several timesteps see each step's x_k drawn exactly as one step per call draws
    it (one normal draw per step, from T down to 1, from the one generator) and give the same
    terms; step 1's L_0 is right wherever it falls in a call. A call holds its steps in
    decreasing order, each repeated over the batch."""
    x0 = _images(10, (3, 3, 4, 4))
    one, many = [], []
    a = evaluate_bound(diff, _recording_linear_predictor(x0, one), x0, steps=steps,
                       generator=torch.Generator().manual_seed(7))
    progress = []
    b = evaluate_bound(diff, _recording_linear_predictor(x0, many), x0, steps=steps, steps_per_call=per_call,
                       generator=torch.Generator().manual_seed(7), progress=lambda: progress.append(1))
    order = list(range(T, 0, -1)) if steps is None else sorted(steps, reverse=True)
    assert len(progress) == len(order)
    assert len(many) == -(-len(order) // per_call)
    seen_t = torch.cat([t for t, _ in many])
    assert torch.equal(seen_t, torch.tensor(order).repeat_interleave(3) - 1)
    # The same noise per step: one draw of (B, C, H, W) per step, in decreasing step order.
    g = torch.Generator().manual_seed(7)
    expect = torch.stack([torch.randn(x0.shape, dtype=torch.float64, generator=g) for _ in order])
    for calls in (one, many):
        seen = torch.cat([n for _, n in calls]).view(len(order), *x0.shape)
        torch.testing.assert_close(seen, expect, rtol=0, atol=1e-5)  # x_k reaches the network as float32
    for v in (LARGE, SMALL):
        np.testing.assert_allclose(b.step_bits[v], a.step_bits[v], rtol=1e-12, atol=0)
        assert np.all(np.isfinite(b.step_bits[v][:, np.array(order) - 1]))
    np.testing.assert_allclose(b.mse, a.mse, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(b.prior_bits, a.prior_bits)


def test_steps_per_call_exact_predictor_full_chain(diff):
    """The closed forms of single-point data hold with 128 steps per call (1000 = 7·128 + 104)."""
    x_star = _images(1, SHAPE)
    terms = evaluate_bound(diff, _exact_predictor(x_star), x_star, generator=torch.Generator().manual_seed(0),
                           steps_per_call=128)
    _check_exact_case(x_star, terms)


def test_steps_per_call_must_be_positive(diff):
    x = _images(8, (1, 3, 2, 2))
    with pytest.raises(ValueError, match="steps_per_call"):
        evaluate_bound(diff, _exact_predictor(x), x, steps=[1], steps_per_call=0)


# ---- evaluate_dataset: batching over timesteps and a bf16 network ---------------------------

def test_evaluate_dataset_steps_per_call_and_bf16(one_thread):
    """A random micro network with a 100-step schedule on 3 images of 8×8 in batches of 2: 40
    steps per call (calls of 40, 40, 20 steps) give the terms of one step per call up to the
    network's rounding at another batch size; a bf16 network moves them slightly, not grossly."""
    from diffcodec.checkpoint import Model
    from diffcodec.nll import auto_steps_per_call, evaluate_dataset
    from diffcodec.schedule import ScheduleConfig
    from diffcodec.unet import CONFIGS, UNet

    torch.manual_seed(0)
    model = Model(UNet(CONFIGS["micro"]).eval(), ScheduleConfig(num_timesteps=100), "micro-test", "0" * 64)
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    kw = {"batch_size": 2, "seed": 3, "progress": False}
    one = evaluate_dataset(model, images, **kw)
    many = evaluate_dataset(model, images, steps_per_call=40, **kw)
    half = evaluate_dataset(model, images, steps_per_call=40, bf16=True, **kw)
    assert one.images == many.images == half.images == 3
    for v in (LARGE, SMALL):
        np.testing.assert_allclose(many.step_bits[v], one.step_bits[v], rtol=1e-5)
        total = one.split(v)["total_bits_per_dim"]
        gap = abs(half.split(v)["total_bits_per_dim"] - total) / total
        assert 0 < gap < 0.01, gap
    np.testing.assert_array_equal(many.prior_bits, one.prior_bits)
    # The default the command line uses: about 512 CIFAR-sized images per call, never below 1.
    assert auto_steps_per_call(2, 32, 32) == 256 and auto_steps_per_call(512, 32, 32) == 1
    assert auto_steps_per_call(24, 256, 256) == 1 and auto_steps_per_call(1, 8, 8) == 1000
