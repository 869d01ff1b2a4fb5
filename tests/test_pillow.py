"""``.ddc`` through Pillow's own calls (``diffcodec.pillow``): open from the header, load,
save, earlier records, truncated and corrupt files, the decompression-bomb check, and other
formats untouched.

Files are the golden ``cifar0_default_fast.ddc`` (32×32 RGB, seven records, the shipped
``default`` model) and small crops saved with the fast settings of ``test_codec``, so that
each test takes a few seconds.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from copy import copy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError

import diffcodec.codec
from bitstream.container import Header, unpack
from diffcodec.checkpoint import load_model

from helpers import FAST

GOLDEN = Path(__file__).parent / "golden"
DDC = (GOLDEN / "cifar0_default_fast.ddc").read_bytes()


def crop(width: int = 16, height: int = 12) -> Image.Image:
    with Image.open(GOLDEN / "kodim23_centre48.png") as im:
        return im.convert("RGB").crop((0, 0, width, height))


def saved(image: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="DDC", **{"model": "default", "config": FAST, **options})
    return buf.getvalue()


def opened(data: bytes) -> ImageFile.ImageFile:
    return Image.open(io.BytesIO(data))


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im)


def record_ends(data: bytes) -> list[int]:
    u = unpack(data)
    return list(np.cumsum([u.header_bytes] + u.record_bytes)[1:])


@pytest.fixture(scope="module", autouse=True)
def ddc_format():
    """The format registered for this module's tests only: Pillow's registries are copies here
    (its own plugins all loaded first, so none of them registers into a copy)."""
    Image.init()
    with pytest.MonkeyPatch.context() as patch:
        for registry in ("ID", "OPEN", "SAVE", "EXTENSION", "MIME"):
            patch.setattr(Image, registry, copy(getattr(Image, registry)))
        importlib.reload(importlib.import_module("diffcodec.pillow"))  # registers it (again, if imported)
        yield


@pytest.fixture
def no_decoding(monkeypatch):
    """Any call of the decoder fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the decoder ran")
    monkeypatch.setattr(diffcodec.codec, "decompress", refuse)


def test_open_reads_the_header_only(no_decoding, tmp_path):
    path = tmp_path / "x.ddc"
    path.write_bytes(DDC)
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("DDC", (32, 32), "RGB")
        assert im.get_format_mimetype() == "image/x-ddc"
    assert Image.registered_extensions()[".ddc"] == "DDC"


def test_load_decodes_the_whole_file_and_views_like_any_image():
    with opened(DDC) as im:
        im.load()
        assert im.info["t"] == 0 and im.size == (32, 32)
        whole = pixels(im)
    with opened(DDC) as im:
        grey = im.convert("L")
    assert grey.mode == "L" and np.array_equal(pixels(grey), pixels(Image.fromarray(whole).convert("L")))
    with opened(DDC) as im:
        im.thumbnail((16, 16))
        assert im.size == (16, 16) and im.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_lossless_save_and_open_round_trip_in_each_mode(mode):
    image = crop().convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    with opened(saved(image, lossless=True)) as im:
        assert (im.format, im.mode, im.size) == ("DDC", mode, image.size)
        assert np.array_equal(pixels(im), pixels(image)) and im.info["t"] == 0


def test_save_by_extension_with_the_codec_arguments(tmp_path):
    path = tmp_path / "crop.ddc"
    crop().save(path, upto_t=200, config=FAST)  # the format from the extension, the model "auto"
    data = path.read_bytes()
    assert Header.from_bytes(data)[0].model_hash.hex() == load_model("cifar10").weights_sha256[:8]
    with Image.open(path) as im:
        im.load()
        assert 0 < im.info["t"] <= 200
    assert len(data) < len(saved(crop(), lossless=True, model="cifar10"))
    with pytest.raises(ValueError, match="at most one"):
        crop().save(io.BytesIO(), format="DDC", bpp=1.0, psnr=30.0)


def test_a_truncated_file_raises_unless_pillow_loads_truncated_images(monkeypatch):
    cut = DDC[:record_ends(DDC)[-2] + 3]  # three bytes into the last (lossless) record
    with opened(cut) as im, pytest.raises(OSError, match="image file is truncated"):
        im.load()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with opened(cut) as im:
        im.load()
        t, shown = im.info["t"], pixels(im)
    assert t > 0
    with opened(DDC) as im:
        im.upto_t = t
        im.load()
        assert im.info["t"] == t and np.array_equal(pixels(im), shown)


def test_upto_t_gives_an_earlier_record(monkeypatch):
    with opened(DDC) as im:
        im.upto_t = 200
        im.load()
        t, early = im.info["t"], pixels(im)
    assert 0 < t <= 200
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    prefixes = {}
    for end in record_ends(DDC)[:-1]:
        with opened(DDC[:end]) as im:
            im.load()
            prefixes[im.info["t"]] = pixels(im)
    assert t == max(ts for ts in prefixes if ts <= 200)  # the first record at t <= 200
    assert np.array_equal(prefixes[t], early)  # what a reader of the file cut after it sees


def test_other_formats_still_open_as_before():
    buf = io.BytesIO()
    crop().save(buf, format="PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.format == "PNG" and np.array_equal(pixels(im), pixels(crop()))
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"DDC but no header" + bytes(40)))


def test_verify_checks_the_checksums_without_decoding(no_decoding, monkeypatch):
    with opened(DDC) as im:
        im.verify()
    ends = record_ends(DDC)
    corrupt = bytearray(DDC)
    corrupt[ends[2] + 5] ^= 1  # inside record 3
    with opened(bytes(corrupt)) as im, pytest.raises(SyntaxError, match="record 3 is corrupt"):
        im.verify()
    with opened(DDC[:-1]) as im, pytest.raises(OSError, match="image file is truncated"):
        im.verify()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with opened(DDC[:-1]) as im:
        im.verify()


def test_a_corrupt_record_fails_load_with_the_codecs_message():
    corrupt = bytearray(DDC)
    corrupt[record_ends(DDC)[2] + 5] ^= 1
    with opened(bytes(corrupt)) as im, pytest.raises(OSError, match="record 3 is corrupt"):
        im.load()


def test_the_model_is_the_files_unless_im_model_names_another():
    with opened(DDC) as im:
        im.model = "default"
        im.load()
        assert im.info["t"] == 0
    with opened(DDC) as im, pytest.raises(OSError, match="the file was made with model 3e4456a4"):
        im.model = "cifar10"
        im.load()
    header, start = Header.from_bytes(DDC)
    unknown = dataclasses.replace(header, model_hash=bytes(4)).to_bytes() + DDC[start:]
    with opened(unknown) as im, pytest.raises(OSError, match="no shipped model has hash 00000000"):
        im.load()


def test_pixels_that_miss_the_encoders_checksum_fail_load(monkeypatch):
    real = diffcodec.codec.decompress
    monkeypatch.setattr(diffcodec.codec, "decompress",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), exact=False))
    with opened(DDC) as im, pytest.raises(OSError, match="do not match the checksum"):
        im.load()


def test_the_bomb_check_refuses_on_open_before_decoding(no_decoding, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 32 // 2 - 1)  # Pillow errs above twice the limit
    with pytest.raises(Image.DecompressionBombError):
        opened(DDC)


def test_the_decoder_refuses_what_pillow_would_from_the_padded_size(monkeypatch):
    data = saved(crop(13, 10), upto_t=500)  # 130 pixels, 16×12 once padded for the network
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 65)  # Pillow warns on 130 pixels, errs above 130
    with pytest.warns(Image.DecompressionBombWarning):
        im = opened(data)
    with im, pytest.raises(Image.DecompressionBombError, match="192 pixels, padded to 16×12"):
        im.load()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # no limit, as in Pillow
    with opened(data) as im:
        im.load()
        assert im.size == (13, 10) and im.info["t"] <= 500
