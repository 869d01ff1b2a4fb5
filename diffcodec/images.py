"""Images as the codec sees them: 8-bit RGB planes plus what the source had beyond that.

- RGB, 8 bit: coded as is.
- Grayscale (L, and 16-bit I;16): coded as three equal channels; the lossless step codes one
  channel. 16-bit samples are rounded to 8 bits (v / 257); the low 8 bits are not kept.
- RGBA / LA / palette with transparency: colour coded progressively, alpha (8 bit) coded
  losslessly (zlib) in the file's first record, so every prefix decodes with its alpha.
- Anything else Pillow opens (CMYK, YCbCr, P without transparency, …) is converted to RGB.
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


def from_pil(im: Image.Image) -> CodecImage:
    """Map a Pillow image to the codec's modes (see the module docstring)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.round(np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return CodecImage(np.repeat(grey[:, :, None], 3, axis=2), ImageMode.L)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("LA", "PA", "La"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        a = np.asarray(im)
        return CodecImage(np.ascontiguousarray(a[:, :, :3]), ImageMode.RGBA, np.ascontiguousarray(a[:, :, 3]))
    if im.mode in ("L", "1"):
        grey = np.asarray(im.convert("L"))
        return CodecImage(np.repeat(grey[:, :, None], 3, axis=2), ImageMode.L)
    return CodecImage(np.asarray(im.convert("RGB")).copy(), ImageMode.RGB)


def load_image(path: Path) -> CodecImage:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such image file: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return from_pil(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path} is not a readable image ({e})") from None
