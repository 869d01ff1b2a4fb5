"""The torch path of channel simulation (bitstream.torch_noise, bitstream.torch_scoring) against the
numpy/numba path: the same Philox words bit for bit, the same normals up to libm rounding, and
the same selected index.  Runs on every available torch device."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bitstream import channel, scoring
from bitstream.channel import log_weight_coefficients, reconstruct, simulate
from bitstream.kernels import CompiledScorer
from bitstream.noise import SharedNoise, philox4x64_10_reference, stream_key
from bitstream.torch_noise import (
    TorchNoise,
    as_int64,
    normal_lane_words,
    philox4x64_10,
    raw_words,
    to_uint64,
)
from bitstream.torch_scoring import TorchScorer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
pytestmark = pytest.mark.usefixtures("one_thread")

MAX64 = 2**64 - 1


def numpy_words(seed, stream, lane, c0, nwords):
    """The specification: numpy's Philox with key (seed, stream) and counter (c0, lane, 0, 0)."""
    key = np.array([seed, stream_key(stream)], dtype=np.uint64)
    ctr = np.array([c0, lane, 0, 0], dtype=np.uint64)
    return np.random.Philox(key=key, counter=ctr).random_raw(nwords)


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 123456789, 2**63, MAX64])
def test_words_equal_numpy_philox(device, seed):
    for stream in (0, (3, 1), (2**32 - 1, 2**32 - 1), MAX64):
        for lane in (0, 1, 2):
            # counters near 2**63 and 2**64 (numpy's increment carries into the lane word)
            for c0 in (0, 7, 2**63 - 2, MAX64 - 2, MAX64):
                for nwords in (1, 5, 13, 64):
                    got = to_uint64(raw_words(seed, stream, lane, c0, nwords, device))
                    assert np.array_equal(got, numpy_words(seed, stream, lane, c0, nwords)), \
                        (seed, stream, lane, c0, nwords)


@pytest.mark.parametrize("device", DEVICES)
def test_blocks_equal_reference_philox(device):
    rng = np.random.default_rng(7)
    counters = [[0, 0, 0, 0], [1, 0, 0, 0], [MAX64] * 4] + rng.integers(0, 2**64, (5, 4), dtype=np.uint64).tolist()
    keys = [[0, 0], [MAX64, MAX64]] + rng.integers(0, 2**64, (6, 2), dtype=np.uint64).tolist()
    ctr = [torch.tensor([as_int64(c[i]) for c in counters], device=device) for i in range(4)]
    for key in keys:
        k0, k1 = (torch.tensor(as_int64(v), device=device) for v in key)
        got = np.stack([to_uint64(w) for w in philox4x64_10(*ctr, k0, k1)], axis=1)
        ref = np.array([philox4x64_10_reference(c, key) for c in counters], dtype=np.uint64)
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_lane_words_equal_each_stream_alone(device):
    """Streams of different dimension in one batch: each row holds its own counters' words."""
    seed, dims = 99, [5, 8, 9, 12]
    streams = torch.tensor([as_int64(stream_key((4, j + 1))) for j in range(len(dims))], device=device)
    blocks = torch.tensor([-(-d // 4) for d in dims], device=device)
    words = normal_lane_words(seed, streams, blocks, 10, 6, int(blocks.max()))
    for j, d in enumerate(dims):
        b = -(-d // 4)
        ref = numpy_words(seed, (4, j + 1), 0, 10 * b, 6 * 4 * b).reshape(6, 4 * b)
        assert np.array_equal(to_uint64(words[j, :, : 4 * b]), ref)


# --------------------------------------------------------------------------- uniforms, normals, exponentials


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", [1, 3, 4, 5, 13, 64])
def test_uniforms_normals_exponentials(device, d):
    ref, dev = SharedNoise(2**64 - 5), TorchNoise(2**64 - 5, device)
    for stream, start in (((1, 2), 0), ((70, 3), 1000), (12345, 2**20 - 3)):
        assert np.array_equal(dev.uniforms(stream, start, 50, d).cpu().numpy(), ref.uniforms(stream, start, 50, d))
        z = dev.normals(stream, start, 50, d).cpu().numpy()
        assert z.shape == (50, d)
        assert np.max(np.abs(z - ref.normals(stream, start, 50, d))) <= 1e-13
        e = dev.exponentials(stream, start, 200).cpu().numpy()
        assert np.max(np.abs(e - ref.exponentials(stream, start, 200))) <= 1e-13
    assert np.array_equal(to_uint64(dev.words((5, 0), 2, 1001)), ref.words((5, 0), 2, 1001))


# --------------------------------------------------------------------------- scoring


def call_with_kl(d, kl_bits, rng, rho=0.95):
    """q, p with KL(q||p) = kl_bits: q_std = rho p_std, a mean shift of random signs carries the rest."""
    p_mean = rng.normal(size=d)
    p_std = rng.uniform(0.5, 2.0, size=d)
    rest = kl_bits * math.log(2) - d * (-math.log(rho) + rho * rho / 2 - 0.5)
    assert rest > 0
    q_mean = p_mean + math.sqrt(2 * rest / d) * p_std * rng.choice([-1.0, 1.0], size=d)
    q_std = rho * p_std
    assert abs(channel.gaussian_kl_bits(q_mean, q_std, p_mean, p_std) - kl_bits) < 1e-9
    return q_mean, q_std, p_mean, p_std


CASES = [(1, 0), (1, 4), (2, 6), (5, 10), (16, 10), (37, 12), (100, 8), (4, 14), (23, 14)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d,k", CASES)
def test_scorer_selects_simulates_index(device, d, k):
    rng = np.random.default_rng(1000 * d + k)
    noise = SharedNoise(int(rng.integers(0, 2**63)))
    scorer = TorchScorer(device)
    for call, fraction in enumerate((0.05, 0.5, 0.8, 1.0)):
        kl = max(0.5, fraction * k)  # from little KL to about k bits
        q_mean, q_std, p_mean, p_std = call_with_kl(d, kl, rng)
        key = (k, call + 1)
        index, sample = simulate(q_mean, q_std, p_mean, p_std, noise, key, k)
        got, got_sample = simulate(q_mean, q_std, p_mean, p_std, noise, key, k, scorer=scorer)
        assert got == index, (d, k, kl)
        assert np.array_equal(got_sample, sample)


@pytest.mark.parametrize("device", DEVICES)
def test_passes_and_segments_do_not_change_the_index(device, monkeypatch):
    """Passes smaller than, and not aligned with, simulate's arrival-time segments."""
    rng = np.random.default_rng(5)
    noise = SharedNoise(31)
    q_mean, q_std, p_mean, p_std = call_with_kl(9, 8.0, rng)
    a, b, c = log_weight_coefficients(q_mean, q_std, p_mean, p_std)
    monkeypatch.setattr(scoring, "CANDIDATES_PER_BLOCK", 300)  # 300 candidates a segment, ragged tail
    ref = CompiledScorer().best_index(noise.seed, (2, 1), a, b, c, 11)
    for work_bytes in (None, 20_000):  # one pass per segment; 7 candidates a pass
        scorer = TorchScorer(device, work_bytes)
        assert scorer.best_index(noise.seed, (2, 1), a, b, c, 11) == ref
    monkeypatch.undo()
    assert TorchScorer(device).best_index(noise.seed, (2, 1), a, b, c, 11) == \
        CompiledScorer().best_index(noise.seed, (2, 1), a, b, c, 11)


@pytest.mark.parametrize("device", DEVICES)
def test_one_step_in_one_call(device):
    """All chunks of a step (sizes differing by one, streams (step, j+1)) at once == one by one."""
    rng = np.random.default_rng(11)
    noise = SharedNoise(2024)
    step, k, dims = 7, 10, 103
    q_mean, q_std, p_mean, p_std = call_with_kl(dims, 30.0, rng)
    parts = np.array_split(rng.permutation(dims), 7)  # sizes 15 and 14, blocks per row 4 and 4
    parts += np.array_split(rng.permutation(dims)[:26], 2)  # sizes 13: blocks per row 4; and 13
    parts += [np.arange(3), np.arange(5)]  # 1 and 2 blocks per row
    streams = [(step, j + 1) for j in range(len(parts))]
    coefficients = [log_weight_coefficients(q_mean[i], q_std[i], p_mean[i], p_std[i]) for i in parts]
    one_by_one = [simulate(q_mean[i], q_std[i], p_mean[i], p_std[i], noise, s, k)[0] for i, s in zip(parts, streams)]
    assert CompiledScorer().best_indices(noise.seed, streams, coefficients, k) == one_by_one
    assert TorchScorer(device).best_indices(noise.seed, [], [], k) == []
    for work_bytes in (None, 300_000):  # all chunks in one group; groups of 1 chunk, several passes
        got = TorchScorer(device, work_bytes).best_indices(noise.seed, streams, coefficients, k)
        assert got == one_by_one
    for i, s, n in zip(parts, streams, one_by_one):  # the decoder's sample of each chunk
        assert reconstruct(n, p_mean[i], p_std[i], noise, s).shape == (i.size,)


@pytest.mark.parametrize("device", DEVICES)
def test_scorer_rejects_bad_input(device):
    scorer = TorchScorer(device)
    a, b = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="log2_candidates"):
        scorer.best_index(1, 0, a, b, 0.0, 31)
    with pytest.raises(ValueError, match="one stream per"):
        scorer.best_indices(1, [(1, 1)], [(a, b, 0.0)] * 2, 4)
    with pytest.raises(ValueError, match="same length"):
        scorer.best_index(1, 0, a, np.zeros(4), 0.0, 4)
    with pytest.raises(ValueError, match="step and chunk"):
        scorer.best_index(1, (1, 2**32), a, b, 0.0, 4)
    with pytest.raises(ValueError, match="seed"):
        scorer.best_index(2**64, 0, a, b, 0.0, 4)


def test_the_encoder_writes_the_same_file_whichever_scorer_runs(monkeypatch):
    """One encoder for every device: scoring the candidates with the torch scorer (what a GPU
    runs, here on the CPU) writes the same bytes as the CPU's compiled loop."""
    import diffcodec.codec.encoder as encoder
    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage

    model = load_model("default")
    rgb = np.random.default_rng(5).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    image = CodecImage(rgb, ImageMode.RGB)
    config = CodecConfig(groups=6, log2_candidates=7, chunk_bits=3.0)
    compiled = compress(image, model, config, Stop()).data
    monkeypatch.setattr(encoder, "candidate_scorer", lambda m: TorchScorer("cpu"))
    torch_made = compress(image, model, config, Stop()).data
    assert torch_made == compiled
    assert np.array_equal(decompress(torch_made, model).image.rgb, rgb)
