"""The Python API, mirroring the command line: ``compress`` an image to bytes, ``decompress``
bytes (or any prefix of them) to an image.

    >>> from diffcodec import compress, decompress
    >>> data = compress("photo.png", lossless=True)
    >>> decompress(data).save("same.png")
    >>> decompress(data, upto_t=200, reconstruct="flow")   # a coarse preview
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .checkpoint import DEFAULT_MODEL, Model, load_model
from .codec import DEFAULT_MAX_PIXELS, DEFAULT_STOP, CodecConfig, Stop, compress as _compress, decompress as _decompress
from .images import CodecImage, from_pil, load_image
from .reconstruct import Reconstruction


def _image(image) -> CodecImage:
    if isinstance(image, CodecImage):
        return image
    if isinstance(image, (str, Path)):
        return load_image(Path(image)).image
    if isinstance(image, Image.Image):
        return from_pil(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError("arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4)")
    return from_pil(Image.fromarray(array))


def _model(model) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def compress(image, model=DEFAULT_MODEL, *, upto_t: int | None = None, bpp: float | None = None,
             psnr: float | None = None, lossless: bool = False, config: CodecConfig = CodecConfig(),
             max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bytes:
    """``image`` (path, PIL image or uint8 array) → ``.ddc`` bytes. At most one of ``upto_t``,
    ``bpp``, ``psnr``, ``lossless``; none: the default operating point (35 dB). Images of more
    than ``max_pixels`` pixels are refused (None: no limit)."""
    given = sum(v is not None for v in (upto_t, bpp, psnr)) + bool(lossless)
    if given > 1:
        raise ValueError("choose at most one of upto_t, bpp, psnr, lossless")
    stop = Stop() if lossless else (Stop(upto_t, bpp, psnr) if given else DEFAULT_STOP)
    return _compress(_image(image), _model(model), config, stop, max_pixels=max_pixels).data


def decompress(data: bytes, model=DEFAULT_MODEL, *, upto_t: int | None = None,
               reconstruct: str | Reconstruction = Reconstruction.MEAN, steps: int = 50,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``.ddc`` bytes (complete or a prefix) → PIL image. Files of images of more than
    ``max_pixels`` pixels are refused from their header (None: no limit)."""
    return _decompress(bytes(data), _model(model), upto_t, Reconstruction(reconstruct), steps=steps,
                       max_pixels=max_pixels).image.to_pil()
