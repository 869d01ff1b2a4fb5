"""BD-rate from the ``bjontegaard`` package against the figures of the hand-written code it
replaced (cubic least-squares fits of log rate against quality, of degree min(3, points − 1)).

Those figures were computed with that code (commit a7261e9) and are pinned here. The package's
``method="cubic"`` is the same fit, so it gives them to rounding wherever both curves have four
points or more. ``benchmarks.common.bjontegaard.bd_rate`` uses its ``"pchip"`` (piecewise cubic
interpolation, the video-coding common test conditions' method), which agrees exactly where log
rate is linear in quality (two-point curves, log-linear curves) and elsewhere differs by the
measured amounts pinned below, to 1e-6 percentage points."""

import warnings

import bjontegaard
import numpy as np
import pytest

from benchmarks.common.bjontegaard import bd_rate

# benchmarks/results/cifar10/compare-default-webp.json and compare-default-diffcodec-mean.json
WEBP_BPP = [0.73546875, 0.99859375, 1.12625, 1.29, 1.4228125, 1.531875, 1.64296875, 1.75203125, 1.97375,
            2.19109375, 2.40265625, 2.6196875, 2.74640625, 3.19703125, 3.74609375, 4.559375, 5.29984375,
            5.81734375, 6.5509375, 7.26625]
WEBP_PSNR = [21.76330435798234, 24.01063009491798, 24.865275353464718, 25.739436912741347, 26.44907177482673,
             27.066249350095124, 27.56539554712102, 28.101839878962465, 29.076325707227312, 29.90507698213262,
             30.623190489254135, 31.253265123284965, 31.654280171325176, 32.83806120119053, 34.02252312305784,
             35.455685565830116, 36.42614777019721, 36.99180075837073, 37.538345168968206, 37.89872770012604]
WEBP_MS_SSIM = [0.7974618743010571, 0.8979808322678844, 0.920010101058066, 0.936040752853331, 0.945798934211084,
                0.9523843870331583, 0.9575503543043686, 0.9627372254066191, 0.9701118717948986,
                0.974581192349327, 0.9784832480709887, 0.9810296640417822, 0.9826367473546713,
                0.9865269311379832, 0.9895665985481205, 0.9921500523297864, 0.9934071300244388,
                0.9940706793954583, 0.9944823117818301, 0.9949002993245063]
MEAN_BPP = [0.345859375, 0.708046875, 1.19890625, 1.98515625, 3.50359375]
MEAN_PSNR = [16.69971012657438, 22.093096235328268, 25.502799821609404, 28.972981358299503, 33.40784547822099]
MEAN_MS_SSIM = [0.4742839034409351, 0.8217156202818058, 0.927078709251949, 0.9683473562838585, 0.9891106304263247]

# name: (reference rate, quality, test rate, quality), the hand-written code's BD-rate (%), and
# PCHIP minus that (percentage points)
CASES = {
    "two points": (([0.5, 2.0], [28.0, 34.0], [0.4, 1.8], [27.5, 34.5]), -15.147186257614253, 0.0),
    "log-linear": (([0.25, 0.5, 1.0, 2.0, 4.0], [24.0, 27.0, 30.0, 33.0, 36.0],
                    [0.3, 0.6, 1.2, 2.4], [25.0, 28.0, 31.0, 34.0]), -4.755936881907652, 0.0),
    "three points": (([0.5, 1.0, 2.0], [28.0, 31.5, 34.0], [0.45, 0.9, 1.9], [28.2, 31.4, 34.5]),
                     -9.9018069796319, -0.08482981236961),
    "four points": (([100, 200, 400, 800], [30.0, 33.0, 36.0, 38.5], [90, 185, 380, 790], [30.2, 33.1, 36.3, 38.6]),
                    -10.491164310286049, -0.09659453053236),
    # a stored report's figures: compare-default.md's "diffcodec mean against WebP" (-1.1 % and -22.8 %)
    "cifar10 mean vs webp, PSNR": ((WEBP_BPP, WEBP_PSNR, MEAN_BPP, MEAN_PSNR), -1.1006588466731637, -0.13033395019659),
    "cifar10 mean vs webp, MS-SSIM": ((WEBP_BPP, WEBP_MS_SSIM, MEAN_BPP, MEAN_MS_SSIM),
                                      -22.75065074121162, 20.21151449585206),
}


@pytest.mark.parametrize("name", [n for n, (curves, _, _) in CASES.items() if min(map(len, curves)) >= 4])
def test_the_packages_cubic_fit_gives_the_hand_written_figures(name):
    curves, today, _ = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = bjontegaard.bd_rate(*curves, method="cubic", require_matching_points=False, min_overlap=0)
    assert value == pytest.approx(today, abs=1e-9)


@pytest.mark.parametrize("name", list(CASES))
def test_pchip_against_the_hand_written_figures(name):
    curves, today, difference = CASES[name]
    assert bd_rate(*curves) - today == pytest.approx(difference, abs=1e-6)


def test_points_that_do_not_count_and_points_of_equal_quality():
    rate, psnr = [0.5, 1.0, 2.0, 4.0], [28.0, 31.0, 33.0, 36.0]
    test = [0.45, 0.95, 1.8, 3.9]
    reference = bd_rate(rate, psnr, test, psnr)
    # infinite quality (a lossless point) and zero rate are left out, as before
    assert bd_rate(rate + [8.0, 0.0], psnr + [np.inf, 37.0], test, psnr) == pytest.approx(reference, abs=1e-12)
    # two points of the same quality count as one at the mean of their log rates
    assert bd_rate(rate[:2] + [1.0, 4.0] + rate[2:], psnr[:2] + [33.0, 33.0] + psnr[2:], test, psnr) == pytest.approx(
        bd_rate(rate[:2] + [2.0] + rate[3:], psnr, test, psnr), abs=1e-12)
    # order does not matter
    assert bd_rate(rate[::-1], psnr[::-1], test, psnr) == pytest.approx(reference, abs=1e-12)
    assert bd_rate(rate, psnr, test, [q + 10 for q in psnr]) is None
    with pytest.raises(ValueError):
        bd_rate([1.0, 2.0], [30.0, np.nan], test, psnr)
