"""BD-rate between two runs: zero for the same curve, the rate factor for a scaled one, and a
fixed byte offset taken off again by --minus-bytes."""

import pytest

from benchmarks.bd_between import bd_rates

BEFORE = {"bpp": [0.3, 0.7, 1.2, 2.0, 3.5], "psnr-rgb": [16.7, 22.1, 25.5, 29.0, 33.4],
          "ms-ssim-rgb": [0.47, 0.82, 0.93, 0.97, 0.99]}


def test_the_same_curve_costs_nothing_and_a_scaled_one_its_factor():
    assert all(v == pytest.approx(0.0, abs=1e-9) for v, _ in bd_rates(BEFORE, BEFORE).values())
    scaled = dict(BEFORE, bpp=[1.1 * b for b in BEFORE["bpp"]])
    assert all(v == pytest.approx(10.0, rel=1e-6) for v, _ in bd_rates(BEFORE, scaled).values())


def test_a_fixed_offset_is_taken_off_again():
    offset = dict(BEFORE, bpp=[b + 0.03125 for b in BEFORE["bpp"]])
    assert bd_rates(BEFORE, offset)["psnr-rgb"][0] > 1.0
    assert bd_rates(BEFORE, offset, minus_bpp=0.03125)["psnr-rgb"][0] == pytest.approx(0.0, abs=1e-9)
