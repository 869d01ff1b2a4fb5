"""The encoder's stop rules at their edges (a --bpp budget that cannot be met, one passed in the
middle of a record, targets only the lossless record meets), the estimate printed before long
encodes, the decoder's progress total, and one record count for encode, decode and info.
Tiny images and fast settings keep every encode to seconds."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from bitstream.container import ImageMode, unpack
from diffcodec.checkpoint import load_model
from diffcodec.codec import (
    FULL_RATE_T_STOP,
    LOSSY_T_STOP,
    CodecConfig,
    Stop,
    compress,
    decompress,
    estimate_encode,
    resolve_t_stop,
)
from diffcodec.codec import cost
from diffcodec.codec.config import max_finite_psnr
from diffcodec.codec.plan import make_plan
from diffcodec.codec.stats import Target
from diffcodec.images import CodecImage

from helpers import run

FAST = ["--groups", "4", "--candidates", "4", "--chunk-bits", "2"]
AUTO = CodecConfig(groups=4, log2_candidates=4, chunk_bits=2.0)  # t_stop left to the stop rule
FIXED = CodecConfig(t_stop=10, groups=12, log2_candidates=4, chunk_bits=2.0)


def noise_image(h: int, w: int, seed: int = 0) -> CodecImage:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return CodecImage(rgb, ImageMode.RGB)


def test_a_budget_below_the_first_record_is_reported_as_missed(model):
    image = CodecImage(np.full((16, 16, 3), 128, np.uint8), ImageMode.RGB)
    out = compress(image, model, AUTO, Stop(bpp=0.01))
    st = out.stats
    assert st.record_count == 1 == len(unpack(out.data).records)  # the smallest file: one record
    assert st.bpp > 0.01
    assert st.target == Target("bpp", 0.01, False, st.bpp)
    first = make_plan(1000, LOSSY_T_STOP, 4, unpack(out.data).header.layout).record_ends[0]
    assert len(st.steps) == first  # nothing coded past the first record


def test_coding_stops_within_the_first_record_past_the_budget(model):
    image = noise_image(16, 16)
    plan = make_plan(1000, 10, 12, unpack(compress(image, model, FIXED, Stop(upto_t=500)).data).header.layout)
    assert plan.record_ends[:5] == (2, 5, 6, 8, 11)
    third = compress(image, model, FIXED, Stop(upto_t=plan.t_after_record(3)))  # records 0..3
    budget = (len(third.data) + 1) * 8 / 256
    # version 4 (no end_t): the file ends at a record; version 6's landing is in test_landing
    out = compress(image, model, dataclasses.replace(FIXED, version=4), Stop(bpp=budget))
    assert out.data == third.data  # the largest prefix within the budget, as before
    assert out.stats.target.met and out.stats.record_count == 4
    # record 4 (steps 9..11) costs hundreds of bytes: its first step is enough to pass the budget
    assert len(out.stats.steps) == plan.record_ends[3] + 1


def test_psnr_only_the_lossless_image_has_is_full_rate(model):
    assert max_finite_psnr(256) == pytest.approx(10 * np.log10(255**2 * 768))
    assert resolve_t_stop(AUTO, Stop(psnr=200.0), 256) == FULL_RATE_T_STOP
    assert resolve_t_stop(AUTO, Stop(psnr=50.0), 256) == LOSSY_T_STOP
    assert resolve_t_stop(AUTO, Stop(psnr=200.0)) == LOSSY_T_STOP  # the size unknown: as before
    image = noise_image(8, 8)
    full = compress(image, model, AUTO, Stop())
    high = compress(image, model, AUTO, Stop(psnr=200.0))
    assert high.data == full.data and high.stats.full_rate_retry is None  # one encode, no retry
    assert high.stats.target.met


@pytest.mark.parametrize("stop", [Stop(bpp=100.0), Stop(psnr=60.0)])
def test_targets_only_the_lossless_record_meets_are_never_larger_than_full_rate(model, stop):
    image = noise_image(8, 8, seed=3)  # noise: no lossy prefix gets near 60 dB (max finite: 71)
    full = compress(image, model, AUTO, Stop())
    out = compress(image, model, AUTO, stop)
    retry = out.stats.full_rate_retry
    assert retry.full_rate_bytes == len(full.data)
    assert len(out.data) == min(len(full.data), retry.lossy_t_stop_bytes) <= len(full.data)
    assert (out.data == full.data) == (retry.kept == "full_rate")
    assert out.stats.target.met
    decoded = decompress(out.data, model)
    assert decoded.t == 0 and decoded.exact and np.array_equal(decoded.image.rgb, image.rgb)


def test_cli_warns_when_the_budget_is_missed_and_counts_records_like_decode_and_info(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(grey)
    result = run("encode", grey, "-o", tmp_path / "g.ddc", "--bpp", 0.01, *FAST)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--bpp 0.01 is not met" in warnings[0], result.stderr
    assert re.search(r"\d\.\d{3} bpp", warnings[0])
    # RGBA: the alpha record counts as a record everywhere
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 4), dtype=np.uint8)).save(rgba)
    enc = run("encode", rgba, "-o", tmp_path / "a.ddc", "--lossless", *FAST)
    dec = run("decode", tmp_path / "a.ddc", "-o", tmp_path / "a.png")
    info = run("info", tmp_path / "a.ddc", "--json")
    assert enc.exit_code == dec.exit_code == info.exit_code == 0
    count = len(unpack((tmp_path / "a.ddc").read_bytes()).records)
    assert f"(8×8, {count} records)" in enc.stdout
    assert f"(lossless, {count} records)" in dec.stdout
    assert len(__import__("json").loads(info.stdout)["records"]) == count


def test_estimate_grows_with_the_work(model):
    config = CodecConfig(log2_candidates=12)  # the default is 2^16 up to 64×64 pixels
    assert estimate_encode(model, 32, 32, CodecConfig(), Stop()).seconds > estimate_encode(model, 32, 32, config,
                                                                                           Stop()).seconds
    small, big = (estimate_encode(model, s, s, config, Stop()) for s in (32, 128))
    assert big.seconds > 16 * small.seconds * 0.9 and small.seconds > 0
    cheap = estimate_encode(model, 128, 128, CodecConfig(log2_candidates=8), Stop())
    assert cheap.seconds < big.seconds  # fewer candidates to score
    v3 = [estimate_encode(model, 128, 128, CodecConfig(log2_candidates=k, version=3), Stop()) for k in (12, 8)]
    assert v3[1].seconds < v3[0].seconds  # fewer candidates to score in version 3 too ...
    assert big.seconds < v3[0].seconds  # ... and version 4 scores 3 × faster than its exact kernel
    lossy = estimate_encode(model, 128, 128, config, Stop(psnr=35.0))
    assert lossy.at_most and not lossy.lossless and lossy.seconds < big.seconds  # no float64 replay
    assert big.lossless and not big.at_most and big.steps == 40
    assert "up to about" in lossy.describe() and big.describe().startswith("about")


def test_a_bigger_network_is_estimated_by_its_floating_point_operations(model):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from diffcodec.unet import CONFIGS, UNet

    big = load_model("cifar10")
    assert cost.network_cost_ratio(model.unet_config, 32, 32) == 1.0  # default is the calibrated `tiny`

    def counted(config, device):  # by operation; on the CPU attention runs as one fused kernel, not counted
        with torch.device(device):
            net, x, t = UNet(config), torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x, t)
        return {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}

    for config in (big.unet_config, CONFIGS["tiny"]):
        meta, real = counted(config, "meta"), counted(config, "cpu")
        assert meta.pop("aten.bmm") > 0 and meta == real  # the meta count is a real pass's, plus attention
        assert sum(meta.values()) + counted(config, "meta")["aten.bmm"] == cost._flops(config, 32, 32)
    ratio = cost.network_cost_ratio(big.unet_config, 32, 32)
    assert ratio == cost._flops(big.unet_config, 32, 32) / cost._flops(CONFIGS["tiny"], 32, 32)
    assert 4 < ratio < 10  # 8× the parameters; attention and width make the rest
    c = cost.CPU_2_CORES
    network = 40 * 1024 * (c.net32_per_pixel + c.net32_per_pixel2 * 1024 + c.net64_per_pixel + c.net64_per_pixel2 * 1024)
    config = CodecConfig(log2_candidates=12, chunk_bits=5.0)
    extra = estimate_encode(big, 32, 32, config, Stop()).seconds - estimate_encode(model, 32, 32, config, Stop()).seconds
    assert extra == pytest.approx((ratio - 1) * network, rel=1e-9)


def test_cli_prints_the_estimate_and_a_faster_setting_before_long_encodes(tmp_path, monkeypatch):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    args = ("encode", img, "-o", tmp_path / "a.ddc", "--upto-t", 500, "--groups", 4, "--chunk-bits", 2, "--force")
    quiet = run(*args, "--candidates", 10)
    assert quiet.exit_code == 0 and "note:" not in quiet.stderr  # about a second
    monkeypatch.setattr(cost, "LONG_ENCODE_SECONDS", 0.0)
    loud = run(*args, "--candidates", 16)  # scoring is most of the work: 2^8 candidates save most of it
    notes = [line for line in loud.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "encoding 8×8 with 2^16 candidates takes up to about" in notes[0], loud.stderr
    assert "--candidates 8:" in notes[0]
    assert "--candidates 8:" not in run(*args, "--candidates", 10).stderr  # saves less than a quarter
    assert "--candidates 8:" not in run(*args, "--candidates", 6).stderr  # already cheap


def test_decode_progress_has_a_total(model, tmp_path):
    from pathlib import Path

    golden = (Path(__file__).parent / "golden" / "cifar0_default_fast.ddc").read_bytes()
    calls = []
    out = decompress(golden, model, upto_t=464, progress=lambda done, total: calls.append((done, total)))
    assert out.t == 464 and calls == [(0, 2), (1, 2), (2, 2)]  # the total first; the first record: 2 coded steps
    ddc = tmp_path / "g.ddc"
    ddc.write_bytes(golden)
    result = run("decode", ddc, "-o", tmp_path / "g.png", "--upto-t", 100)
    bars = [s for s in re.split(r"[\r\n]", result.stderr) if s.startswith("decode:")]
    assert result.exit_code == 0 and re.search(r"100%.*\b6/6\b", bars[-1]), bars  # records 0-2: steps 1-6
    assert re.search(r"\b0/6\b", bars[0]), bars  # the total from the first drawing on


def test_an_early_stop_ends_its_encode_bar_at_the_steps_it_coded(tmp_path):
    """The bar's total is the plan's steps and the lossless record (13 with 12 groups); an encode
    that stops at --upto-t 500 codes 2 of them, and its bar ends there at 100 %, not at 13/13."""
    img = tmp_path / "a.png"
    Image.fromarray((np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)).save(img)
    result = run("encode", img, "-o", tmp_path / "a.ddc", "--upto-t", 500, "--groups", 12, "--candidates", 6)
    bars = [s for s in re.split(r"[\r\n]", result.stderr) if s.startswith("encode:")]
    assert result.exit_code == 0 and re.search(r"\b0/13\b", bars[0]), bars
    assert re.search(r"100%.*\b2/2\b", bars[-1]), bars


@pytest.mark.parametrize("seed", range(4))
def test_record_size_lower_bound_never_exceeds_the_final_size(seed):
    """The budget check stops a record only when its bytes so far, at least, cannot fit."""
    from bitstream.index_law import IndexModel
    from bitstream.chunks import LevelModel
    from diffcodec.codec.records import RecordWriter

    rng = np.random.default_rng(seed)
    writer, levels, indices = RecordWriter(), LevelModel(), IndexModel(int(rng.integers(1, 13)), 2.0)
    bounds = []
    for i in range(1500):
        if i % 40 == 0:
            writer.level(levels, int(rng.integers(0, 60)))
        writer.index(indices, int(min(indices.size - 1, rng.zipf(1.3) - 1)))
        bounds.append(writer.bytes_at_least())
    final = len(writer.finish())
    assert bounds == sorted(bounds) and bounds[-1] <= final < bounds[-1] + 12
