"""The Python API, mirroring the command line: ``compress`` an image to bytes, ``decompress``
bytes (or any prefix of them) to an image.

    >>> from diffcodec import compress, decompress
    >>> data = compress("photo.png", lossless=True)         # model "auto": photo or cifar10 by size
    >>> decompress(data).save("same.png")                   # the shipped model the file names
    >>> decompress(data, upto_t=200, reconstruct="flow")   # a coarse preview

Damaged input is reported as the command line reports it: a truncated file decodes its complete
records with a :class:`TruncatedFileWarning`; a corrupt record is a :class:`CodecError`, or with
``salvage=True`` the image of the intact records before it and a :class:`SalvagedFileWarning`;
a full-rate file whose pixels miss the encoder's checksum is a :class:`PixelMismatchError`, or
with ``accept_mismatch=True`` the image and a :class:`PixelMismatchWarning` (all warnings are
:class:`DamagedFileWarning`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .checkpoint import Model, load_model
from .codec import (DEFAULT_MAX_PIXELS, CodecConfig, CodecError, DamagedFileWarning, PixelMismatchError,
                    PixelMismatchWarning, SalvagedFileWarning, TruncatedFileWarning, choose_stop,
                    compress as _compress, damage_warnings, decompress as _decompress, model_for_file, read_header)
from .images import CodecImage, from_pil, load_image
from .models import AUTO, resolve_model_name, size_warning
from .reconstruct import Reconstruction

# The errors and warnings of damaged input, which the package exports from here too.
__all__ = ["CodecError", "DamagedFileWarning", "PixelMismatchError", "PixelMismatchWarning", "SalvagedFileWarning",
           "TruncatedFileWarning", "compress", "decompress"]


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


def _model(model, device: str = "cpu") -> Model:
    """A Model as given (its network stays where it is), or loaded by name or path onto ``device``."""
    return model if isinstance(model, Model) else load_model(model, device)


def compress(image, model=AUTO, *, upto_t: int | None = None, bpp: float | None = None,
             psnr: float | None = None, lossless: bool = False, config: CodecConfig = CodecConfig(),
             max_pixels: int | None = DEFAULT_MAX_PIXELS, device: str = "cpu") -> bytes:
    """``image`` (path, PIL image or uint8 array) → ``.ddc`` bytes. At most one of ``upto_t``,
    ``bpp``, ``psnr``, ``lossless``; none: the default operating point (35 dB). ``model``: a
    :class:`Model`, a shipped name, a checkpoint folder, or ``"auto"`` (``cifar10`` up to 64×64,
    ``photo`` above; the command line's rule). Images of more than ``max_pixels`` pixels are
    refused (None: no limit). A model given by name loads onto ``device`` ("cuda": the network
    and the candidate scoring run there); a :class:`Model` keeps its own device."""
    stop = choose_stop(upto_t, bpp, psnr, lossless)
    img = _image(image)
    if isinstance(model, str):
        model = resolve_model_name(model, img.width, img.height)
    loaded = _model(model, device)
    warning = size_warning(loaded.weights_sha256, img.width, img.height)
    if warning:
        warnings.warn(warning, stacklevel=2)
    return _compress(img, loaded, config, stop, max_pixels=max_pixels).data


def decompress(data: bytes, model=None, *, upto_t: int | None = None,
               reconstruct: str | Reconstruction = Reconstruction.MEAN, steps: int = 50,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, device: str = "cpu", salvage: bool = False,
               accept_mismatch: bool = False) -> Image.Image:
    """``.ddc`` bytes (complete or a prefix) → PIL image. ``model`` None: the shipped model
    whose hash the file carries. Files of images of more than ``max_pixels`` pixels are refused
    from their header (None: no limit). ``device`` as for :func:`compress`; a file decodes on any.
    ``salvage`` and ``accept_mismatch``: damaged input as the module docstring says.
    """
    data = bytes(data)
    decoded = _decompress(data, model_for_file(read_header(data), model, device), upto_t, Reconstruction(reconstruct),
                          steps=steps, max_pixels=max_pixels, salvage=salvage)
    for warning in damage_warnings(decoded, "the data", accept_mismatch, "accept_mismatch=True returns it anyway"):
        warnings.warn(warning, stacklevel=2)
    return decoded.image.to_pil()
