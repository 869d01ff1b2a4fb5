"""The pixel limit of encoding and decoding: a header of a few bytes that declares a huge image
is refused from its header, before anything is allocated for the image or the network runs;
the limit can be raised or removed."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from bitstream.container import Header, ImageMode, pack
from diffcodec import api, cli
from diffcodec.codec import DEFAULT_MAX_PIXELS, CodecConfig, ImageTooLarge, Stop, compress, decompress, model_hash
from diffcodec.codec import decoder as decoder_module
from diffcodec.codec import encoder as encoder_module
from diffcodec.images import CodecImage
from diffcodec.tiling import Tiling

from helpers import assert_one_line_error, run

FAST = CodecConfig(groups=4, log2_candidates=4, chunk_bits=2.0)
# refused under the default limit: files the network sees whole (versions 1-4, untiled 5) above 1024×1024,
# tiled ones (version 5) above 4096×4096
BOMBS_WHOLE = [(4096, 4096), (8192, 8192), (65536, 1024), (1024, 65536), (1025, 1024), (65536, 17)]
BOMBS_TILED = [(8192, 8192), (65536, 1024), (1024, 65536), (4097, 4096), (65536, 257)]
TILED = dict(tile=256, halo=32, version=5)


def header_only(model, width: int, height: int, **fields) -> bytes:
    return pack(Header(model_hash(model), width, height, **fields), [])


@pytest.fixture
def no_work(monkeypatch):
    """Any attempt to build the coded chain (network, noise, entropy models) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the codec started work on a refused image")
    monkeypatch.setattr(decoder_module, "Chain", refuse)
    monkeypatch.setattr(encoder_module, "Chain", refuse)


@pytest.mark.parametrize("width,height,fields,limit", [(w, h, {}, "1,048,576") for w, h in BOMBS_WHOLE]
                         + [(w, h, TILED, "16,777,216") for w, h in BOMBS_TILED])
def test_header_only_bombs_are_refused_before_any_work(model, no_work, width, height, fields, limit):
    data = header_only(model, width, height, **fields)
    assert len(data) <= 30
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=rf"decoding a {width}×{height} image .* the limit is {limit} pixels"):
            decompress(data, model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # bytes: nothing of the image's size


def test_the_defaults_are_inclusive(model):
    # exactly 1024×1024 seen whole and 4096×4096 in tiles pass the check (the chain is then built)
    for width, height, fields in ((1024, 1024, {}), (4096, 4096, TILED)):
        decoder_module.check_pixels(width, height, DEFAULT_MAX_PIXELS, "decoding", 4, whole=not fields)
    with pytest.raises(ImageTooLarge, match="sees whole"):
        decoder_module.check_pixels(1028, 1024, DEFAULT_MAX_PIXELS, "decoding", 4, whole=True)
    decoder_module.check_pixels(1028, 1024, DEFAULT_MAX_PIXELS + 1, "decoding", 4, whole=True)  # explicit: as given


def test_the_limit_is_inclusive_and_can_be_raised_or_removed(model):
    data = header_only(model, 16, 8)
    with pytest.raises(ImageTooLarge, match="16×8 image"):
        decompress(data, model, max_pixels=127)
    assert decompress(data, model, max_pixels=128).t == 1000  # the header alone: x_T
    assert decompress(data, model, max_pixels=None).image.rgb.shape == (8, 16, 3)


def test_the_padded_size_counts(model):
    # the network sees the image padded to a multiple of its factor (4): 13×5 is 16×8 to it
    assert model.unet_config.downsampling_factor == 4
    data = header_only(model, 13, 5)
    with pytest.raises(ImageTooLarge, match=r"13×5 image \(128 pixels, padded to 16×8\)"):
        decompress(data, model, max_pixels=127)
    assert decompress(data, model, max_pixels=128).image.rgb.shape == (5, 13, 3)
    # a thin image costs what its padded size costs: 65536×1 is refused below 65536×4
    with pytest.raises(ImageTooLarge, match="262,144 pixels, padded to 65536×4"):
        decompress(header_only(model, 65536, 1), model, max_pixels=65536 * 4 - 1)
    assert DEFAULT_MAX_PIXELS == 4096 * 4096 == cli.MAX_PIXELS  # the command line writes it out


def test_encoding_is_limited_too(model, no_work):
    big = CodecImage(np.zeros((1024, 1025, 3), np.uint8), ImageMode.RGB)
    with pytest.raises(ImageTooLarge, match="encoding a 1025×1024 image .* sees whole"):  # asked to see it whole
        compress(big, model, replace(FAST, tiling=Tiling()), Stop(upto_t=500))
    huge = CodecImage(np.zeros((4096, 4097, 3), np.uint8), ImageMode.RGB)
    with pytest.raises(ImageTooLarge, match="encoding a 4097×4096 image .* 16,777,216 pixels"):  # tiled by default
        compress(huge, model, FAST, Stop(upto_t=500))
    small = CodecImage(np.zeros((8, 8, 3), np.uint8), ImageMode.RGB)
    with pytest.raises(ImageTooLarge, match="encoding a 8×8 image"):
        compress(small, model, FAST, Stop(upto_t=500), max_pixels=63)


def test_python_api_passes_the_limit(model):
    data = header_only(model, 16, 16)
    with pytest.raises(ImageTooLarge):
        api.decompress(data, model, max_pixels=255)
    assert api.decompress(data, model, max_pixels=256).size == (16, 16)
    with pytest.raises(ImageTooLarge):
        api.compress(np.zeros((16, 16, 3), np.uint8), model, upto_t=500, config=FAST, max_pixels=255)


def test_cli_refuses_bombs_with_one_line(model, tmp_path):
    bomb = tmp_path / "bomb.ddc"
    bomb.write_bytes(header_only(model, 65536, 1024))
    out = tmp_path / "out.png"
    assert_one_line_error(run("decode", bomb, "-o", out), "bomb.ddc: decoding a 65536×1024 image", "--max-pixels")
    assert not out.exists()
    small = tmp_path / "small.ddc"
    small.write_bytes(header_only(model, 16, 16))
    assert_one_line_error(run("decode", small, "-o", out, "--max-pixels", 100), "the limit is 100 pixels")
    assert not out.exists()
    result = run("decode", small, "-o", out, "--max-pixels", 0)  # 0: no limit
    assert result.exit_code == 0 and out.exists()


def test_cli_encode_checks_every_input_first(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((600, 500, 3), np.uint8)).save(tmp_path / "b.png")
    out = tmp_path / "coded"
    assert_one_line_error(run("encode", tmp_path / "a.png", tmp_path / "b.png", "-o", f"{out}/", "--upto-t", 500,
                              "--max-pixels", 200_000), "b.png: encoding a 500×600 image (300,000 pixels) is refused")
    assert not out.exists() or not any(out.iterdir())
    assert_one_line_error(run("encode", tmp_path / "a.png", "-o", tmp_path / "a.ddc", "--max-pixels", 63),
                          "a.png: encoding a 8×8 image")
    assert not (tmp_path / "a.ddc").exists()
