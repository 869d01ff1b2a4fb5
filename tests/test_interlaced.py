"""Tests of bitstream.interlaced, the lossless record of format version 2: exact round trips,
pinned bytes, the gain of the context predictor on correlated residuals, bad input (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from bitstream import interlaced, residual


def smooth_residuals(shape, seed=0, noise=1.0):
    """Residual planes like the lossless step's: a smooth error shared by all planes, plus noise."""
    C, h, w = shape
    rng = np.random.default_rng(seed)
    field = rng.normal(0, 3, (h + 4, w + 4))
    for _ in range(2):  # two 3×3 box blurs: neighbouring values correlate strongly
        field = sum(field[dy:dy + field.shape[0] - 2, dx:dx + field.shape[1] - 2]
                    for dy in range(3) for dx in range(3)) / 3
    planes = [(0.5 + 0.3 * c) * field + rng.normal(0, noise, (h, w)) for c in range(C)]
    return np.rint(np.stack(planes)).astype(np.int64)


def test_coefficient_count():
    assert [interlaced.coefficient_count(c) for c in (1, 2, 3, 4)] == [1, 4, 9, 16]


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 7, 5), (3, 1, 1), (1, 1, 1), (3, 1, 9), (3, 8, 1), (4, 6, 6)])
def test_round_trip_random_and_smooth(shape):
    rng = np.random.default_rng(sum(shape))
    for planes in (rng.integers(-255, 256, shape), smooth_residuals(shape, seed=1), np.zeros(shape, np.int64)):
        data = interlaced.encode(planes)
        assert np.array_equal(interlaced.decode(data, *shape), planes)


def test_round_trip_extremes():
    # ±255 everywhere in checkerboard and stripe patterns drive the prediction to its clamp
    yy, xx = np.indices((9, 10))
    for pattern in (np.where((yy + xx) % 2, 255, -255), np.where(xx % 2, 255, -255), np.full((9, 10), 255)):
        planes = np.stack([pattern, -pattern, pattern])
        assert np.array_equal(interlaced.decode(interlaced.encode(planes), 3, 9, 10), planes)


def test_accepts_any_integer_dtype():
    planes = smooth_residuals((3, 5, 6), seed=2)
    ref = interlaced.encode(planes)
    for dtype in (np.int16, np.int32):
        assert interlaced.encode(planes.astype(dtype)) == ref


def test_golden_bytes():
    # Pinned: any change here changes format versions 3 and 2 (bitstream/FORMAT.md §7): the same
    # levels and coefficients, the innovations under each version's law.
    planes = np.array([
        [[3, -1, 0, 2], [1, 4, -2, 0], [0, 1, 1, -3]],
        [[2, 0, 0, 1], [1, 3, -1, 0], [0, 1, 0, -2]],
        [[1, 0, 1, 1], [0, 2, -1, 1], [1, 0, 0, -1]],
    ])
    head = bytes.fromhex(
        "514e 0000 3629"  # σ levels: plane 0 black, white; plane 1 black, white; plane 2 black, white
        "fe" "1602 00f7" "ef18 1302"  # coefficients: 1 + 3 + 5 signed bytes
    )
    data = interlaced.encode(planes)
    assert data == head + bytes.fromhex("ee39beec798e9ab1")  # innovations, trailing zero bytes stripped
    assert np.array_equal(interlaced.decode(data, 3, 3, 4), planes)
    v2 = interlaced.encode(planes, portable=False)
    assert v2 == head + bytes.fromhex("ff39beec9aef5d38")
    assert np.array_equal(interlaced.decode(v2, 3, 3, 4, portable=False), planes)


def test_layout_levels_then_coefficients():
    planes = smooth_residuals((3, 16, 16), seed=3)
    data = interlaced.encode(planes)
    levels, coefs = data[:6], data[6:15]
    white = (np.indices((16, 16)).sum(0) % 2).astype(bool)
    # plane 0's black squares have no context at all: their level is the plain best level
    assert levels[0] == residual.best_level(planes[0][~white], interlaced.BOUND)
    # plane 0 has one coefficient, the weight of n4 on white squares: positive on a smooth field
    assert 0 < coefs[0] <= interlaced.COEF_LIMIT


def test_context_pays_off_on_correlated_residuals():
    planes = smooth_residuals((3, 32, 32), seed=4)
    v2 = len(interlaced.encode(planes))
    v1 = len(residual.encode_planes(planes.reshape(3, -1)))
    plain = sum(len(residual.encode(p, residual.best_level(p))) for p in planes.reshape(3, -1))
    assert v2 < 0.9 * v1 < 0.9 * plain


def test_white_noise_costs_little_extra():
    # no structure to find: the side information (6 levels + 9 coefficients) and a slightly
    # worse σ fit are all it may cost over the plain per-plane Gaussian code
    planes = np.random.default_rng(5).integers(-20, 21, (3, 32, 32))
    v2 = len(interlaced.encode(planes))
    plain = sum(len(residual.encode(p, residual.best_level(p))) + 1 for p in planes.reshape(3, -1))
    assert v2 <= plain + 24


@pytest.mark.parametrize("bad", [np.zeros((3, 4)), np.zeros((1, 2, 2, 2), np.int64), np.zeros((3, 2, 2)),
                                 np.full((1, 2, 2), 256), np.full((1, 2, 2), -256)])
def test_encode_bad_input(bad):
    with pytest.raises(ValueError):
        interlaced.encode(bad)


def test_decode_bad_input():
    with pytest.raises(ValueError, match="too short"):
        interlaced.decode(bytes(14), 3, 4, 4)  # 6 levels + 9 coefficients needed
    with pytest.raises(ValueError, match="coefficient out of range"):
        interlaced.decode(bytes([64] * 6) + b"\x80" + bytes(8), 3, 4, 4)  # −128 is never written
