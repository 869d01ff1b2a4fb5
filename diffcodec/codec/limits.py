"""The largest image the codec works on unless told otherwise, checked before any work.

A header of about 30 bytes can declare a 65536×1024 image, and decoding it costs what such an
image costs: the network's activations grow with the pixel count (its attention with the
square of it), and every coded step is a network pass over the whole image. So the file alone
must not decide what a decoder spends: as Pillow's ``MAX_IMAGE_PIXELS`` does for its decoders,
``compress`` and ``decompress`` refuse an image of more than ``max_pixels`` pixels (counted
after the padding to the network's factor) with one line, before anything is allocated for it
or the network runs. Callers who mean it raise the
limit (``max_pixels=None``, or ``--max-pixels 0`` on the command line, removes it).

The default, 512 × 512, from one network pass of the shipped ``default`` model on 2 shared CPU
cores (AMD EPYC, loaded; peak resident memory of the process, 240 MB of it the libraries):

====================  ============================  ============================
image                 float32 (lossy decoding)      float64 (lossless record)
====================  ============================  ============================
256 × 256             4.4 s, 0.41 GB                7.7 s, 0.89 GB
512 × 512             13 s, 0.80 GB                 43 s, 2.7 GB
724 × 724             33 s, 1.2 GB                  —
1024 × 1024           112 s, 1.9 GB                 —
4096 × 4096           tries to allocate 21 GB       —
====================  ============================  ============================

A file decodes with one pass per coded step (41 with the default settings; at most 254, from
``groups`` 255 and ``t_stop`` 99), so at the limit a lossy prefix takes minutes and a lossless
decode about half an hour on such a machine; past it, memory runs to gigabytes.
"""

from __future__ import annotations

from .chain import CodecError

DEFAULT_MAX_PIXELS = 512 * 512


class ImageTooLarge(CodecError):
    """The image has more pixels than the limit the caller set (or the default one)."""


def check_pixels(width: int, height: int, max_pixels: int | None, action: str, factor: int = 1) -> None:
    """ImageTooLarge if a ``width``×``height`` image, padded to a multiple of the network's
    downsampling ``factor`` as the codec pads it, has more than ``max_pixels`` pixels (None: no
    limit).  The padded size is what costs: a 65536×1 image is a 65536×4 one to the network."""
    pw, ph = int(width) + (-int(width) % factor), int(height) + (-int(height) % factor)
    pixels = pw * ph
    if max_pixels is not None and pixels > max_pixels:
        padded = f", padded to {pw}×{ph}" if (pw, ph) != (width, height) else ""
        raise ImageTooLarge(f"{action} a {width}×{height} image ({pixels:,} pixels{padded}) is refused: the limit "
                            f"is {max_pixels:,} pixels (about {_side(max_pixels)}×{_side(max_pixels)}); "
                            f"--max-pixels raises it (0: no limit; max_pixels= in Python)")


def _side(pixels: int) -> int:
    return int(pixels**0.5)
