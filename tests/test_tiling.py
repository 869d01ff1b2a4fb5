"""The network evaluated in tiles (diffcodec.tiling) and the files that name it (format version 5):
the tiles cover the image, a function of limited reach is unchanged by tiling, tiled files round
trip bit for bit (also under a perturbed decoder network) and their bytes are pinned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bitstream.container import unpack
from diffcodec.checkpoint import load_model
from diffcodec.codec import CodecConfig, CodecError, Stop, compress, decompress
from diffcodec.tiling import network_windows
from diffcodec.codec.config import DEFAULT_TILING, WHOLE_IMAGE_PIXELS, tiling_for
from diffcodec.tiling import Tiling, spans, tiled, window_pixels

from helpers import FAST, kodak_crop, needs_data, perturbed

GOLDEN_V5 = Path(__file__).parent / "golden" / "kodim23c40x52_default_fast_v5_tiled.ddc"
SMALL_TILES = Tiling(16, 8)


@pytest.mark.parametrize("size,tile,halo,factor", [(8, 4, 0, 4), (64, 16, 8, 4), (1112, 256, 32, 8),
                                                   (832, 256, 32, 8), (48, 100, 4, 8), (40, 16, 3, 4)])
def test_spans_partition_the_side_into_windows_of_whole_units(size, tile, halo, factor):
    rows = spans(size, tile, halo, factor)
    assert rows[0][0] == 0 and rows[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))  # cores abut: every pixel once
    cores = [hi - lo for lo, hi, _, _ in rows]
    assert max(cores) - min(cores) <= factor and max(cores) <= max(tile, factor) + factor
    reach = -(-halo // factor) * factor
    for lo, hi, w0, w1 in rows:
        assert w0 == max(0, lo - reach) and w1 == min(size, hi + reach)
        assert w0 % factor == 0 and w1 % factor == 0
    assert len(rows) == min(-(-size // tile), size // factor)


def test_spans_refuse_an_unpadded_side_and_whole_is_one_window():
    with pytest.raises(ValueError, match="multiple"):
        spans(30, 16, 0, 4)
    assert spans(40, 0, 0, 8) == [(0, 40, 0, 40)]
    assert window_pixels(512, 768, Tiling(256, 32), 8) == (576 * 896, 288 * 320)


def test_a_function_of_limited_reach_is_unchanged_by_tiling():
    """A 5×5 convolution reaches 2 pixels: with a halo of at least 2 every core sees all it needs,
    so the tiled output equals the whole one (up to float rounding of the same sums)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 3, 5, 5, generator=g, dtype=torch.float64)

    def conv(x, t):
        return F.conv2d(x, weight, padding=2) + t.view(-1, 1, 1, 1)

    x = torch.randn(2, 3, 40, 56, generator=g, dtype=torch.float64)
    t = torch.tensor([3.0, 5.0], dtype=torch.float64)
    whole = conv(x, t)
    assert torch.allclose(tiled(conv, Tiling(16, 4), 4)(x, t), whole, rtol=0, atol=1e-12)
    cut = tiled(conv, Tiling(16, 0), 4)(x, t)  # no halo: the seams see zero padding instead
    assert not torch.allclose(cut, whole, atol=1e-6)
    assert tiled(conv, Tiling(), 4) is conv


def test_the_unet_in_one_tile_is_the_unet():
    model = load_model("default")
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([400])
    with torch.no_grad():
        assert torch.equal(tiled(model.eps_fn, Tiling(64, 8), 4)(x, t), model.eps_fn(x, t))
        small = tiled(model.eps_fn, Tiling(16, 8), 4)(x, t)
    assert small.shape == x.shape and not torch.equal(small, model.eps_fn(x, t))  # another function


def test_defaults_tile_what_is_larger_than_the_whole_image_limit():
    assert tiling_for(CodecConfig(), (512, 512)).whole
    assert tiling_for(CodecConfig(), (512, 520)) == DEFAULT_TILING and 512 * 520 > WHOLE_IMAGE_PIXELS
    assert tiling_for(CodecConfig(tiling=Tiling()), (4096, 4096)).whole
    assert tiling_for(CodecConfig(tiling=SMALL_TILES), (32, 32)) == SMALL_TILES
    assert len(network_windows(DEFAULT_TILING, 3024, 4032, 8)) == -(-3024 // DEFAULT_TILING.tile) * -(-4032 // DEFAULT_TILING.tile)
    with pytest.raises(ValueError, match="version 5"):
        compress(_blank(), load_model("default"),
                 CodecConfig(tiling=SMALL_TILES, version=4), Stop(upto_t=500))


def _blank():
    from bitstream.container import ImageMode
    from diffcodec.images import CodecImage

    return CodecImage(np.zeros((8, 8, 3), np.uint8), ImageMode.RGB)


@needs_data
def test_tiled_files_round_trip_and_are_pinned():
    """Exact bytes of version 5 (a 40×52 Kodak crop, tiles of 16 with a halo of 8: 3×3 windows).
    To regenerate after a deliberate format change: write ``compress(...).data``."""
    model = load_model("default")
    image = kodak_crop(40, 52)
    data = compress(image, model, dataclasses.replace(FAST, tiling=SMALL_TILES), Stop()).data
    header = unpack(data).header
    assert (header.version, header.tile, header.halo) == (5, 16, 8)
    assert data == GOLDEN_V5.read_bytes()
    out = decompress(data, model)
    assert out.exact and np.array_equal(out.image.rgb, image.rgb)
    with perturbed(model) as calls:  # another machine's arithmetic, in every window
        again = decompress(data, model)
    assert calls[0] > 0 and again.exact and np.array_equal(again.image.rgb, image.rgb)
    whole = compress(image, model, FAST, Stop()).data
    assert unpack(whole).header.version == 4 and unpack(whole).records[0] != unpack(data).records[0]


def test_a_tile_in_an_older_version_is_refused():
    from bitstream.container import Header, pack
    from diffcodec.codec import model_hash

    model = load_model("default")
    data = pack(Header(model_hash(model), 8, 8, tile=16, version=4), [])
    with pytest.raises(CodecError, match="nonzero tile field needs format version 5"):
        decompress(data, model)


@pytest.mark.parametrize("value,message", [("abc", "expected auto, 0, SIDE or SIDE:HALO"), ("8", "SIDE must be 16"),
                                           ("0:8", "expected auto"), ("64:-1", "expected auto")])
def test_the_tile_option_refuses_bad_values_with_one_line(tmp_path, value, message):
    from click.testing import CliRunner
    from PIL import Image

    from diffcodec.cli import main
    from helpers import assert_one_line_error

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.ddc"),
                                       "--tile", value], catch_exceptions=False)
    assert_one_line_error(result, f"--tile {value}", message)
    assert not (tmp_path / "a.ddc").exists()


def test_the_tile_option_writes_a_tiled_file(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from diffcodec.cli import main

    Image.fromarray(np.full((24, 40, 3), 90, np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.ddc"), "--tile",
                                       "16:4", "--upto-t", "500", "--groups", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    header = unpack((tmp_path / "a.ddc").read_bytes()).header
    assert (header.version, header.tile, header.halo) == (5, 16, 4)


def test_tiled_estimates_grow_linearly_with_the_pixels():
    from diffcodec.codec.cost import estimate_decode

    model = load_model("default")
    one, four = (estimate_decode(model, 768 * k, 1024 * k) for k in (1, 2))  # both tiled by default
    assert 3.5 < four / one < 4.6  # linear up to the halos' share
    whole = estimate_decode(model, 1536, 2048, tiling=Tiling())
    assert whole > 1.3 * four  # the whole network's attention grows with the square of its tokens
    assert estimate_decode(model, 768, 1024, lossless=True) > 2 * one
