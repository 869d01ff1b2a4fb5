"""The classic-codec and lossless benchmarks, run as a user would (``--quick``), and their files."""

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.common import datasets, report
from benchmarks.common.pillow_codecs import LosslessCodec, roundtrip

CIFAR = datasets.SHARED_DATA / "cifar-10-subset"
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"{CIFAR} not present")


def run_module(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=report.ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def check_provenance(markdown: str, module: str):
    for key in ("**Command:**", "**Data:**", "**Model:**", "**Device:**"):
        assert key in markdown
    assert f"python -m benchmarks.{module}" in markdown


@pytest.fixture(scope="module")
def classic_quick():
    run_module("benchmarks.classic", "--dataset", "cifar10", "--quick")
    return report.results_dir("cifar10", quick=True)


@needs_cifar
def test_classic_quick_files(classic_quick):
    files = sorted(classic_quick.glob("classic-*.json"))
    assert len(files) >= 4  # JPEG ×2, WebP, JPEG 2000 at least; AVIF / JPEG XL where available
    for path in files:
        doc = report.read_compressai(path)
        res = doc["results"]
        for key in report.COMPRESSAI_KEYS + ("quality",):
            assert key in res, (path.name, key)
        assert len({len(v) for v in res.values()}) == 1 and len(res["bpp"]) >= 2
        order = np.argsort(res["quality"])
        bpp = np.asarray(res["bpp"])[order]
        assert np.all(np.diff(bpp) > 0), (path.name, "bpp must rise with quality")
        by_rate = np.argsort(res["bpp"])
        assert np.all(np.diff(np.asarray(res["psnr-rgb"])[by_rate]) > 0), (path.name, "PSNR must rise with bpp")
        assert all(0 < v <= 1 for v in res["ms-ssim-rgb"])
        assert all(t > 0 for t in res["encoding_time"] + res["decoding_time"])
        assert "2 scale" in doc["ms_ssim"]  # CIFAR's small-image convention is stated
    md = (classic_quick / "classic.md").read_text()
    check_provenance(md, "classic")
    assert "reference figures" in md and (classic_quick / "classic.png").stat().st_size > 0


@pytest.mark.parametrize("codec", list(LosslessCodec))
def test_lossless_roundtrip_is_exact(codec):
    if not codec.available():
        pytest.skip(f"{codec.spec.label} not available")
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(roundtrip(codec.spec, rgb).decoded, rgb)


@pytest.fixture(scope="module")
def lossless_quick():
    from diffcodec.checkpoint import CheckpointError, load_model

    try:
        load_model("default")
    except (CheckpointError, OSError) as e:
        pytest.skip(f"no default model: {e}")
    run_module("benchmarks.lossless", "--quick")
    return report.results_dir("cifar10", quick=True)


@needs_cifar
def test_lossless_quick_files(lossless_quick):
    doc = report.read_compressai(lossless_quick / "lossless-default.json")
    res = doc["results"]
    assert len({len(v) for v in res.values()}) == 1
    rows = [dict(zip(res, values)) for values in zip(*res.values())]
    classic = [r for r in rows if r["codec"] != "diffcodec"]
    assert {r["codec"] for r in classic} >= {"png", "webp-lossless"}
    for r in classic:  # the benchmark itself asserts decoded == source; every image is counted exact
        assert r["exact"] == r["images"] and 0 < r["bits_per_dim"] < 8.5
        assert r["bpp"] == pytest.approx(3 * r["bits_per_dim"])
    (dc,) = [r for r in rows if r["codec"] == "diffcodec"]
    assert dc["images"] == 2 and dc["exact"] == 2 and dc["bits_per_dim"] > 0
    md = (lossless_quick / "lossless-default.md").read_text()
    check_provenance(md, "lossless")
    assert "5.87" in md and "4.71" in md  # reference figures next to the measured figures
    assert "4.08" in md or not LosslessCodec.JXL.available()
    assert (lossless_quick / "lossless-default.png").stat().st_size > 0
    json.dumps(doc)  # plain JSON throughout
