"""Images as the codec sees them: 8-bit RGB planes plus what the source had beyond that.

The codec codes 8-bit samples. :func:`load_image` maps every image Pillow opens to that and
says what the mapping changed (:class:`LoadedImage`'s ``notes``); an input it cannot map
faithfully is refused with a :class:`~diffcodec.errors.DataError`.

- RGB, 8 bit: coded as is.  RGBX drops its padding byte.
- Grayscale (L, 1-bit): coded as three equal channels; the lossless step codes one channel.
- 16-bit grey (I;16) and 16-bit RGB / RGBA / grey+alpha PNGs: the true 16-bit samples are read
  and rounded to 8 bits (v / 257, the same for every channel); exact when every sample is a
  multiple of 257.  16-bit colour in other formats (TIFF) is refused: Pillow reads only its
  high bytes.
- 32-bit integers (I): samples within 0..255 are 8-bit values; up to 65535 they are taken as
  16-bit (v / 257); anything else is refused.
- Floats (F): samples in [0, 1] are rounded to round(v · 255); anything else is refused.
- RGBA / LA / PA / palette or RGB / L with a transparent colour: colour coded progressively,
  alpha (8 bit) coded losslessly (zlib) in the file's first record.
- Other modes (CMYK, YCbCr, LAB, HSV, premultiplied alpha, …) are converted to RGB (or RGBA) by
  Pillow, with a note.
- Animations and multi-page files are refused; an MPO (a JPEG carrying extra pictures) codes
  its primary picture, with a note.
- An EXIF orientation other than "as stored" is not applied (nor kept): a note says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bitstream.container import ImageMode

from .errors import DataError


@dataclass
class CodecImage:
    rgb: np.ndarray  # uint8 (H, W, 3)
    mode: ImageMode
    alpha: np.ndarray | None = None  # uint8 (H, W) for RGBA

    def __post_init__(self):
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 (H, W, 3), got {self.rgb.dtype} {self.rgb.shape}")
        if self.alpha is not None and self.alpha.shape != self.rgb.shape[:2]:
            raise ValueError("alpha must match the image size")
        if (self.alpha is None) == (self.mode is ImageMode.RGBA):
            raise ValueError("alpha is given exactly for RGBA images")
        if self.mode is ImageMode.L and not (np.array_equal(self.rgb[..., 0], self.rgb[..., 1])
                                             and np.array_equal(self.rgb[..., 0], self.rgb[..., 2])):
            raise ValueError("a grayscale image must have three equal channels")

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def to_pil(self) -> Image.Image:
        if self.mode is ImageMode.L:
            return Image.fromarray(self.rgb[:, :, 0].copy(), "L")
        if self.mode is ImageMode.RGBA:
            return Image.fromarray(np.dstack([self.rgb, self.alpha]), "RGBA")
        return Image.fromarray(np.ascontiguousarray(self.rgb), "RGB")

    def png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.to_pil().save(buf, format="PNG")
        return buf.getvalue()


@dataclass(frozen=True)
class LoadedImage:
    """An input as the codec codes it, and what became of the source's samples on the way."""

    image: CodecImage
    notes: tuple[str, ...] = ()  # one line each: what was converted, rounded or left out
    exact: bool = True  # the coded 8-bit samples are the source's samples (a full-rate file is lossless)


# ---- building CodecImages -----------------------------------------------------------------------

def _grey(grey: np.ndarray) -> CodecImage:
    return CodecImage(np.repeat(grey[:, :, None], 3, axis=2), ImageMode.L)


def _colour(samples: np.ndarray) -> CodecImage:
    """uint8 (H, W, 3) RGB or (H, W, 4) RGBA."""
    if samples.shape[2] == 4:
        return CodecImage(samples[:, :, :3].copy(), ImageMode.RGBA, samples[:, :, 3].copy())
    return CodecImage(samples[:, :, :3].copy(), ImageMode.RGB)


def _from_16bit(samples: np.ndarray) -> tuple[np.ndarray, tuple[str, ...], bool]:
    """16-bit samples → 8 bits by v / 257 (rounded; never a tie), with the note that says so."""
    samples = np.asarray(samples, dtype=np.int64)
    eight = np.round(samples / 257.0).astype(np.uint8)
    if np.all(samples % 257 == 0):
        return eight, ("16-bit samples are 8-bit values × 257; coded as those 8-bit values, without loss",), True
    return eight, ("16-bit samples rounded to 8 bits (v / 257)",), False


def _from_int32(samples: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...], bool]:
    lo, hi = int(samples.min()), int(samples.max())
    if lo < 0 or hi > 65535:
        raise DataError(f"{name} has 32-bit integer samples outside 0..65535 (from {lo} to {hi}); "
                        "diffcodec codes 8-bit images")
    if hi <= 255:
        return samples.astype(np.uint8), (), True
    eight, _, exact = _from_16bit(samples)
    return eight, (f"integer samples up to {hi} taken as 16-bit and rounded to 8 bits (v / 257)",), exact


def _from_float(samples: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...], bool]:
    samples = samples.astype(np.float64)
    if not np.all(np.isfinite(samples)) or samples.min() < 0 or samples.max() > 1:
        lo, hi = np.nanmin(samples), np.nanmax(samples)
        raise DataError(f"{name} has floating-point samples outside [0, 1] (from {lo:g} to {hi:g}); "
                        "diffcodec codes 8-bit images")
    scaled = samples * 255
    eight = np.round(scaled)
    exact = bool(np.all(np.abs(scaled - eight) <= 1e-3))
    return eight.astype(np.uint8), ("floating-point samples in [0, 1] rounded to 8 bits (round(v · 255))",), exact


def _convert(im: Image.Image, name: str) -> LoadedImage:
    """A loaded Pillow image with 8-bit (or I, I;16, F) samples → the codec's modes."""
    if im.mode.startswith("I;16"):
        grey, notes, exact = _from_16bit(np.asarray(im))
        return LoadedImage(_grey(grey), notes, exact)
    if im.mode == "I":
        grey, notes, exact = _from_int32(np.asarray(im), name)
        return LoadedImage(_grey(grey), notes, exact)
    if im.mode == "F":
        grey, notes, exact = _from_float(np.asarray(im), name)
        return LoadedImage(_grey(grey), notes, exact)
    if im.mode in ("P", "L", "RGB") and "transparency" in im.info:  # a transparent colour → alpha
        return LoadedImage(_colour(np.asarray(im.convert("RGBA"))))
    if im.mode in ("LA", "PA", "RGBA"):
        return LoadedImage(_colour(np.asarray(im.convert("RGBA"))))
    if im.mode in ("L", "1"):
        return LoadedImage(_grey(np.asarray(im.convert("L"))))
    if im.mode in ("RGB", "RGBX", "P"):
        return LoadedImage(_colour(np.asarray(im.convert("RGB"))))
    target = "RGBA" if im.mode in ("RGBa", "La") else "RGB"  # premultiplied alpha
    try:
        converted = im.convert(target)
    except (ValueError, OSError) as e:
        raise DataError(f"{name} has mode {im.mode}, which Pillow cannot convert to {target} ({e})") from None
    return LoadedImage(_colour(np.asarray(converted)), (f"mode {im.mode} converted to {target} by Pillow",), False)


def from_pil(im: Image.Image) -> CodecImage:
    """A Pillow image in the codec's modes (see the module docstring); DataError if refused."""
    return _convert(im, "the image").image


# ---- reading files -------------------------------------------------------------------------------

ORIENTATION_TAG = 0x0112  # EXIF: how a viewer should rotate or flip the stored pixels (1: as stored)


def _rawmode(im: Image.Image) -> str | None:
    """The raw sample layout Pillow will decode (e.g. ``RGB;16B``), if it says."""
    if not im.tile:
        return None
    args = im.tile[0].args
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _decode_png_as(data: bytes, rawmode: str) -> np.ndarray:
    """Decode a PNG's pixels with another raw layout of the same bytes per pixel (the PNG
    filters work on whole pixels, so this keeps the decoded bytes and only unpacks them
    differently)."""
    with Image.open(io.BytesIO(data)) as im:
        im.tile = [tile._replace(args=rawmode) for tile in im.tile]
        im.load()
        return np.asarray(im)


def _png_16bit_colour(data: bytes, rawmode: str) -> np.ndarray:
    """The true 16-bit samples of a 16-bit RGB, RGBA or grey+alpha PNG as uint16 (H, W, C).

    Pillow keeps only the high byte of each sample; decoding the same bytes as little-endian
    gives the low bytes, and grey+alpha (4 bytes a pixel) decodes byte for byte as 8-bit RGBA.
    """
    if rawmode == "LA;16B":
        b = _decode_png_as(data, "RGBA").astype(np.uint16)
        return np.dstack([b[..., 0] << 8 | b[..., 1], b[..., 2] << 8 | b[..., 3]])
    high = _decode_png_as(data, rawmode).astype(np.uint16)
    low = _decode_png_as(data, rawmode.replace(";16B", ";16L")).astype(np.uint16)
    return high << 8 | low


def _load_16bit_colour(data: bytes, im: Image.Image, rawmode: str, name: str) -> LoadedImage:
    if im.format != "PNG" or rawmode not in ("RGB;16B", "RGBA;16B", "LA;16B"):
        raise DataError(f"{name} has 16-bit colour samples ({im.format} {rawmode}) that Pillow reads only "
                        "as their high bytes; save it as a 16-bit PNG or an 8-bit image first")
    samples, notes, exact = _from_16bit(_png_16bit_colour(data, rawmode))
    if rawmode == "LA;16B":
        samples = np.dstack([samples[..., 0]] * 3 + [samples[..., 1]])
    return LoadedImage(_colour(samples), notes, exact)


def read_image(data: bytes, name: str) -> LoadedImage:
    """Decode an image file's bytes (``name`` is only for messages)."""
    if not data:
        raise DataError(f"{name} is not a readable image (it is empty)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            frames = getattr(im, "n_frames", 1)
            notes: tuple[str, ...] = ()
            if frames > 1 and im.format == "MPO":
                notes = (f"MPO file with {frames} pictures: coded its first (primary) picture",)
            elif frames > 1:
                raise DataError(f"{name} has {frames} frames; diffcodec codes single images (extract a frame first)")
            rawmode = _rawmode(im) or ""  # before getexif(), which may load the pixels
            orientation = im.getexif().get(ORIENTATION_TAG, 1)
            if orientation != 1:
                notes += (f"EXIF orientation {orientation} is not kept: the pixels are coded as stored, "
                          "unrotated",)
            if im.mode in ("RGB", "RGBA") and ";16" in rawmode:
                loaded = _load_16bit_colour(data, im, rawmode, name)
            else:
                im.load()
                loaded = _convert(im, name)
    except UnidentifiedImageError:  # Pillow's message names its in-memory buffer, not the file
        raise DataError(f"{name} is not a readable image (not a format Pillow recognises)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{name} is not a readable image ({e})") from None
    return LoadedImage(loaded.image, notes + loaded.notes, loaded.exact)


def load_image(path: Path) -> LoadedImage:
    """Read an image file; DataError (one line naming the file) if it is missing, a folder,
    unreadable, or of a kind the codec refuses."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an image file")
    if not path.is_file():
        raise DataError(f"no such image file: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror})") from None
    return read_image(data, str(path))
