"""Guarded rounding: two sides whose values differ by less than the margin round alike, even at
values placed right at the rounding ties; the list is exact and malformed lists are errors."""

from __future__ import annotations

import numpy as np
import pytest

from bitstream import guarded_rounding as gr
from bitstream.container import FormatError

MARGIN = 2.0**-20


def _adversarial(rng, n=20000):
    """Values spread over 0..255, a third of them within 3 margins of a half-integer."""
    v = rng.uniform(0, 255, n)
    ties = rng.integers(0, 255, n // 3) + 0.5 + rng.uniform(-3 * MARGIN, 3 * MARGIN, n // 3)
    v[: n // 3] = ties
    return rng.permutation(v)


def test_decoder_rounds_like_the_encoder_when_values_differ_by_less_than_the_margin():
    rng = np.random.default_rng(0)
    v = _adversarial(rng)
    data, rounded = gr.encode(v, MARGIN)
    assert np.array_equal(rounded, np.floor(v + 0.5))
    for scale in (0.999, 0.5, 1e-3):
        v_other = v + rng.uniform(-1, 1, v.size) * MARGIN * scale
        if scale > 0.1:  # plain rounding disagrees somewhere at these scales
            assert not np.array_equal(np.floor(v_other + 0.5), rounded)
        decoded, used = gr.decode(data + b"tail", v_other)
        assert used == len(data) and np.array_equal(decoded, rounded)


def test_differences_beyond_the_margin_can_break_it():
    """The guarantee is the margin: a value just outside it, moved across the tie, rounds apart."""
    v = np.array([10.5 + 2 * MARGIN, 3.2])
    data, rounded = gr.encode(v, MARGIN)
    assert gr.near_half(v, MARGIN).size == 0
    decoded, _ = gr.decode(data, v - 3 * MARGIN)
    assert decoded[0] != rounded[0] and decoded[1] == rounded[1]


def test_list_size_follows_the_margin():
    v = np.random.default_rng(1).uniform(0, 255, 200000)
    listed = gr.near_half(v, 2.0**-8).size
    assert abs(listed - 2 * 2.0**-8 * v.size) < 5 * np.sqrt(2 * 2.0**-8 * v.size)
    data, _ = gr.encode(v, 0.0)
    assert data == b"\x00"  # nothing listed: one byte


def test_pinned_bytes():
    v = np.array([0.5, 1.49999999, 2.5000001, 7.2, 254.5 - 1e-9])
    data, rounded = gr.encode(v, 1e-6)
    # 4 listed at positions 0, 1, 2, 4 (gaps 0, 0, 0, 1), bits: 1, 0, 1, 0
    assert data == bytes([4, 0, 0, 0, 1, 0b0101])
    assert rounded.tolist() == [1, 1, 3, 7, 254]


@pytest.mark.parametrize("data,why", [
    (b"", "cut short"),
    (bytes([3, 0, 0]), "cut short"),
    (bytes([2, 0, 9, 0]), "out of range"),
    (bytes([9]), "names 9 positions"),
    (bytes([1, 0]), "cut short"),
])
def test_malformed_lists_are_format_errors(data, why):
    with pytest.raises(FormatError, match=why):
        gr.decode(data, np.zeros(5))


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError):
        gr.encode(np.array([np.nan]), MARGIN)
    with pytest.raises(ValueError):
        gr.encode(np.array([1.0]), 0.3)
