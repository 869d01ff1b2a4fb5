"""Targets that land inside a step (diffcodec.codec.landing, format version 6's end_t): the
bisection keeps the nearest end on the target's safe side, a --psnr target ends close above it and a
--bpp budget close below it, where a version-4 file overshoots to a record; the files decode to
what the encoder measured (also under a perturbed decoder network) and their bytes are pinned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bitstream.container import ENDING_VERSION, RecordLayout, pack, unpack
from diffcodec.codec import CodecError, Stop, compress, decompress
from diffcodec.codec.landing import Attempt, land
from diffcodec.codec.plan import make_plan

from helpers import FAST, cifar_image, needs_data, perturbed

GOLDEN_V6 = Path(__file__).parent / "golden" / "cifar0_default_fast_v6_psnr.ddc"
V4 = dataclasses.replace(FAST, version=4)  # the same settings without end_t: files end at a record


def psnr_of(t: int) -> float:
    return 40.0 - 0.1 * t  # a PSNR falling with t, as x̂_0's does


def size_of(t: int) -> int:
    return 1000 - 3 * t  # a file shrinking with t


@pytest.mark.parametrize("target", [33.05, 33.5, 33.95])
def test_a_psnr_target_takes_the_largest_end_that_reaches_it(target):
    tried = []

    def attempt(t):
        tried.append(t)
        return Attempt(t, psnr_of(t), size_of(t))

    final = land(70, Attempt(60, psnr_of(60), size_of(60)), attempt, target, None)
    best = max(t for t in range(60, 70) if psnr_of(t) >= target)
    assert final.end_t == best and len(tried) <= 4  # log2(10) tries, never t itself


@pytest.mark.parametrize("budget", [795.5, 811, 819.5])
def test_a_budget_takes_the_smallest_end_within_it(budget):
    at_t = Attempt(70, psnr_of(70), size_of(70))
    final = land(70, Attempt(60, psnr_of(60), size_of(60)), lambda t: Attempt(t, psnr_of(t), size_of(t)), None, budget,
                 at_t)
    assert final.end_t == min(t for t in range(60, 71) if size_of(t) <= budget)
    # the first step of a file: nothing before it, so the shortest attempt stays, over the budget
    assert land(70, Attempt(60, 0, 900), lambda t: Attempt(t, 0, 900 - t), None, 10, None).end_t == 69


def test_an_ended_plan_keeps_the_steps_before_its_end():
    full = make_plan(1000, 10, 40, RecordLayout.COARSE)
    ended = make_plan(1000, 10, 40, RecordLayout.COARSE, end_t=60)
    assert ended.boundaries[:-1] == full.boundaries[:len(ended.boundaries) - 1] and ended.boundaries[-1] == 60
    assert ended.boundaries[-2] > 60 > full.boundaries[len(ended.boundaries) - 1]
    assert ended.record_ends == (7, 14, 20, 25) and not ended.lossless  # 500, 200, 100, then the end
    with pytest.raises(ValueError, match="end_t"):
        make_plan(1000, 10, 40, RecordLayout.COARSE, end_t=1000)


@needs_data
def test_a_psnr_target_ends_just_above_it_and_the_file_is_pinned(model):
    """Exact bytes of version 6 (CIFAR-10 test image 0, --psnr 28).  To regenerate after a
    deliberate format change: write ``compress(...).data``."""
    image = cifar_image(0)
    out = compress(image, model, FAST, Stop(psnr=28.0))
    header = unpack(out.data).header
    plan = make_plan(1000, header.t_stop, header.groups, header.layout)
    assert header.version == ENDING_VERSION and header.end_t not in plan.boundaries
    reached = out.stats.records[-1].psnr_mean
    assert 28.0 <= reached < 28.3 and out.stats.target.met
    assert out.data == GOLDEN_V6.read_bytes()
    older = compress(image, model, V4, Stop(psnr=28.0))  # ends at the record past the target
    assert older.stats.records[-1].psnr_mean > reached + 0.5 and len(older.data) > len(out.data)
    decoded = decompress(out.data, model)
    assert decoded.t == header.end_t and decoded.records_used == len(unpack(out.data).records)
    expected = 10 * np.log10(255**2 / np.mean((decoded.image.rgb.astype(float) - image.rgb) ** 2))
    assert expected == pytest.approx(reached, abs=1e-9)
    with perturbed(model) as calls:  # another machine's arithmetic: the same indices, x_t drifts by rounding
        again = decompress(out.data, model)
    assert calls[0] > 0 and again.t == decoded.t
    assert np.abs(again.image.rgb.astype(int) - decoded.image.rgb).max() <= 1


@needs_data
def test_a_budget_ends_just_below_it(model):
    image = cifar_image(1)
    budget = 1.5
    out = compress(image, model, FAST, Stop(bpp=budget))
    older = compress(image, model, V4, Stop(bpp=budget))
    assert unpack(out.data).header.end_t and older.stats.bpp < out.stats.bpp <= budget
    assert out.stats.bpp > 0.9 * budget and out.stats.target.met
    assert decompress(out.data, model).t == unpack(out.data).header.end_t


@needs_data
def test_an_ended_file_has_no_lossless_record(model):
    data = compress(cifar_image(0), model, FAST, Stop(psnr=28.0)).data
    u = unpack(data)
    extra = pack(u.header, list(u.records) + [b"\x00\x00"])
    with pytest.raises(CodecError, match="more than its plan allows"):
        decompress(extra, model)
    bad_end = pack(dataclasses.replace(u.header, end_t=1000), list(u.records))
    with pytest.raises(CodecError, match="step plan is invalid"):
        decompress(bad_end, model)
