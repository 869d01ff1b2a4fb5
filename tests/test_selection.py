"""Format version 4's selection rules and shared noise: the header byte, the rules against their
definitions and against q by Monte Carlo, the Philox4x32-10 known answers, the normals' moments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitstream import noise32, selection
from bitstream.index_law import IndexModel, decode_indices, encode_indices
from bitstream.container import SELECTION_GREEDY, FormatError, Header, crc16
from bitstream.selection import EXACT, GREEDY, SelectionRule, log_arrival_times, select, select_step, step_coefficients

# Random123's published answers for philox4x32_10 (counter, key, output)
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox4x32_known_answers(counter, key, expected):
    assert tuple(noise32.philox4x32_10_reference(counter, key)) == expected
    words = noise32.philox4x32_10(*(np.array([c], dtype=np.uint32) for c in counter), *key)
    assert tuple(int(w[0]) for w in words) == expected


def test_log_uniform_against_float64():
    w = np.arange(0, 2**32, 65537 * 13, dtype=np.uint64).astype(np.uint32)
    u = ((w >> 8).astype(np.float64) + 1) * 2.0**-24
    got = noise32.log_uniform(w)
    assert got.dtype == np.float32
    assert np.all(np.abs(got - np.log(u)) <= 4e-7 * np.maximum(1, np.abs(np.log(u))))
    assert noise32.log_uniform(np.array([0xFFFFFFFF], dtype=np.uint32))[0] == 0  # u = 1


def test_normals_have_the_moments_of_a_standard_normal():
    z = noise32.SharedNoise32(20261207).normals32((3, 1), 0, 250, 4000).astype(np.float64).ravel()  # 10^6
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n)
    assert abs((z**3).mean()) < 5 * math.sqrt(15 / n)
    for q, p in ((-1.0, 0.15865525), (0.0, 0.5), (2.0, 0.97724987)):
        assert abs(np.mean(z < q) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) + 1e-5


def test_normals_are_a_function_of_the_candidate_alone():
    noise = noise32.SharedNoise32(2**40 + 7)
    block = noise.normals32((5, 2), 10, 4, 9)
    for row in range(4):
        assert np.array_equal(noise.normals32((5, 2), 10 + row, 1, 9)[0], block[row])
    assert not np.array_equal(noise.normals32((5, 3), 10, 1, 9)[0], block[0])  # another chunk
    assert not np.array_equal(noise32.SharedNoise32(7).normals32((5, 2), 10, 1, 9)[0], block[0])  # the seed's high word


def test_selected_normals_equal_each_chunks_candidate():
    noise = noise32.SharedNoise32(99)
    sizes, indices = [5, 4, 1, 13], [0, 77, 4095, 3]
    got = noise.selected_normals32(7, sizes, indices)
    expected = np.concatenate([noise.normals32((7, j + 1), n, 1, d)[0] for j, (d, n) in enumerate(zip(sizes, indices))])
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError):
        noise.selected_normals32(7, [3, 2], [1])
    with pytest.raises(ValueError):
        noise.selected_normals32(2**30, [3], [1])


def test_arrival_times_are_the_cumulative_exponentials():
    noise = noise32.SharedNoise32(5)
    log_t = log_arrival_times(5, 3, np.array([1, 2]), 6)
    for row, chunk in enumerate((1, 2)):
        e = noise.exponentials((3, chunk), 0, 64)
        assert np.allclose(log_t[row], np.log(np.cumsum(e)), rtol=1e-15, atol=0)
        assert np.array_equal(noise.exponentials((3, chunk), 17, 5), e[17:22])


@pytest.mark.parametrize("text,byte", [("pfr", 4), ("greedy", SELECTION_GREEDY), ("tempered:2", 8),
                                       ("tempered:1.25", 5), ("exact", 4)])
def test_selection_rule_bytes(text, byte):
    rule = SelectionRule.parse(text)
    assert rule.byte == byte and SelectionRule.from_byte(byte) == rule


@pytest.mark.parametrize("bad", ["tempered:0.5", "tempered:1.1", "tempered:64", "best", "tempered:x"])
def test_bad_selection_rules_are_refused(bad):
    with pytest.raises(ValueError):
        SelectionRule.parse(bad)


def _header_bytes(version: int, selection_byte: int | None) -> bytes:
    body = b"DDC" + bytes([version]) + b"\x01\x02\x03\x04" + bytes([32, 32, 0, 0, 0, 10, 40, 12, 20])
    body += (bytes([selection_byte]) if selection_byte is not None else b"") + bytes([0, 0, 0])  # tile, seed, body
    return body + crc16(body).to_bytes(2, "little")


def test_header_carries_the_selection_from_version_4():
    for rule in (EXACT, GREEDY, SelectionRule(3.0)):
        h = Header(b"\x01\x02\x03\x04", 32, 32, selection=rule.byte)
        data = h.to_bytes()
        back, end = Header.from_bytes(data)
        assert end == len(data) and back == h and back.temper == rule.temper
    v3 = Header(b"\x01\x02\x03\x04", 32, 32, version=3)
    assert len(v3.to_bytes()) == len(Header(b"\x01\x02\x03\x04", 32, 32).to_bytes()) - 1
    assert Header.from_bytes(_header_bytes(4, 255))[0].greedy
    assert Header.from_bytes(_header_bytes(3, None))[0].selection == 4


@pytest.mark.parametrize("byte", [0, 1, 3])
def test_reserved_selection_bytes_are_rejected(byte):
    with pytest.raises(FormatError, match="selection"):
        Header.from_bytes(_header_bytes(4, byte))


def test_version_3_has_exact_pfr_only():
    with pytest.raises(FormatError, match="version 4"):
        Header(b"\x01\x02\x03\x04", 32, 32, version=3, selection=SELECTION_GREEDY)


def test_uniform_index_law_costs_k_bits():
    model = IndexModel(10, 8.0, uniform=True)
    indices = [0, 1023, 512, 7, 1000, 3]
    data = encode_indices(indices, model)
    assert decode_indices(data, model, len(indices)) == indices
    assert model.ideal_bits(5) == 10 and len(data) <= math.ceil(10 * len(indices) / 32 + 1) * 4


def test_select_follows_each_rules_definition():
    rng = np.random.default_rng(0)
    log_w, log_t = rng.normal(size=(5, 64)), np.log(np.cumsum(rng.exponential(size=(5, 64)), axis=1))
    assert np.array_equal(select(GREEDY, log_w, None), log_w.argmax(1))
    assert np.array_equal(select(EXACT, log_w, log_t), (log_t - log_w).argmin(1))
    assert np.array_equal(select(SelectionRule(2.5), log_w, log_t), (log_t - 2.5 * log_w).argmin(1))


def _reference_log_weights(seed, step, a, b, offsets, chunk_ids, k):
    """ln w up to a constant, straight from the normals (the definition the kernels implement)."""
    key = (seed & 0xFFFFFFFF, seed >> 32)
    out = np.empty((len(chunk_ids), 1 << k))
    for c, chunk in enumerate(chunk_ids):
        bb = b[offsets[c]:offsets[c + 1]]
        j = np.arange(-(-bb.size // 4), dtype=np.uint32)[None, :]
        n = np.arange(1 << k, dtype=np.uint32)[:, None]  # every candidate at once (recipe steps 2-3)
        words = noise32.philox4x32_10(j, n, np.uint32(chunk), np.uint32(step), *key)
        z = noise32.block_normals(words).reshape(1 << k, -1)[:, :bb.size]
        out[c] = (z * (np.float32(a) * z + bb)).astype(np.float64).sum(axis=1)
    return out


def test_reference_log_weights_use_the_candidates_normals():
    noise = noise32.SharedNoise32(2**33 + 1)
    b = np.array([0.5, -1.0, 0.25], dtype=np.float32)
    got = _reference_log_weights(noise.seed, 4, -0.2, b, np.array([0, 3]), np.array([2]), 4)
    z = noise.normals32((4, 2), 0, 16, 3)
    assert np.array_equal(got[0], (z * (np.float32(-0.2) * z + b)).astype(np.float64).sum(axis=1))


def _sample(rule, trials: int, shift: float, ratio: float, k: int = 8, d: int = 2):
    """Selected samples of q = N(shift·e_0, ratio²·I) against p = N(0, I), one call per trial."""
    q_mean = np.zeros(d)
    q_mean[0] = shift
    out = []
    for trial in range(trials):
        a, b = step_coefficients(q_mean, ratio, np.zeros(d), 1.0, np.arange(d))
        [n] = select_step(trial, 1, a, b, [d], k, rule, _reference_log_weights)
        out.append(noise32.SharedNoise32(trial).normals32((1, 1), n, 1, d)[0])
    return np.array(out, dtype=np.float64)


@pytest.mark.slow
def test_exact_pfr_samples_q_and_greedy_does_not():
    """Monte Carlo: KL ≈ 1.2 bits with 2**8 candidates, so truncated PFR is close to exact."""
    shift, ratio, trials = 1.0, 0.8, 1500
    z = _sample(EXACT, trials, shift, ratio)
    se = ratio / math.sqrt(trials)
    assert abs(z[:, 0].mean() - shift) < 4 * se and abs(z[:, 1].mean()) < 4 * se
    assert abs(z.var(axis=0).mean() / ratio**2 - 1) < 4 * math.sqrt(1 / trials)
    g = _sample(GREEDY, 300, shift, ratio)
    # q/p peaks at shift / (1 − ratio²) = 2.78 along the shift: greedy overshoots q's mean there,
    # and its samples are far less spread than q's
    assert 2.0 < g[:, 0].mean() < shift / (1 - ratio**2)
    assert g.var(axis=0).mean() < 0.5 * ratio**2


def test_select_step_splits_into_passes(monkeypatch):
    """The passes of ``CANDIDATES_PER_PASS`` give the indices of one big pass."""
    rng = np.random.default_rng(3)
    sizes = [3, 4, 2, 5, 1]
    b = rng.normal(size=sum(sizes)).astype(np.float32)
    whole = select_step(11, 2, -0.1, b, sizes, 6, EXACT, _reference_log_weights)
    monkeypatch.setattr(selection, "CANDIDATES_PER_PASS", 128)  # two chunks of 64 candidates a pass
    assert select_step(11, 2, -0.1, b, sizes, 6, EXACT, _reference_log_weights) == whole
    with pytest.raises(ValueError):
        select_step(11, 2, -0.1, b, [3, 4], 6, EXACT, _reference_log_weights)
