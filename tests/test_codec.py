"""The codec end to end with the shipped default model: lossless round trips, progressive
prefixes, stop rules, image modes, the distribution of decoded states, a golden file.

Fast settings (64 candidates, 2-bit calls, 12 coded steps) keep each encode to a few seconds;
they change the rate, not what is being checked. The golden file pins the exact bytes for
those settings; regenerate with ``python tests/test_codec.py --regenerate`` only when a
format or codec change is intended, and say so in the commit.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bitstream.container import ImageMode, unpack
from bitstream.selection import SelectionRule
from diffcodec.checkpoint import load_model
from diffcodec.codec import (
    DEFAULT_STOP,
    FULL_RATE_T_STOP,
    LOSSY_T_STOP,
    CodecConfig,
    CodecError,
    Stop,
    compress,
    decompress,
    resolve_t_stop,
)
from diffcodec.images import from_pil

from helpers import FAST, cifar_image, kodak_crop, needs_data

GOLDEN = Path(__file__).parent / "golden" / "cifar0_default_fast.ddc"  # format version 3
GOLDEN_V4 = {rule: Path(__file__).parent / "golden" / name  # format version 4, greedy and exact PFR
             for rule, name in (("greedy", "cifar0_default_fast_v4.ddc"), ("pfr", "cifar0_default_fast_v4_pfr.ddc"))}
GOLDEN_V2 = Path(__file__).parent / "golden" / "cifar0_default_fast_v2.ddc"  # written by format version 2
GOLDEN_V1 = Path(__file__).parent / "golden" / "cifar0_default_fast_v1.ddc"  # written by format version 1


@needs_data
@pytest.mark.parametrize("source", ["cifar0", "cifar1", "kodak-crop"])
def test_full_rate_is_lossless(model, source):
    image = kodak_crop() if source == "kodak-crop" else cifar_image(int(source[-1]))
    data = compress(image, model, FAST, Stop()).data
    out = decompress(data, model)
    assert out.t == 0 and out.exact is True and not out.truncated
    assert np.array_equal(out.image.rgb, image.rgb)


@needs_data
def test_golden_file(model):
    """Exact bytes of version 3 for fixed settings (still written on request): any change of its
    format, plan, noise or coding shows here."""
    image = cifar_image(0)
    data = compress(image, model, dataclasses.replace(FAST, version=3), Stop()).data
    assert data == GOLDEN.read_bytes()
    assert np.array_equal(decompress(GOLDEN.read_bytes(), model).image.rgb, image.rgb)


@needs_data
@pytest.mark.parametrize("rule", sorted(GOLDEN_V4))
def test_version_4_golden_files(model, rule):
    """Exact bytes of version 4 (greedy, the default, and exact PFR) for fixed settings; both decode
    bit for bit.  To regenerate after a deliberate format change: write ``compress(...).data``."""
    image = cifar_image(0)
    data = compress(image, model, dataclasses.replace(FAST, selection=SelectionRule.parse(rule)), Stop()).data
    assert data == GOLDEN_V4[rule].read_bytes()
    u = unpack(data)
    assert u.header.version == 4 and u.header.selection == SelectionRule.parse(rule).byte
    out = decompress(data, model)
    assert out.exact and np.array_equal(out.image.rgb, image.rgb)


@needs_data
@pytest.mark.parametrize("version", [1, 2])
def test_older_golden_files_still_decode(model, version):
    """Files of versions 1 and 2 decode: the same channel records as version 3 at these settings,
    their own lossless record.  Their prediction is a float32 network output rounded with no
    guard, so it is exact only where the machine reproduces the encoder's float32 arithmetic;
    elsewhere a few pixels come out off by one, and the decoder must say so (``exact``)."""
    from bitstream.container import VarianceChoice

    image = cifar_image(0)
    old = (GOLDEN_V1 if version == 1 else GOLDEN_V2).read_bytes()
    same_prior = dataclasses.replace(FAST, variance=VarianceChoice.POSTERIOR, version=3)  # as those files were
    u_old, u_new = unpack(old), unpack(compress(image, model, same_prior, Stop()).data)
    assert u_old.header.version == version and u_new.header.version == 3
    assert u_old.records[:-1] == u_new.records[:-1]  # the channel records are unchanged
    out = decompress(old, model)
    diff = out.image.rgb.astype(int) - image.rgb
    assert out.t == 0 and np.abs(diff).max() <= 1 and np.count_nonzero(diff) <= 30
    assert out.exact == (np.count_nonzero(diff) == 0)


def test_version_2_lossless_record_is_larger_under_version_1():
    assert len(unpack(GOLDEN_V1.read_bytes()).records[-1]) > len(unpack(GOLDEN_V2.read_bytes()).records[-1])


@needs_data
def test_every_prefix_decodes_and_early_stops_are_prefixes(model):
    image = cifar_image(2)
    full = compress(image, model, FAST, Stop())
    u = unpack(full.data)
    ends = np.cumsum([u.header_bytes] + u.record_bytes)
    ts = [r.t for r in full.stats.records]
    assert ts == sorted(ts, reverse=True) and ts[-1] == 0
    for r, end in enumerate(ends[1:-1]):
        prefix = full.data[:end]  # a file cut at a record boundary: truncated, all records complete
        out = decompress(prefix, model)
        assert out.t == ts[r] and out.records_used == r + 1 and out.truncated
        cut = decompress(full.data[:end + 3], model)  # three bytes into the next record
        assert cut.truncated and cut.t == ts[r]
        assert np.array_equal(cut.image.rgb, out.image.rgb)
        if r in (0, len(ends) - 3):
            # stopping the encoder at that t gives the same records (the encoder is deterministic),
            # in a complete file whose header declares the shorter length
            early = compress(image, model, FAST, Stop(upto_t=ts[r])).data
            assert unpack(early).records == unpack(prefix).records and not unpack(early).truncated
            assert len(early) - unpack(early).header_bytes == len(prefix) - unpack(prefix).header_bytes
    # later prefixes are closer to the image
    errors = [np.abs(decompress(full.data[:e], model).image.rgb.astype(int) - image.rgb).mean() for e in ends[1:]]
    assert errors[-1] == 0 and errors[0] > errors[-2]


@needs_data
def test_stop_rules(model):
    image = cifar_image(3)
    full = compress(image, model, FAST, Stop()).stats
    by_psnr = compress(image, model, FAST, Stop(psnr=30.0)).stats
    psnrs = [r.psnr_mean for r in by_psnr.records]
    assert psnrs[-1] >= 30.0 and all(p < 30.0 for p in psnrs[:-1])
    budget = full.records[3].file_bytes * 8 / 1024 + 0.01
    by_bpp = compress(image, model, FAST, Stop(bpp=budget)).stats
    assert by_bpp.bpp <= budget and by_bpp.file_bytes == full.records[3].file_bytes


def test_resolve_t_stop():
    auto = CodecConfig()
    assert Stop().full_rate and Stop(upto_t=0).full_rate
    assert not any(s.full_rate for s in (Stop(upto_t=5), Stop(bpp=8.0), Stop(psnr=40.0), DEFAULT_STOP))
    assert resolve_t_stop(auto, Stop()) == resolve_t_stop(auto, Stop(upto_t=0)) == FULL_RATE_T_STOP
    assert resolve_t_stop(auto, Stop(bpp=8.0)) == resolve_t_stop(auto, DEFAULT_STOP) == LOSSY_T_STOP
    assert FULL_RATE_T_STOP > LOSSY_T_STOP
    assert resolve_t_stop(CodecConfig(t_stop=17), Stop()) == resolve_t_stop(CodecConfig(t_stop=17), DEFAULT_STOP) == 17


@needs_data
def test_auto_t_stop_in_the_header_and_lossless(model):
    image = cifar_image(4)
    cheap = CodecConfig(groups=6, log2_candidates=4, chunk_bits=2.0)
    full = compress(image, model, cheap, Stop()).data
    assert unpack(full).header.t_stop == FULL_RATE_T_STOP
    assert np.array_equal(decompress(full, model).image.rgb, image.rgb)
    lossy = compress(image, model, cheap, Stop(upto_t=100)).data
    assert unpack(lossy).header.t_stop == LOSSY_T_STOP


@needs_data
def test_modes_grey_16bit_rgba_odd_size(model):
    rgb = kodak_crop(21, 19).rgb
    grey = Image.fromarray(rgb[:, :, 1])
    out = decompress(compress(from_pil(grey), model, FAST, Stop()).data, model)
    assert out.image.mode is ImageMode.L and np.array_equal(np.asarray(out.image.to_pil()), np.asarray(grey))
    deep = (rgb[:, :, 0].astype(np.uint16) * 257 + 100).astype(np.uint16)
    im16 = Image.fromarray(deep)
    assert im16.mode.startswith("I;16")
    out = decompress(compress(from_pil(im16), model, FAST, Stop()).data, model)
    expect = np.round(deep / 257.0).astype(np.uint8)  # the documented 16 → 8 bit rounding
    assert np.array_equal(np.asarray(out.image.to_pil()), expect)
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    data = compress(from_pil(rgba), model, FAST, Stop()).data
    out = decompress(data, model)
    assert out.image.mode is ImageMode.RGBA and np.array_equal(np.asarray(out.image.to_pil()), np.asarray(rgba))
    lossy = decompress(data, model, upto_t=100)  # alpha is exact at every prefix
    assert lossy.t > 0 and np.array_equal(lossy.image.alpha, alpha)


def ks_normal_pvalue(z: np.ndarray) -> float:
    """Kolmogorov–Smirnov test of z against N(0, 1): asymptotic p-value of the statistic D."""
    z = np.sort(z)
    n = z.size
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    return float(min(1.0, max(0.0, 2 * sum((-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101)))))


def test_ks_helper_accepts_normals_and_rejects_shifted_ones():
    rng = np.random.default_rng(0)
    assert ks_normal_pvalue(rng.standard_normal(5000)) > 0.01
    assert ks_normal_pvalue(rng.standard_normal(5000) * 1.1) < 1e-3
    assert ks_normal_pvalue(rng.standard_normal(5000) + 0.1) < 1e-3


@needs_data
def test_decoded_states_follow_q(model):
    """x_t decoded from the bitstream ~ q(x_t|x_0) = N(√ᾱ_t x_0, 1−ᾱ_t): standardised residuals
    against N(0, 1) with a Kolmogorov–Smirnov test, on the default candidate count and budget."""
    config = CodecConfig(groups=40, log2_candidates=12, chunk_bits=5.0)
    residuals = []
    schedule = model.schedule_config.build()
    for i in (4, 5):
        image = cifar_image(i)
        out = decompress(compress(image, model, config, Stop(upto_t=300)).data, model)
        abar = schedule.alphas_cumprod[out.t - 1]
        x0 = torch.from_numpy(image.rgb.astype(np.float64) / 127.5 - 1).permute(2, 0, 1)
        residuals.append(((out.x_t[0] - math.sqrt(abar) * x0) / math.sqrt(1 - abar)).flatten().numpy())
    z = np.concatenate(residuals)
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / z.size)
    assert ks_normal_pvalue(z) > 1e-3


def test_bad_input_raises_codec_errors(model, tmp_path):
    with pytest.raises(CodecError, match="not a .ddc"):
        decompress(b"\x89PNG\r\n\x1a\n" + bytes(40), model)
    with pytest.raises(CodecError, match="truncated header"):
        decompress(b"DDC\x01\x00", model)


@needs_data
def test_optimal_variances_are_the_default_and_name_their_table(model):
    """A model with an error table codes with its optimal reverse variances and names the table;
    a model without it, or with another table, refuses the file with a clean error."""

    from bitstream.container import VarianceChoice
    from diffcodec.variances import ErrorTable

    assert model.error_table is not None
    image = cifar_image(5)
    fast = dataclasses.replace(FAST, selection=SelectionRule(1.0))  # exact PFR: the prior's quality shows in the rate
    data = compress(image, model, fast, Stop(upto_t=100)).data
    header = unpack(data).header
    assert header.variance is VarianceChoice.OPTIMAL and header.variance_table == model.error_table.short_hash
    posterior = compress(image, model, dataclasses.replace(fast, variance=VarianceChoice.POSTERIOR),
                         Stop(upto_t=100)).data
    assert unpack(posterior).header.variance_table == b""
    assert len(data) < len(posterior)  # σ*² ≥ β̃ is the better prior at every step
    bare = dataclasses.replace(model, error_table=None, _twins={})
    with pytest.raises(CodecError, match="has no error table"):
        decompress(data, bare)
    other = dataclasses.replace(model, error_table=ErrorTable(model.error_table.mse * 1.01, model.error_table.stderr),
                                _twins={})
    with pytest.raises(CodecError, match="optimal reverse variances of table"):
        decompress(data, other)
    assert decompress(posterior, bare).t == 100  # files of the fixed variances need no table


def regenerate() -> None:
    model = load_model("default")
    data = compress(cifar_image(0), model, FAST, Stop()).data
    GOLDEN.write_bytes(data)
    print(f"wrote {GOLDEN} ({len(data)} bytes)")
    import json

    from diffcodec.codec import describe
    info = GOLDEN.parent / "info_cifar0_default_fast.json"
    info.write_text(json.dumps(describe(data), indent=1) + "\n")
    print(f"wrote {info}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate"]:
        regenerate()
    else:
        print("usage: python tests/test_codec.py --regenerate")
