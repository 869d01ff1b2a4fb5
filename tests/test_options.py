"""The settings and results that the command line, the Python API and the Pillow plugin share:
each has one home in the library, and these tests pin what it accepts, refuses and returns."""

from __future__ import annotations

import dataclasses

import pytest

from bitstream.container import unpack
from diffcodec.checkpoint import load_model
from diffcodec.codec import DEFAULT_STOP, CodecConfig, CodecError, Stop, choose_stop, model_for_file
from diffcodec.errors import CheckpointError, DiffcodecError, OptionError
from diffcodec.tiling import Tiling
from helpers import ROOT

GOLDEN = ROOT / "tests" / "golden"


def test_choose_stop_takes_at_most_one_target():
    assert choose_stop() == DEFAULT_STOP == Stop(psnr=35.0)
    assert choose_stop(lossless=True) == Stop() and Stop().full_rate
    assert choose_stop(upto_t=0) == Stop(upto_t=0)
    assert choose_stop(bpp=0.5) == Stop(bpp=0.5) and choose_stop(psnr=30.0) == Stop(psnr=30.0)
    with pytest.raises(OptionError, match="^choose one of bpp, psnr: at most one target applies$"):
        choose_stop(bpp=1.0, psnr=30.0)
    with pytest.raises(OptionError, match="^choose one of --upto-t, --lossless: "):
        choose_stop(upto_t=5, lossless=True, spell=lambda field: "--" + field.replace("_", "-"))
    # one class serves both callers: the command line catches DiffcodecError, the API's callers ValueError
    assert issubclass(OptionError, DiffcodecError) and issubclass(OptionError, ValueError)


def test_the_config_checks_its_call_budget():
    assert CodecConfig(chunk_bits=1.25).chunk_bits == 1.25
    with pytest.raises(OptionError, match="multiple of 0.25"):
        CodecConfig(chunk_bits=1.3)


@pytest.mark.parametrize("text, tiling", [("0", Tiling()), ("128", Tiling(128, 0)), ("384:16", Tiling(384, 16)),
                                          ("16:0", Tiling(16, 0))])
def test_tiling_parses_what_tile_accepts(text, tiling):
    assert Tiling.parse(text) == tiling


@pytest.mark.parametrize("text, message", [("x", "expected auto, 0"), ("-5", "expected auto, 0"),
                                           ("0:4", "expected auto, 0"), ("8", "SIDE must be 16"),
                                           ("70000", "SIDE must be 16"), ("128:70000", "HALO at most 65536")])
def test_tiling_refuses_the_rest(text, message):
    with pytest.raises(ValueError, match=message):
        Tiling.parse(text)


def test_model_for_file_finds_the_shipped_model_by_hash_and_checks_a_given_one():
    header = unpack((GOLDEN / "cifar0_default_fast.ddc").read_bytes()).header
    assert model_for_file(header).name == "default"
    default = load_model("default")
    assert model_for_file(header, default) is default  # a Model is used as it is
    with pytest.raises(CodecError, match="not with 'cifar10'"):
        model_for_file(header, "cifar10")
    with pytest.raises(CodecError, match="no shipped model has hash 00000000"):
        model_for_file(dataclasses.replace(header, model_hash=bytes(4)))


def test_a_model_names_the_size_it_cannot_take():
    model = load_model("default")
    f = model.unet_config.downsampling_factor
    model.check_size(4 * f, 2 * f, "an image")
    with pytest.raises(CheckpointError, match=f"^--size 33 is not divisible by the model's factor {f}$"):
        model.check_size(33, 33, "--size 33")


def test_the_stats_json_keeps_its_layout():
    """``--stats`` writes ``EncodeStats.to_dict()``: the keys that scripts read, pinned (the
    typed stats replaced a dict with exactly these)."""
    import numpy as np

    from diffcodec.codec import compress
    from diffcodec.images import CodecImage, ImageMode
    from helpers import FAST

    image = CodecImage(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8), ImageMode.RGB)
    stats = compress(image, load_model("default"), FAST, Stop()).stats
    doc = stats.to_dict()
    assert list(doc) == ["header_bytes", "file_bytes", "pixels", "dims", "bpp", "steps", "records", "lossless",
                         "config", "record_count", "target"]
    assert list(doc["steps"][0]) == ["step", "t", "s", "kl_bits", "chunks", "ideal_coded_bits"]
    assert list(doc["records"][0]) == ["record", "t", "file_bytes", "psnr_mean", "rmse_0_255", "z_mean", "z_var",
                                       "z_ks", "z_n"]
    assert doc["records"][-1] == {"record": stats.record_count - 1, "t": 0, "file_bytes": stats.file_bytes,
                                  "psnr_mean": None, "rmse_0_255": 0.0}
    assert list(doc["config"]) == ["t_stop", "groups", "log2_candidates", "chunk_bits", "variance", "layout", "seed",
                                   "selection", "version", "end_t"]
    assert list(doc["lossless"]) == ["guard_listed", "guard_bytes", "guard_margin"]
    assert doc["target"] == {"rule": "full_rate", "value": None, "met": True, "reached": 0}
    assert doc["dims"] == 3 * doc["pixels"] == 192 and stats.last_record.t == 0


def test_stats_give_each_records_pictures_as_a_decoder_shows_them(tmp_path):
    """Mean and flow PSNR and MS-SSIM per record (#26's chain health): the encoder's mean figures
    and measure_flow's flow figures are those of the pictures decode writes at that record."""
    import json

    import numpy as np
    from PIL import Image

    from diffcodec.quality import ms_ssim_rgb, psnr_rgb
    from helpers import FAST_CLI, run

    rgb = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    ddc, stats = tmp_path / "a.ddc", tmp_path / "a.json"
    assert run("encode", tmp_path / "a.png", "-o", ddc, "--stats-flow", *FAST_CLI).exit_code == 1  # needs --stats
    result = run("encode", tmp_path / "a.png", "-o", ddc, "--upto-t", 20, "--stats", stats, "--stats-flow", *FAST_CLI)
    assert result.exit_code == 0, result.output
    records = json.loads(stats.read_text())["records"]
    assert len(records) >= 2 and all(r["t"] > 0 for r in records)
    for r in (records[0], records[-1]):
        for how, psnr_key, ssim_key in (("mean", "psnr_mean", "ms_ssim_mean"), ("flow", "psnr_flow", "ms_ssim_flow")):
            out = tmp_path / f"{how}{r['t']}.png"
            decoded = run("decode", ddc, "-o", out, "--upto-t", r["t"], "--reconstruct", how)
            assert decoded.exit_code == 0, decoded.output
            shown = np.asarray(Image.open(out).convert("RGB"))
            assert r[psnr_key] == pytest.approx(psnr_rgb(rgb, shown), abs=1e-9)
            assert r[ssim_key] == pytest.approx(ms_ssim_rgb(rgb, shown), abs=1e-9) and 0 < r[ssim_key] <= 1
