"""The report commands in --quick mode: the files they write, their CompressAI structure, and
the consistency of practice (real .ddc prefixes) with theory (the bound of the same images)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common.bjontegaard import bd_rate

from helpers import CIFAR, ROOT

needs_cifar = pytest.mark.skipif(not CIFAR.exists(), reason="../shared/data/cifar-10-subset not present")
COMPRESSAI = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def test_bd_rate_of_a_scaled_curve_is_the_scale():
    rate, psnr = np.array([0.25, 0.5, 1.0, 2.0]), np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, psnr, 0.8 * rate, psnr) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(rate, psnr, 1.5 * rate, psnr) == pytest.approx(50.0, abs=1e-9)


def test_bd_rate_of_a_quality_shift_follows_the_slope():
    # 3 dB per doubling of rate: +1 dB at equal rate is 2^(-1/3) of the rate at equal quality
    rate, psnr = np.array([0.25, 0.5, 1.0, 2.0]), np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, psnr, rate, psnr + 1) == pytest.approx((2 ** (-1 / 3) - 1) * 100, abs=1e-6)
    assert bd_rate(rate, psnr, rate, psnr + 20) is None  # no shared quality range


def closed_form_bound(optimal: bool = True) -> dict:
    """A bound document of T = 1000 whose curve is known by hand: after n reverse steps the rate is
    n/1000 bits/dim under σ*² (twice that under σ² = β), and x̂_0 at t has PSNR 50 − 0.04·t dB, so
    holding x_t costs 3(1001 − t)/1000 bpp at that PSNR: bpp = 0.075·PSNR − 0.747 under σ*²."""
    steps = np.arange(1, 1001)
    t = np.arange(1, 1001)
    by_variance = {"fixedlarge": {"cumulative_rate_bits_per_dim": (2 * steps / 1000).tolist()}}
    if optimal:
        by_variance["optimal"] = {"cumulative_rate_bits_per_dim": (steps / 1000).tolist()}
    return {"by_variance": by_variance, "rmse_0_255_by_t": (255 / 10 ** ((50 - 0.04 * t) / 20)).tolist()}


def test_ideal_curve_of_a_closed_form_bound():
    from benchmarks.common.theory import ideal_curve

    curve = ideal_curve(closed_form_bound())
    psnr = np.linspace(15, 45, 30)  # 30 points evenly spaced in PSNR over the window [15, 45] dB
    assert curve["variance"] == "optimal" and "σ*²" in curve["label"]
    np.testing.assert_allclose(curve["psnr"], psnr)
    np.testing.assert_allclose(curve["bpp"], 0.075 * psnr - 0.747, atol=1e-12)
    # without σ*² rates it falls back to the document's σ² = β, and says so
    fallback = ideal_curve(closed_form_bound(optimal=False))
    assert fallback["variance"] == "fixedlarge" and "β" in fallback["label"]
    np.testing.assert_allclose(fallback["bpp"], 2 * (0.075 * psnr - 0.747), atol=1e-12)
    # narrowed to the curves it is set against; never beyond its own range (10 to 49.96 dB)
    np.testing.assert_allclose(ideal_curve(closed_form_bound(), span=[[20.0, 31.0], [25.0, 40.0]])["psnr"],
                               np.linspace(20, 40, 30))
    wide = ideal_curve(closed_form_bound(), low=0, high=100)
    assert wide["psnr"][0] == pytest.approx(10.0) and wide["psnr"][-1] == pytest.approx(49.96)
    # files costing 25 % more at every PSNR read as +25 % against it
    assert bd_rate(curve["bpp"], curve["psnr"], 1.25 * np.array(curve["bpp"]), curve["psnr"]) == pytest.approx(25.0)


def test_pooled_psnr_is_that_of_the_mean_mse():
    from diffcodec.quality import pooled_psnr, psnr_from_rmse

    # MSEs 255²/100 and 255²/10⁴: their mean is 255² · 0.00505
    assert pooled_psnr([20.0, 40.0]) == pytest.approx(-10 * np.log10(0.00505))
    assert pooled_psnr([[20.0, 40.0], [30.0, 30.0]], axis=1) == pytest.approx([-10 * np.log10(0.00505), 30.0])
    assert psnr_from_rmse(2.55) == pytest.approx(40.0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def run(module, results, *args):
    """``python -m benchmarks.MODULE --quick``: its work is bounded by --quick (two images, fast
    settings), not by a wall-clock limit, which a busy machine would break."""
    env = os.environ | {"DIFFCODEC_BENCH_RESULTS": str(results)}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def check_report(md: Path, command: str):
    text = md.read_text()
    for field in ("**Command:**", "**Data:**", "**Model:**", "**Device:**", "**Libraries:**"):
        assert field in text
    assert command in text


@needs_cifar
@pytest.mark.slow
def test_split_quick(results):
    run("split", results)
    folder = results / "quick" / "cifar10"
    doc = json.loads((folder / "split-default.json").read_text())
    r = doc["results"]
    assert r["variance"] == ["fixedlarge", "fixedsmall", "optimal"]  # the default model has an error table
    for rate, dist, total, bpp in zip(r["rate_bits_per_dim"], r["distortion_bits_per_dim"],
                                      r["total_bits_per_dim"], r["bpp"]):
        assert rate > 0 and dist > 0 and total == pytest.approx(rate + dist) and bpp == pytest.approx(3 * total)
    assert r["distortion_bits_per_dim"][0] == r["distortion_bits_per_dim"][1]  # L_0 does not depend on σ_t², t ≥ 2
    assert r["rate_bits_per_dim"][2] < min(r["rate_bits_per_dim"][:2])  # the optimal variances' rate is the least
    assert doc["paper"]["total_bits_per_dim"] == 3.75
    check_report(folder / "split-default.md", "python -m benchmarks.split --quick")
    assert (folder / "split-default.png").stat().st_size > 1000


@needs_cifar
@pytest.mark.slow
def test_rd_curve_quick_practice_lies_on_theory(results):
    run("rd_curve", results)
    folder = results / "quick" / "cifar10"
    doc = json.loads((folder / "rd_curve-default.json").read_text())
    r = doc["results"]
    assert set(COMPRESSAI) <= r.keys() and len({len(v) for v in r.values()}) == 1
    assert r["t"] == sorted(r["t"], reverse=True) and r["bpp"] == sorted(r["bpp"])
    assert r["rmse_0_255"] == sorted(r["rmse_0_255"], reverse=True)
    # every prefix costs at least its share of the bound's rate, and the full file is lossless
    for bits, theory in zip(r["bits_per_dim"], r["theory_rate_bits_per_dim"]):
        assert bits > theory
    assert doc["lossless"]["full_rate"] == doc["lossless"]["exact"] == 2
    assert doc["lossless"]["ratio"] > 1
    # the bound under the optimal variances the files are coded with: below β's, and still below the files
    optimal = doc["lossless"]["theory_optimal_total_bits_per_dim"]
    assert optimal < doc["lossless"]["theory_total_bits_per_dim"] < doc["lossless"]["bits_per_dim"]
    for bits, theory in zip(r["bits_per_dim"], r["theory_optimal_rate_bits_per_dim"]):
        assert bits > theory
    assert "ratio σ*²" in (folder / "rd_curve-default.md").read_text()
    # x̂_0 of the coded chain is no worse than that of x_t ~ q(x_t|x_0) (the bound's, on the same
    # images): greedy files (the default) are better there, since their x_t lie nearer q's mean
    # (exact PFR's samples of q: tests/test_selection.py)
    for t, rmse, theory in zip(r["t"], r["rmse_0_255"], r["theory_rmse_0_255"]):
        assert 0.5 < rmse / theory < 1.15, (t, rmse, theory)
    check_report(folder / "rd_curve-default.md", "python -m benchmarks.rd_curve --quick")
    assert len(list((folder / "ddc-default").glob("cifar10-test-*.ddc"))) == 2
    # the model's ideal curve beside the files: 30 points even in PSNR over the files' range, σ*²
    ideal = doc["ideal_curve"]
    assert ideal["variance"] == "optimal" and len(ideal["bpp"]) == len(ideal["psnr"]) == 30
    np.testing.assert_allclose(np.diff(ideal["psnr"]), np.diff(ideal["psnr"])[0])
    pooled = r["psnr-rgb-pooled"]
    assert ideal["psnr"][0] == pytest.approx(max(15, min(pooled))) and ideal["psnr"][-1] <= max(pooled) + 1e-9
    assert np.isfinite(ideal["bd_rate_files_vs_ideal"])
    assert ideal["bd_rate_files_vs_ideal"] == pytest.approx(bd_rate(ideal["bpp"], ideal["psnr"], r["bpp"], pooled))
    text = (folder / "rd_curve-default.md").read_text()
    assert "model's ideal curve (bound, σ*²)" in text and f"{ideal['bd_rate_files_vs_ideal']:+.1f} %" in text


@needs_cifar
@pytest.mark.slow
def test_compare_quick(results):
    out = run("compare", results)
    folder = results / "quick" / "cifar10"
    for name in ("diffcodec-mean", "diffcodec-flow", "jpeg420", "webp", "avif"):
        doc = json.loads((folder / f"compare-default-{name}.json").read_text())
        assert {"name", "description", "results"} <= doc.keys()
        r = doc["results"]
        assert set(COMPRESSAI) <= r.keys() and len({len(r[k]) for k in COMPRESSAI}) == 1
        assert all(0 < m <= 1 for m in r["ms-ssim-rgb"])
    text = (folder / "compare-default.md").read_text()
    assert "BD-rate" in text and "JPEG 4:2:0" in text
    assert "diffcodec mean" in out
    # the PSNR of the mean MSE, the ideal curve's convention, is at most the mean per-image PSNR
    webp = json.loads((folder / "compare-default-webp.json").read_text())["results"]
    assert all(p <= m + 1e-9 for p, m in zip(webp["psnr-rgb-pooled"], webp["psnr-rgb"]))
    # the model's ideal curve of the same images: against the files and each classic codec, finite
    ideal = json.loads((folder / "compare-default-ideal.json").read_text())
    assert ideal["variance"] == "optimal" and len(ideal["results"]["bpp"]) == 30
    pairs = {(row["test"], row["against"]): row["bd_rate"] for row in ideal["bd_rate_pooled_psnr"]}
    label = ideal["label"]
    assert set(pairs) == {("diffcodec mean", label)} | {(who, c) for c in ("JPEG 4:2:0", "WebP", "AVIF")
                                                         for who in (label, "diffcodec mean")}
    assert all(np.isfinite(v) for v in pairs.values())
    assert pairs[("diffcodec mean", label)] > 0  # real files cost more than the model's own curve
    assert "## Against the model's ideal curve" in text and f"{pairs[('diffcodec mean', label)]:+.1f}%" in text


@needs_cifar
def test_speed_quick(results):
    run("speed", results)
    doc = json.loads((results / "quick" / "speed" / "speed.json").read_text())
    r = doc["results"]
    assert set(r) >= {"bpp", "encoding_time", "decoding_time"} and len({len(v) for v in r.values()}) == 1
    assert all(s > 0 for s in r["encoding_time"] + r["decoding_time"])
    (train,) = doc["training"]
    assert train["config"] == "tiny" and train["parameters"] == 1_113_955 and train["steps_per_s"] > 0
    check_report(results / "quick" / "speed" / "speed.md", "python -m benchmarks.speed --quick")


def test_default_curves_are_shown_beside_only_for_the_same_images(tmp_path):
    from benchmarks.compare import stored_default_curves

    data = "Kodak PhotoCD, 12 of 24 images from kodak, centre crops 128×128"
    curve = {"bpp": [0.1, 1.0], "psnr-rgb": [20.0, 30.0]}
    for how in ("mean", "flow"):
        (tmp_path / f"compare-default-c128-diffcodec-{how}.json").write_text(json.dumps(
            {"description": f"diffcodec, model default, x, prefixes of .ddc files of {data}", "results": curve}))
    assert stored_default_curves(tmp_path, "-c128", data) == {"default-mean": curve, "default-flow": curve}
    assert stored_default_curves(tmp_path, "-c128", data.replace("12 of", "4 of")) == {}
    assert stored_default_curves(tmp_path, "-c64", data) == {}


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "kodak").exists(), reason="../shared/data/kodak not present")
def test_local_evaluation_quick_pairs_the_tilings(results):
    """One tile covering the crop is the whole-image evaluation: the paired difference is exactly 0;
    tiles of 16 are another function and differ."""
    run("studies.local_evaluation", results)
    doc = json.loads((results / "quick" / "kodak" / "local_evaluation-photo-c32.json").read_text())
    whole, one_tile, small = doc["rows"]
    assert whole["difference"] == 0 and one_tile["difference"] == 0 and one_tile["work_ratio"] == 1
    assert small["difference"] != 0 and small["work_ratio"] > 1 and small["largest_window_pixels"] < 32 * 32
    check_report(results / "quick" / "kodak" / "local_evaluation-photo-c32.md", "python -m benchmarks.studies.local_evaluation --quick")


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "kodak").exists(), reason="../shared/data/kodak not present")
def test_large_images_quick_measures_real_files(results):
    run("large_images", results)
    doc = json.loads((results / "quick" / "kodak" / "large_images.json").read_text())
    (row,) = doc["rows"]
    assert row["width"] * row["height"] == pytest.approx(20_000, rel=0.1) and row["bytes"] > 20
    assert row["encode_peak_gb"] > 0.1 and row["decode_peak_gb"] > 0.1 and 0 < row["psnr"] < 60
    assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (row["width"] * row["height"]))
