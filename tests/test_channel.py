"""Network-free tests of bitstream.noise and bitstream.channel (fast: a few seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitstream.channel import gaussian_kl_bits, reconstruct, simulate
from bitstream.index_law import IndexModel, decode_indices, encode_indices
from bitstream import noise as noise_module
from bitstream.noise import (
    LANE_NORMAL,
    SharedNoise,
    philox4x64_10_reference,
    raw_to_uniform,
    stream_key,
)

# --------------------------------------------------------------------------- helpers


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in np.ravel(x)])


def ks_pvalue_normal(x: np.ndarray) -> tuple[float, float]:
    """One-sample KS statistic against N(0,1) and its asymptotic p-value."""
    x = np.sort(np.ravel(x))
    n = x.size
    cdf = normal_cdf(x)
    i = np.arange(1, n + 1)
    d = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2.0 * sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return float(d), float(min(1.0, max(0.0, p)))


# --------------------------------------------------------------------------- noise


def test_fast_path_matches_reference_philox():
    seed, stream, d = 123456789, (7, 3), 10
    nz = SharedNoise(seed)
    b = SharedNoise.blocks_per_row(d)
    for n in (0, 1, 5, 1000):
        u = nz.uniforms(stream, n, 1, d)[0]
        words = []
        for j in range(b):
            words += philox4x64_10_reference([n * b + 1 + j, LANE_NORMAL, 0, 0], [seed, stream_key(stream)])
        ref = raw_to_uniform(np.array(words, dtype=np.uint64))
        assert np.array_equal(u, ref)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 64, 257])
@pytest.mark.parametrize("stream", [0, (3, 1), (999, 2**32 - 1)])
def test_row_alone_equals_block_row(d, stream):
    nz = SharedNoise(42)
    block = nz.normals(stream, 0, 300, d)
    for n in (0, 1, 2, 17, 299):
        assert np.array_equal(nz.normal(stream, n, d), block[n])
    # blocks starting elsewhere agree too
    assert np.array_equal(nz.normals(stream, 100, 50, d), block[100:150])


@pytest.mark.parametrize("d", [1, 5, 12, 13, 31])
def test_normals_in_pieces_equal_one_piece(d, monkeypatch):
    """Large requests are generated a few blocks at a time: the same numbers, bit for bit."""
    nz = SharedNoise(7)
    whole = nz.normals((4, 2), 3, 5, d)
    expect = noise_module._box_muller(nz.uniforms((4, 2), 3, 5, d))[:, :d]
    assert np.array_equal(whole, expect)
    monkeypatch.setattr(noise_module, "PIECE_BLOCKS", 2)
    assert np.array_equal(nz.normals((4, 2), 3, 5, d), whole)
    assert np.array_equal(nz.normal((4, 2), 6, d), whole[3])


def test_large_normal_vectors_take_little_more_memory_than_the_result(monkeypatch):
    import tracemalloc

    def peak_bytes(d: int) -> tuple[int, int]:
        tracemalloc.start()
        try:
            z = SharedNoise(1).normal((0, 0), 0, d)
            return tracemalloc.get_traced_memory()[1], z.nbytes
        finally:
            tracemalloc.stop()

    d = 4_000_003  # x_T of a 1155×1155 image
    peak, result = peak_bytes(d)
    assert peak < 1.5 * result  # pieces of noise.PIECE_BLOCKS blocks: a few MiB beside the result
    monkeypatch.setattr(noise_module, "PIECE_BLOCKS", d)  # in one piece, the working arrays are larger
    assert peak_bytes(d)[0] > 3 * result


def test_uniforms_open_interval_and_bits():
    u = raw_to_uniform(np.array([0, 2**64 - 1, 2**11 - 1, 2**11], dtype=np.uint64))
    assert u[0] == 2.0**-53  # never 0
    assert u[1] == 1.0  # (0, 1]: every value exact in float64
    assert u[2] == u[0] and u[3] == 2.0 * 2.0**-53
    assert np.all(np.isfinite(np.log(u)))


def test_keys_and_seeds_give_different_streams():
    d = 4096
    base = SharedNoise(1).normal((5, 0), 0, d)
    others = [
        SharedNoise(2).normal((5, 0), 0, d),
        SharedNoise(1).normal((5, 1), 0, d),
        SharedNoise(1).normal((6, 0), 0, d),
        SharedNoise(1).normal((5, 0), 1, d),
    ]
    for o in others:
        assert not np.array_equal(base, o)
        r = np.corrcoef(base, o)[0, 1]
        assert abs(r) < 5.0 / math.sqrt(d)  # ~5 sigma
    # arrival lane is not the normal lane
    e = SharedNoise(1).exponentials((5, 0), 0, 4096)
    assert abs(np.corrcoef(np.log(e), base[:4096])[0, 1]) < 5.0 / 64


def test_normal_and_exponential_moments():
    nz = SharedNoise(2024)
    z = nz.normals((1, 2), 0, 2000, 101).ravel()  # odd d: padding discarded
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**3)) < 5 * math.sqrt(15 / n)
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96 / n)
    _, p = ks_pvalue_normal(z[:20000])
    assert p > 1e-3
    e = nz.exponentials((1, 2), 0, 100000)
    assert np.all(e > 0) and abs(e.mean() - 1) < 5 / math.sqrt(e.size)


# --------------------------------------------------------------------------- channel


def _setup(d, rng, shift=0.35, ratio=0.9, per_dim=False):
    p_mean = rng.normal(size=d)
    p_std = rng.uniform(0.5, 2.0, size=d) if per_dim else 1.3
    q_std = np.asarray(p_std) * ratio
    q_mean = p_mean + shift * np.asarray(p_std) * rng.choice([-1.0, 1.0], size=d)
    return q_mean, q_std, p_mean, p_std


@pytest.mark.parametrize("per_dim", [False, True])
def test_decoder_reconstructs_encoder_sample(per_dim):
    rng = np.random.default_rng(0)
    nz = SharedNoise(99)
    for call, d in enumerate((1, 7, 64, 300)):
        q_mean, q_std, p_mean, p_std = _setup(d, rng, per_dim=per_dim)
        idx, sample = simulate(q_mean, q_std, p_mean, p_std, nz, (call, 0), 10)
        assert 0 <= idx < 1024
        assert np.array_equal(reconstruct(idx, p_mean, p_std, nz, (call, 0)), sample)


@pytest.mark.parametrize("d", [1, 3, 4, 5, 33, 300])
def test_compiled_log_weights_match_numpy_normals(d):
    """The fused kernel scores candidate n exactly as the recipe's normals do (up to rounding)."""
    from bitstream import kernels
    from bitstream.channel import log_weight_coefficients
    from bitstream.noise import LANE_NORMAL, stream_key

    rng = np.random.default_rng(d)
    nz = SharedNoise(2**63 + 17)
    q_mean, q_std, p_mean, p_std = _setup(d, rng, per_dim=True)
    a, b, c = log_weight_coefficients(q_mean, q_std, p_mean, p_std)
    start, count = 1000, 257
    u = nz.normals((4, 9), start, count, d)
    want = (u * u) @ a + u @ b + c
    got = kernels.log_weights(nz.seed, stream_key((4, 9)), LANE_NORMAL, start, count, a, b, c)
    assert got.shape == (count,)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_blocking_does_not_change_selection(monkeypatch):
    import bitstream.channel as ch
    import bitstream.scoring as scoring

    rng = np.random.default_rng(1)
    nz = SharedNoise(5)
    q_mean, q_std, p_mean, p_std = _setup(33, rng)
    ref = simulate(q_mean, q_std, p_mean, p_std, nz, 3, 11)
    monkeypatch.setattr(scoring, "CANDIDATES_PER_BLOCK", 100)  # 100 candidates a block, ragged tail
    got = ch.simulate(q_mean, q_std, p_mean, p_std, nz, 3, 11)
    assert got[0] == ref[0] and np.array_equal(got[1], ref[1])


def _run_calls(calls, d, k, shift, ratio, per_dim=False, seed=11):
    rng = np.random.default_rng(seed)
    nz = SharedNoise(seed)
    resid, idx, kls = [], [], []
    for c in range(calls):
        q_mean, q_std, p_mean, p_std = _setup(d, rng, shift=shift, ratio=ratio, per_dim=per_dim)
        i, s = simulate(q_mean, q_std, p_mean, p_std, nz, (c, 0), k)
        resid.append((s - q_mean) / q_std)
        idx.append(i)
        kls.append(gaussian_kl_bits(q_mean, q_std, p_mean, p_std))
    return np.concatenate(resid), idx, float(np.mean(kls))


@pytest.mark.parametrize("per_dim", [False, True])
def test_samples_follow_q(per_dim):
    # KL ~ 3 bits per call, N = 2^11 >> 2^KL
    resid, idx, kl = _run_calls(400, 8, 11, shift=0.7, ratio=0.9, per_dim=per_dim)
    assert 1.5 < kl < 4.0
    _, p = ks_pvalue_normal(resid)
    assert p > 1e-3, p
    n = resid.size
    assert abs(resid.mean()) < 5 / math.sqrt(n)
    assert abs(resid.var() - 1) < 5 * math.sqrt(2 / n)
    model = IndexModel(11, kl)
    bits = np.mean([model.ideal_bits(i) for i in idx])
    assert 0.5 * kl < bits < 2.5 * kl + 3.0, (bits, kl)


def test_ks_has_power_when_truncated():
    # N = 1 (k = 0): the "sample" is a draw from p, not q -> the test must reject.
    resid, _, _ = _run_calls(200, 8, 0, shift=0.7, ratio=0.9)
    _, p = ks_pvalue_normal(resid)
    assert p < 1e-6


# --------------------------------------------------------------------------- index coding


def test_index_model_is_decreasing_and_cached():
    m = IndexModel(12, 8.0)
    assert m.probs.size == 4096 and abs(m.probs.sum() - 1) < 1e-12
    assert np.all(np.diff(m.probs) < 0)
    assert IndexModel(12, 8.0).model is m.model


def test_entropy_coder_round_trip():
    rng = np.random.default_rng(3)
    models = [IndexModel(k, b) for k, b in [(10, 1.0), (12, 4.0), (16, 12.0), (4, 0.0)]]
    seq_models = [models[i] for i in rng.integers(0, len(models), size=500)]
    indices = [int(min(m.size - 1, rng.zipf(1.3) - 1)) for m in seq_models]
    indices[0] = 0
    indices[1] = seq_models[1].size - 1  # the extremes of the support
    data = encode_indices(indices, seq_models)
    assert decode_indices(data, seq_models) == indices
    # single-model form
    single = IndexModel(14, 6.0)
    idx = [int(v) for v in rng.integers(0, 2**14, size=50)]
    assert decode_indices(encode_indices(idx, single), single, count=50) == idx
    # length close to the ideal code length
    ideal = sum(m.ideal_bits(i) for i, m in zip(indices, seq_models))
    assert ideal <= len(data) * 8 <= ideal + 64 + 0.01 * ideal


def test_rejects_bad_input():
    nz = SharedNoise(0)
    with pytest.raises(ValueError):
        simulate(np.zeros(3), 0.0, np.zeros(3), 1.0, nz, 0, 4)
    with pytest.raises(ValueError):
        simulate(np.array([np.nan, 0, 0]), 1.0, np.zeros(3), 1.0, nz, 0, 4)
    with pytest.raises(ValueError):
        encode_indices([16], IndexModel(4, 1.0))
