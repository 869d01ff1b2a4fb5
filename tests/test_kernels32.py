"""Version 4's scorers against the numpy definition: the compiled kernel's and torch's normals equal
``bitstream.noise32``'s bit for bit, their log-weights equal the reference's up to the order of the
float64 sums, and they select the same candidates."""

from __future__ import annotations

import numpy as np
import pytest

from bitstream import kernels32, noise32, torch_noise32
from bitstream.selection import EXACT, GREEDY, select_step

SEEDS = [0, 7, 2**32 + 5, 2**64 - 1]


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("d", [1, 3, 4, 5, 4097])
@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_and_torch_normals_equal_numpys_bit_for_bit(seed, d):
    stream, start, count = (3, 11), 5, 6
    ref = noise32.SharedNoise32(seed).normals32(stream, start, count, d)
    assert np.array_equal(_bits(kernels32.normals_step(seed, stream, start, count, d)), _bits(ref))
    got = torch_noise32.normals32(seed, *stream, start, count, d).numpy()
    assert np.array_equal(_bits(got), _bits(ref))


def test_normals_bit_for_bit_over_many_words():
    """A million normals of one call: every word pattern class of the radius and angle steps."""
    ref = noise32.SharedNoise32(123).normals32((1, 1), 0, 4, 250_000)
    assert np.array_equal(_bits(kernels32.normals_step(123, (1, 1), 0, 4, 250_000)), _bits(ref))
    assert np.array_equal(_bits(torch_noise32.normals32(123, 1, 1, 0, 4, 250_000).numpy()), _bits(ref))


def _step(rng, sizes):
    b = (rng.normal(size=int(np.sum(sizes))) * 0.3).astype(np.float32)
    return b, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@pytest.mark.parametrize("k", [1, 3, 6, 9])
def test_log_weights_equal_the_reference(k):
    rng = np.random.default_rng(k)
    sizes = [1, 2, 3, 4, 5, 17, 64, 301]
    b, offsets = _step(rng, sizes)
    ids = np.arange(1, len(sizes) + 1) * 3
    ref = kernels32.log_weights_reference(2**33 + 9, 6, -0.07, b, offsets, ids, k)
    scale = np.array([[np.sum(np.abs(b[offsets[c]:offsets[c + 1]])) + 1] for c in range(len(sizes))])
    for got in (kernels32.log_weights_step(2**33 + 9, 6, -0.07, b, offsets, ids, k),
                torch_noise32.log_weights_step(2**33 + 9, 6, -0.07, b, offsets, ids, k),
                torch_noise32.log_weights_step(2**33 + 9, 6, -0.07, b, offsets, ids, k, budget=37)):
        assert got.shape == (len(sizes), 1 << k)
        assert np.all(np.abs(got - ref) <= 1e-12 * scale * 10)


def test_the_scorers_select_the_same_candidates():
    """200 calls of about 5 bits (greedy and exact PFR): the kernel's and torch's indices agree."""
    rng = np.random.default_rng(5)
    differ = 0
    for call in range(100):
        d = int(rng.integers(20, 200))
        q_shift = rng.normal(size=d) * np.sqrt(2 * 5 * np.log(2) / d)
        b = (q_shift / 0.95**2).astype(np.float32)
        a = 0.5 - 0.5 / 0.95**2
        for rule in (GREEDY, EXACT):
            cpu = select_step(call, 2, a, b, [d], 8, rule, kernels32.log_weights_step)
            dev = select_step(call, 2, a, b, [d], 8, rule, torch_noise32.log_weights_step)
            differ += cpu != dev
    assert differ == 0


@pytest.mark.parametrize("bad", [
    dict(log2_candidates=0), dict(log2_candidates=21), dict(step=2**30), dict(seed=2**64), dict(seed=-1),
    dict(offsets=[0, 3, 3, 10]), dict(offsets=[0, 4, 9]), dict(chunk_ids=[1, 2]), dict(chunk_ids=[1, 2, 2**32]),
])
def test_bad_inputs_are_refused(bad):
    args = dict(seed=1, step=1, a=-0.1, b=np.ones(10, np.float32), offsets=[0, 3, 5, 10], chunk_ids=[1, 2, 3],
                log2_candidates=4) | bad
    for fn in (kernels32.log_weights_step, torch_noise32.log_weights_step):
        with pytest.raises(ValueError):
            fn(**args)
    with pytest.raises(ValueError):
        kernels32.log_weights_step(**(args | {"b": np.array([1, np.nan] + [0] * 8, np.float32)}))


def test_float32_terms_select_what_a_float64_scorer_selects():
    """The encoder's terms are float32 (sums float64); on 300 greedy and exact-PFR calls of about
    8 bits the index equals a float64 scorer's on the same normals, except where the two best
    scores lie within float32's error of each other (none of these calls)."""
    from bitstream.selection import log_arrival_times

    rng = np.random.default_rng(11)
    differ = near = 0
    for call in range(150):
        d = int(rng.integers(16, 400))
        b = (rng.normal(size=d) * np.sqrt(2 * 8 * np.log(2) / d) / 0.9**2).astype(np.float32)
        a = 0.5 - 0.5 / 0.9**2
        offsets = np.array([0, d])
        fast = kernels32.log_weights_step(call, 3, a, b, offsets, [1], 10)[0]
        z = kernels32.normals_step(call, (3, 1), 0, 1 << 10, d).astype(np.float64)  # numpy's bits, tested above
        exact = (z * (np.float32(a) * z + b.astype(np.float64))).sum(axis=1)
        bound = 4 * 2.0**-24 * np.sum(np.abs(z * (np.float32(a) * z + b)), axis=1)  # float32 error of the terms
        log_t = log_arrival_times(call, 3, np.array([1]), 10)[0]
        for score_fast, score_exact, err in ((fast, exact, bound), (log_t - fast, log_t - exact, bound)):
            pick = np.argmax(score_fast) if score_fast is fast else np.argmin(score_fast)
            ref = np.argmax(score_exact) if score_exact is exact else np.argmin(score_exact)
            if pick != ref:
                differ += 1
                near += abs(score_exact[pick] - score_exact[ref]) <= err[pick] + err[ref]
    assert differ == near == 0
