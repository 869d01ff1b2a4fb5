"""diffcodec as a Pillow image format: after ``import diffcodec.pillow``, ``Image.open`` reads
``.ddc`` files and ``Image.save`` writes them.

    >>> import diffcodec.pillow
    >>> from PIL import Image
    >>> Image.open("photo.ddc").save("photo.png")
    >>> Image.open("photo.png").save("photo.ddc", bpp=0.5)

Pillow (13.0) offers no entry point through which an installed package adds a format: importing
this module registers it (open, save, the ``.ddc`` extension, the MIME type ``image/x-ddc``).

Opening reads only the header: ``size``, ``mode`` (``L``, ``RGB`` or ``RGBA``, as encoded) and
Pillow's decompression-bomb check come from it. ``load()`` decodes with the shipped model whose
hash the file carries, as :func:`diffcodec.decompress` does; ``im.model`` (a name, a checkpoint
folder or a :class:`~diffcodec.checkpoint.Model`) and ``im.device`` set before ``load()`` choose
another. A progressive file shows an earlier record the way JPEG 2000's ``im.layers`` picks
quality layers: ``im.upto_t = T`` before ``load()`` decodes up to the first record at t ≤ T, and
``im.info["t"]`` says which timestep was decoded (0: the lossless image). A truncated file raises
Pillow's ``OSError("image file is truncated …")``, or, with ``ImageFile.LOAD_TRUNCATED_IMAGES =
True``, gives the image of its last complete record. ``verify()`` checks the header's and every
record's checksum without decoding. Decoding refuses, with ``Image.DecompressionBombError`` and
before the network runs, images of more (padded) pixels than the lower of the codec's limit
(``codec.limits``) and the size at which Pillow's own check errs (twice
``Image.MAX_IMAGE_PIXELS``); ``Image.MAX_IMAGE_PIXELS = None`` lifts both. Errors are Pillow's
kinds carrying the codec's one-line message: ``SyntaxError`` from ``verify()`` for a corrupt file
(and from opening one whose header is, which Pillow reports as ``UnidentifiedImageError``),
``OSError`` from ``load()`` and ``save()``.

Saving takes the codec's choices as keyword arguments, as :func:`diffcodec.compress` takes them:
at most one of ``upto_t``, ``bpp``, ``psnr``, ``lossless`` (none: 35 dB), ``model`` (``auto``),
``device``, ``config`` (a :class:`~diffcodec.codec.CodecConfig`) and ``max_pixels``.

Only the header parser is imported here; the codec (and torch) load on the first ``load()`` or
``save()``, so registering the format costs other formats nothing.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFile

from bitstream.container import MAGIC, Header, ImageMode, unpack

FORMAT = "DDC"
EXTENSION = ".ddc"
MIME = "image/x-ddc"
HEADER_READ = 128  # bytes read to open a file: more than the longest valid header (52)
PIL_MODES = {ImageMode.L: "L", ImageMode.RGB: "RGB", ImageMode.RGBA: "RGBA"}
SAVE_ARGUMENTS = ("upto_t", "bpp", "psnr", "lossless", "model", "device", "config", "max_pixels")


def _accept(prefix: bytes) -> bool:
    """Whether a file starts with the ``.ddc`` magic (nothing else is looked at)."""
    return prefix[:len(MAGIC)] == MAGIC


def _max_pixels() -> int | None:
    """The decoder's pixel limit under Pillow's: the lower of the codec's default and the size at
    which ``Image._decompression_bomb_check`` errs; None when Pillow's limit is lifted."""
    from .codec import DEFAULT_MAX_PIXELS

    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else min(2 * limit, DEFAULT_MAX_PIXELS)


class DdcImageFile(ImageFile.ImageFile):
    """A ``.ddc`` file: the header on open, the pixels decoded on ``load()``."""

    format = FORMAT
    format_description = "diffcodec progressive diffusion image"

    def _open(self) -> None:
        try:
            self._header, self._header_bytes = Header.from_bytes(self.fp.read(HEADER_READ))
        except ValueError as e:  # FormatError, and a header's invalid fields
            raise SyntaxError(str(e)) from None
        self._size = (self._header.width, self._header.height)
        self._mode = PIL_MODES[self._header.mode]
        self.upto_t: int | None = None  # decode up to the first record at t <= upto_t (None: all)
        self.model = None  # None: the shipped model the file names
        self.device = "cpu"
        self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, self.mode)]

    def _file_bytes(self) -> bytes:
        """The whole file, refused when cut short unless ``ImageFile.LOAD_TRUNCATED_IMAGES``."""
        self.fp.seek(0)
        data = self.fp.read()
        declared = self._header_bytes + self._header.body_bytes
        if len(data) < declared and not ImageFile.LOAD_TRUNCATED_IMAGES:
            raise OSError(f"image file is truncated ({len(data)} of {declared} bytes; "
                          "ImageFile.LOAD_TRUNCATED_IMAGES = True shows its last complete record)")
        return data

    def verify(self) -> None:
        """Check the header's and the records' CRCs, without a model or a network pass."""
        try:
            unpack(self._file_bytes())
        except ValueError as e:
            raise SyntaxError(str(e)) from None
        super().verify()

    def load(self):
        if self.tile:
            pixels = self._decode()
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = io.BytesIO(pixels)  # the tile's raw pixels, which Pillow's load reads
        return super().load()

    def load_seek(self, pos: int) -> None:
        """Defined so that Pillow reads the decoded pixels, never memory-maps the ``.ddc`` file."""

    def _decode(self) -> bytes:
        from . import codec
        from .errors import DiffcodecError

        data = self._file_bytes()
        try:
            out = codec.decompress(data, codec.model_for_file(codec.read_header(data), self.model, self.device),
                                   self.upto_t, max_pixels=_max_pixels())
        except codec.ImageTooLarge as e:
            raise Image.DecompressionBombError(str(e)) from None
        except DiffcodecError as e:
            raise OSError(str(e)) from None
        if out.exact is False:
            raise OSError("the decoded pixels do not match the checksum the encoder stored")
        self.info["t"] = out.t
        return out.image.to_pil().tobytes()


def _save(im: Image.Image, fp, filename) -> None:
    """Encode ``im`` with the save call's codec arguments (``SAVE_ARGUMENTS``)."""
    from .api import compress
    from .errors import DiffcodecError, OptionError

    options = {name: im.encoderinfo[name] for name in SAVE_ARGUMENTS if name in im.encoderinfo}
    try:
        data = compress(im, **options)
    except OptionError:
        raise  # bad save arguments: a ValueError, as Pillow's own plugins give
    except DiffcodecError as e:
        raise OSError(str(e)) from None
    fp.write(data)


Image.register_open(FORMAT, DdcImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
Image.register_mime(FORMAT, MIME)
