"""The largest image the codec works on unless told otherwise, checked before any work.

A header of about 30 bytes can declare a 65536×1024 image, and decoding it costs what such an
image costs: every coded step is a network pass over the whole image. So the file alone must
not decide what a decoder spends: as Pillow's ``MAX_IMAGE_PIXELS`` does for its decoders,
``compress`` and ``decompress`` refuse an image of more than ``max_pixels`` pixels (counted
after the padding to the network's factor) with one line, before anything is allocated for it
or the network runs. Callers who mean it raise the limit (``max_pixels=None``, or
``--max-pixels 0`` on the command line, removes it).

The default, 4096 × 4096 (16.8 megapixels: a 12-megapixel camera's 4032 × 3024 fits), holds for
images the network sees in tiles (``diffcodec.tiling``, format version 5), where memory grows
linearly with the pixels. An image the network sees whole (every file of versions 1 to 4, and
untiled files of version 5) needs memory that grows faster, its attention with the square of
the tokens: one float32 pass of the shipped ``default`` model took 0.80 GB at 512 × 512, 1.9 GB
at 1024 × 1024, and tried to allocate 21 GB at 4096 × 4096 (2 shared CPU cores of an AMD EPYC;
peak resident memory of the process, 0.24 GB of it the libraries). Under the default limit such
an image may have at most 1024 × 1024 pixels; an explicit limit applies to both kinds.
"""

from __future__ import annotations

from .chain import CodecError, padded_size

DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_WHOLE_PIXELS = 1024 * 1024  # the default's cap for an image the network sees whole


class ImageTooLarge(CodecError):
    """The image has more pixels than the limit the caller set (or the default one)."""


def check_pixels(width: int, height: int, max_pixels: int | None, action: str, factor: int = 1,
                 whole: bool = False) -> None:
    """ImageTooLarge if a ``width``×``height`` image, padded to a multiple of the network's
    downsampling ``factor`` as the codec pads it, has more than ``max_pixels`` pixels (None: no
    limit).  The padded size is what costs: a 65536×1 image is a 65536×4 one to the network.
    ``whole``: the network sees the image in one piece, so the default limit is
    ``DEFAULT_MAX_WHOLE_PIXELS``."""
    ph, pw = padded_size(height, width, factor)
    pixels = pw * ph
    which = ""
    if whole and max_pixels == DEFAULT_MAX_PIXELS:
        max_pixels = DEFAULT_MAX_WHOLE_PIXELS
        which = " for an image the network sees whole (not in tiles)"
    if max_pixels is not None and pixels > max_pixels:
        padded = f", padded to {pw}×{ph}" if (pw, ph) != (width, height) else ""
        raise ImageTooLarge(f"{action} a {width}×{height} image ({pixels:,} pixels{padded}) is refused: the limit "
                            f"is {max_pixels:,} pixels (about {_side(max_pixels)}×{_side(max_pixels)}){which}; "
                            f"--max-pixels raises it (0: no limit; max_pixels= in Python)")


def _side(pixels: int) -> int:
    return int(pixels**0.5)
