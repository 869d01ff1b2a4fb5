"""Input modes: every kind of image Pillow opens becomes the codec's 8-bit planes exactly, or
with a note that says what changed, or is refused with one clear error.

16-bit colour PNGs (``helpers.png16``) and 16-bit TIFFs are written byte by byte (Pillow writes
neither), the PNGs with all five row filters so that the decoder's unfiltering is exercised.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from bitstream.container import ImageMode
from diffcodec.errors import DataError
from diffcodec.images import from_pil, load_image, read_image

from helpers import png16

RNG = np.random.default_rng(20240501)


def tiff16_rgb(samples: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF."""
    h, w, _ = samples.shape
    pixels = samples.astype("<u2").tobytes()
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(pixels)), (284, 3, 1, 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    pixels_at = bits_at + 6
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_at, 273: pixels_at}.get(tag, value)
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + pixels


def saved(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rounded16(v: np.ndarray) -> np.ndarray:
    return np.round(v.astype(np.float64) / 257).astype(np.uint8)


def test_8bit_rgb_and_grey_are_coded_as_they_are():
    rgb = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    loaded = read_image(saved(Image.fromarray(rgb)), "rgb.png")
    assert loaded.image.mode is ImageMode.RGB and np.array_equal(loaded.image.rgb, rgb)
    assert loaded.notes == () and loaded.exact
    grey = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
    loaded = read_image(saved(Image.fromarray(grey)), "grey.png")
    assert loaded.image.mode is ImageMode.L and loaded.notes == () and loaded.exact
    assert all(np.array_equal(loaded.image.rgb[..., c], grey) for c in range(3))


def test_16bit_grey_is_rounded_with_a_note():
    v = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    v[0, 0], v[0, 1] = 65535, 128  # 128 / 257 < 0.5: rounds to 0, where v >> 8 also gives 0
    loaded = read_image(saved(Image.fromarray(v)), "grey16.png")
    assert loaded.image.mode is ImageMode.L
    assert np.array_equal(loaded.image.rgb[..., 0], rounded16(v))
    assert loaded.notes == ("16-bit samples rounded to 8 bits (v / 257)",) and not loaded.exact


def test_16bit_holding_8bit_values_is_exact():
    eight = RNG.integers(0, 256, (5, 6), dtype=np.uint16)
    loaded = read_image(saved(Image.fromarray(eight * 257)), "grey16.png")
    assert np.array_equal(loaded.image.rgb[..., 0], eight) and loaded.exact
    assert "without loss" in loaded.notes[0]


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_keeps_the_low_bytes(channels):
    v = RNG.integers(0, 65536, (7, 5, channels), dtype=np.uint16)
    loaded = read_image(png16(v), "colour16.png")
    eight = rounded16(v)
    assert np.array_equal(loaded.image.rgb, eight[..., :3])
    assert not np.array_equal(eight[..., :3], (v[..., :3] >> 8).astype(np.uint8))  # not the high bytes alone
    if channels == 4:
        assert loaded.image.mode is ImageMode.RGBA and np.array_equal(loaded.image.alpha, eight[..., 3])
    else:
        assert loaded.image.mode is ImageMode.RGB
    assert loaded.notes == ("16-bit samples rounded to 8 bits (v / 257)",) and not loaded.exact


def test_16bit_grey_with_alpha_png():
    v = RNG.integers(0, 65536, (6, 4, 2), dtype=np.uint16)
    loaded = read_image(png16(v), "la16.png")
    assert loaded.image.mode is ImageMode.RGBA
    assert all(np.array_equal(loaded.image.rgb[..., c], rounded16(v[..., 0])) for c in range(3))
    assert np.array_equal(loaded.image.alpha, rounded16(v[..., 1]))


def test_16bit_grey_and_rgb_round_alike():
    v = RNG.integers(0, 65536, (4, 4), dtype=np.uint16)
    grey = read_image(png16(v), "g.png").image.rgb
    colour = read_image(png16(np.dstack([v, v, v])), "c.png").image.rgb
    assert np.array_equal(grey, colour)


def test_16bit_colour_in_another_format_is_refused():
    v = RNG.integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    with pytest.raises(DataError, match="16-bit colour samples .* high bytes"):
        read_image(tiff16_rgb(v), "rgb16.tif")


def test_32bit_integers():
    small = RNG.integers(0, 256, (4, 5)).astype(np.int32)
    loaded = read_image(saved(Image.fromarray(small), "TIFF"), "i.tif")
    assert np.array_equal(loaded.image.rgb[..., 0], small) and loaded.notes == () and loaded.exact
    wide = RNG.integers(0, 60000, (4, 5)).astype(np.int32)
    wide[0, 0] = 60000
    loaded = read_image(saved(Image.fromarray(wide), "TIFF"), "i.tif")
    assert np.array_equal(loaded.image.rgb[..., 0], rounded16(wide)) and not loaded.exact
    assert loaded.notes == ("integer samples up to 60000 taken as 16-bit and rounded to 8 bits (v / 257)",)
    for bad in (-1, 70000):
        wide[1, 1] = bad
        with pytest.raises(DataError, match="outside 0..65535"):
            read_image(saved(Image.fromarray(wide), "TIFF"), "i.tif")


def test_floats():
    v = RNG.random((4, 5), dtype=np.float32)
    v[0, 0], v[0, 1] = 0.0, 1.0
    loaded = read_image(saved(Image.fromarray(v), "TIFF"), "f.tif")
    assert np.array_equal(loaded.image.rgb[..., 0], np.round(v.astype(np.float64) * 255).astype(np.uint8))
    assert "floating-point samples in [0, 1] rounded" in loaded.notes[0] and not loaded.exact
    on_grid = (RNG.integers(0, 256, (4, 5)) / 255).astype(np.float32)
    assert read_image(saved(Image.fromarray(on_grid), "TIFF"), "f.tif").exact
    for bad in (1.5, -0.25, np.nan):
        w = v.copy()
        w[2, 2] = bad
        with pytest.raises(DataError, match=r"outside \[0, 1\]"):
            read_image(saved(Image.fromarray(w), "TIFF"), "f.tif")
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        from_pil(Image.fromarray(v * 255))  # the Python API refuses alike


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_animations_are_refused(fmt):
    frames = [Image.fromarray(np.full((4, 4, 3), 60 * i, np.uint8)) for i in range(3)]
    data = saved(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=r"anim\.x has 3 frames; diffcodec codes single images \(extract a frame first\)"):
        read_image(data, "anim.x")


def test_mpo_codes_its_primary_picture_with_a_note():
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (40, 200)]
    data = saved(frames[0], "MPO", save_all=True, append_images=frames[1:])
    loaded = read_image(data, "stereo.mpo")
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(loaded.image.rgb, np.asarray(im.convert("RGB")))
    assert loaded.notes == ("MPO file with 2 pictures: coded its first (primary) picture",)


def test_transparency_becomes_alpha():
    p = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    p.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
    loaded = read_image(saved(p, transparency=1), "p.png")
    assert loaded.image.mode is ImageMode.RGBA and loaded.exact
    assert loaded.image.alpha.tolist() == [[255, 0], [255, 0]]
    assert loaded.image.rgb[0, 0].tolist() == [10, 20, 30]
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    loaded = read_image(saved(Image.fromarray(rgb), transparency=(4, 5, 6)), "key.png")
    assert loaded.image.mode is ImageMode.RGBA and loaded.image.alpha.tolist() == [[255, 0]]
    assert np.array_equal(loaded.image.rgb, rgb)


def test_other_modes_are_converted_with_a_note():
    cmyk = Image.fromarray(RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8), "CMYK")
    loaded = read_image(saved(cmyk, "TIFF"), "c.tif")
    assert np.array_equal(loaded.image.rgb, np.asarray(cmyk.convert("RGB")))
    assert loaded.notes == ("mode CMYK converted to RGB by Pillow",) and not loaded.exact


def test_exif_orientation_is_noted():
    rgb = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = read_image(saved(Image.fromarray(rgb), exif=exif), "phone.png")
    assert np.array_equal(loaded.image.rgb, rgb) and loaded.exact
    assert loaded.notes == ("EXIF orientation 6 is not kept: the pixels are coded as stored, unrotated",)
    exif[0x0112] = 1
    assert read_image(saved(Image.fromarray(rgb), exif=exif), "upright.png").notes == ()


def test_files_folders_and_junk(tmp_path):
    with pytest.raises(DataError, match="is a folder, not an image file"):
        load_image(tmp_path)
    with pytest.raises(DataError, match="no such image file"):
        load_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(DataError, match=r"junk\.png is not a readable image"):
        load_image(junk)
    path = tmp_path / "c.png"
    path.write_bytes(png16(RNG.integers(0, 65536, (3, 3, 3), dtype=np.uint16)))
    from_file, from_bytes = load_image(path), read_image(path.read_bytes(), "x")
    assert np.array_equal(from_file.image.rgb, from_bytes.image.rgb) and from_file.notes == from_bytes.notes


def test_from_pil_keeps_the_codec_image_api():
    rgb = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    image = from_pil(Image.fromarray(rgb))
    assert np.array_equal(image.rgb, rgb) and image.rgb.flags.writeable
