"""The vectorised scorer of format version 3 (``bitstream.kernels_exact``, ``kernels.log_weights``)
against the scalar reference loop (``kernels.log_weights_reference``) and the numpy recipe."""

from __future__ import annotations

import numpy as np
import pytest

from bitstream import kernels, kernels_exact
from bitstream.channel import log_weight_coefficients
from bitstream.noise import LANE_NORMAL, SharedNoise, _box_muller, raw_to_uniform, stream_key

TOL = 1e-12  # relative to Σ|terms| = |c| + Σ_i |a_i| z_i² + |b_i z_i| of the reference normals


def _coefficients(d, rng):
    """A realistic call: q a little narrower than p (a < 0), shifted means (b random)."""
    p_mean, p_std = rng.normal(size=d), rng.uniform(0.5, 2.0, size=d)
    q_std = p_std * rng.uniform(0.6, 0.99, size=d)
    q_mean = p_mean + 0.4 * p_std * rng.normal(size=d)
    return log_weight_coefficients(q_mean, q_std, p_mean, p_std)


# (d, seed, stream, lane, start, count): d at and around block and group sizes, ragged tiles
CASES = [(1, 0, 0, 0, 0, 1), (3, 7, (4, 9), 0, 5, 33), (4, 2**64 - 1, 2**64 - 1, 0, 0, 16),
         (5, 2**63 + 17, (1, 2), 0, 1000, 257), (63, 99, (0, 0), 1, 3, 50), (64, 123456789, (7, 3), 0, 17, 31),
         (65, 5, 12345, 2, 2**40, 19), (1000, 2024, (2, 5), 0, 999, 40), (3072, 11, (3, 1), 0, 4095, 23)]


@pytest.mark.parametrize("d, seed, stream, lane, start, count", CASES)
def test_fast_log_weights_match_reference(d, seed, stream, lane, start, count):
    rng = np.random.default_rng(d)
    a, b, c = _coefficients(d, rng)
    key = stream_key(stream)
    ref = kernels.log_weights_reference(seed, key, lane, start, count, a, b, c)
    got = kernels.log_weights(seed, key, lane, start, count, a, b, c)
    assert got.shape == ref.shape == (count,)
    if lane == LANE_NORMAL:  # the scale of the sum from the recipe's normals
        z = SharedNoise(seed).normals(stream, start, count, d)
        scale = abs(c) + np.abs(a) @ (z * z).T + np.abs(z * b).sum(axis=1)
    else:  # other lanes: relative to |ln w|
        scale = np.maximum(1.0, np.abs(ref))
    assert np.all(np.abs(got - ref) <= TOL * scale), np.max(np.abs(got - ref) / scale)


def test_fast_log_weights_every_count_and_start():
    """Counts 1 .. 40 (tiles of 16 and their tails) from odd starts give each candidate's own value."""
    rng = np.random.default_rng(0)
    a, b, c = _coefficients(7, rng)
    whole = kernels.log_weights_reference(3, 4, 0, 0, 80, a, b, c)
    for count in range(1, 41):
        start = 37 - count // 2
        got = kernels.log_weights(3, 4, 0, start, count, a, b, c)
        np.testing.assert_allclose(got, whole[start:start + count], rtol=TOL, atol=TOL)
    assert kernels.log_weights(3, 4, 0, 5, 0, a, b, c).shape == (0,)


def test_scorer_chooses_the_reference_index():
    """CompiledScorer (fast log-weights) picks the argmin of the reference log-weights, 240 calls."""
    from bitstream import scoring

    rng = np.random.default_rng(2026)
    scorer = kernels.CompiledScorer()
    noise = SharedNoise(20261207)
    k = 10
    gaps = []
    for call in range(240):
        d = int(rng.choice([1, 2, 3, 5, 8, 16, 31, 64, 100]))
        a, b, c = _coefficients(d, rng)
        stream = (call, int(rng.integers(0, 2**32)))
        got = scorer.best_index(noise.seed, stream, a, b, c, k)
        logw = kernels.log_weights_reference(noise.seed, stream_key(stream), LANE_NORMAL, 0, 1 << k, a, b, c)
        score = np.log(np.cumsum(noise.exponentials(stream, 0, 1 << k))) - logw
        assert got == int(np.argmin(score)), call
        gaps.append(np.diff(np.sort(score)[:2])[0])
    assert 1 << k <= scoring.CANDIDATES_PER_BLOCK
    assert min(gaps) > 0


@pytest.mark.parametrize("d, start, count", [(1, 0, 3), (3, 10, 17), (4, 0, 16), (5, 2**33, 9), (64, 7, 20),
                                             (65, 1, 33), (300, 123, 5)])
def test_kernel_normals_match_shared_noise(d, start, count):
    seed, stream = 2**63 + 17, (4, 9)
    want = SharedNoise(seed).normals(stream, start, count, d)
    got = kernels_exact.normals(seed, stream_key(stream), LANE_NORMAL, start, count, d)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-14


def test_box_muller_edges():
    """u0 → 1 (tiny radius, relative accuracy), u0 = 2**-53 (the largest radius), u1 at and next to
    every multiple of 1/8 (quadrant and octant edges of the reduction)."""
    top = 2**64 - 1
    w_rad = [top, top - 2**11, top - 2**11 * 1000, top - 2**40, 0, 2**11, 2**63, 12345 << 11]
    w_ang = sorted({min(top, max(0, k * 2**61 + s)) for k in range(9) for s in (-2**11, 0, 2**11)} | {0, top})
    wr = np.repeat(np.array(w_rad, dtype=np.uint64), len(w_ang))
    wa = np.tile(np.array(w_ang, dtype=np.uint64), len(w_rad))
    x, y = kernels_exact.box_muller_words(wr, wa)
    u = np.empty(2 * wr.size)
    u[0::2], u[1::2] = raw_to_uniform(wr), raw_to_uniform(wa)
    z = _box_muller(u)
    assert np.max(np.abs(x - z[0::2])) <= 1e-14 and np.max(np.abs(y - z[1::2])) <= 1e-14
    v = -2.0 * np.log(u[0::2])  # libm's log is accurate to an ulp, relative, also near 1
    nonzero = v > 0
    np.testing.assert_allclose((x * x + y * y)[nonzero], v[nonzero], rtol=1e-14, atol=0)
    assert np.all((x == 0) & (y == 0) | nonzero)


def test_rejects_bad_arguments():
    a = np.ones(3)
    with pytest.raises(ValueError):
        kernels.log_weights(0, 0, 0, 0, 4, a, np.ones(2), 0.0)
    with pytest.raises(ValueError):
        kernels.log_weights(-1, 0, 0, 0, 4, a, a, 0.0)
    with pytest.raises(ValueError):
        kernels.log_weights_reference(0, 2**64, 0, 0, 4, a, a, 0.0)
    with pytest.raises(ValueError):
        kernels_exact.normals(0, 0, 0, 0, 4, 0)
