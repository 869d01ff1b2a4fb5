"""Classic image codecs through Pillow, encoded and decoded in memory from real bytes.

Lossy (:class:`Codec`, the control is Pillow's ``quality`` 0–100 except JPEG 2000, whose
control is the target rate in bits per pixel):

  jpeg420   JPEG, libjpeg-turbo, 4:2:0, Pillow defaults otherwise (baseline, standard Huffman)
  jpeg444   the same at 4:4:4
  webp      WebP lossy (libwebp), method 4 (Pillow's default)
  avif      AVIF (libavif + aom), 4:4:4, speed 6, full range, one thread
  jxl       JPEG XL (pillow-jxl-plugin / libjxl), effort 7 (the default), VarDCT, one thread
  jpeg2000  JPEG 2000 (OpenJPEG), 9/7 wavelet, colour transform, rate control, raw .j2k codestream
  hevc      HEIF/HEVC via pillow-heif, 4:4:4 — only if ``pillow_heif`` imports (untested here)

Lossless (:class:`LosslessCodec`): PNG (zlib level 9, ``optimize``), WebP lossless (method 6,
quality 100), JPEG XL lossless (effort 9).

All encoders and decoders run on one thread so that times compare across codecs.
"""

from __future__ import annotations

import enum
import importlib
import io
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, features


@dataclass(frozen=True)
class CodecSpec:
    """Everything that defines one codec setting of the benchmark."""

    label: str
    pillow_format: str
    options: Callable[[float], dict]  # quality -> Pillow save() keyword arguments
    settings: str  # the fixed settings, in words (reports)
    control: str  # what "quality" means
    qualities: tuple  # default sweep, increasing rate
    quick_qualities: tuple  # the --quick sweep
    small_qualities: tuple | None = None  # for small images (CIFAR) if different
    small_quick_qualities: tuple | None = None
    feature: str | None = None  # PIL.features name that must be present
    plugin: str | None = None  # module that registers the format with Pillow
    reference_name: str | None = None  # its name in the reference figures, if any
    reference_match: str = ""  # how the settings compare to those of the reference figures

    def default_qualities(self, small: bool = False, quick: bool = False) -> tuple:
        """The sweep for large (Kodak) or small (CIFAR, headers dominate) images."""
        if small:
            chosen = self.small_quick_qualities if quick else self.small_qualities
            if chosen is not None:
                return chosen
        return self.quick_qualities if quick else self.qualities


def _jxl_plugin() -> None:
    """Register pillow-jxl-plugin and make its decoder single-threaded."""
    from pillow_jxl import JpegXLImagePlugin

    JpegXLImagePlugin.DECODE_THREADS = 0  # 0: no thread pool


def _heif_plugin() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


_PLUGINS = {"pillow_jxl": _jxl_plugin, "pillow_heif": _heif_plugin}

# Quality 100 is left out everywhere: some encoders turn it into (near-)lossless modes.
_Q_JPEG = (1, 3, 5, 6, 7, 8, 10, 13, 16, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 93, 95, 97)
_Q_WEBP = (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97, 99)
_Q_AVIF = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95)
# JPEG XL: quality ≤ 18 (distance ≥ 10) switches libjxl to 2× resampling; on Kodak quality 18
# gives larger files than 19. The sweep keeps 12 and 15 (the only points near 0.25 bpp on Kodak)
# and skips 16–19, so that the rate still rises with quality.
_Q_JXL = (0, 5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97, 99)
_BPP_J2K = (0.06, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
# On 32×32 images the codestream's headers alone are ~1.4 bpp: targets start above that.
_BPP_J2K_SMALL = (1.6, 1.8, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0)


class Codec(enum.Enum):
    """The lossy codecs; ``.value`` is the name used on the command line and in file names."""

    JPEG_420 = "jpeg420"
    JPEG_444 = "jpeg444"
    WEBP = "webp"
    AVIF = "avif"
    JXL = "jxl"
    JPEG2000 = "jpeg2000"
    HEVC = "hevc"

    @property
    def spec(self) -> CodecSpec:
        return LOSSY[self]

    def available(self) -> bool:
        return _available(self.spec)


LOSSY: dict[Codec, CodecSpec] = {
    Codec.JPEG_420: CodecSpec(
        "JPEG 4:2:0", "JPEG", lambda q: {"quality": int(q), "subsampling": 2},
        "libjpeg-turbo, 4:2:0, baseline, standard Huffman tables (Pillow defaults)", "quality 1–100",
        _Q_JPEG, (10, 50, 90), feature="jpg", reference_name="JPEG",
        reference_match="assumed to match (reference: libjpeg-turbo 3.2 through Pillow 13; subsampling not stated, "
                    "Pillow's default is 4:2:0)"),
    Codec.JPEG_444: CodecSpec(
        "JPEG 4:4:4", "JPEG", lambda q: {"quality": int(q), "subsampling": 0},
        "libjpeg-turbo, 4:4:4, baseline, standard Huffman tables", "quality 1–100",
        _Q_JPEG, (10, 50, 90), feature="jpg"),
    Codec.WEBP: CodecSpec(
        "WebP", "WEBP", lambda q: {"quality": int(q), "method": 4, "lossless": False},
        "libwebp lossy, method 4 (Pillow's default)", "quality 0–100",
        _Q_WEBP, (10, 50, 90), feature="webp", reference_name="WebP",
        reference_match="match (libwebp 1.6 through Pillow 13, defaults)"),
    Codec.AVIF: CodecSpec(
        "AVIF", "AVIF",
        lambda q: {"quality": int(q), "subsampling": "4:4:4", "speed": 6, "range": "full", "max_threads": 1},
        "libavif with aom, 4:4:4, speed 6, full range, 1 thread", "quality 0–100",
        _Q_AVIF, (20, 50, 80), feature="avif", reference_name="AVIF",
        reference_match="match (libavif 1.4, 4:4:4, speed 6)"),
    Codec.JXL: CodecSpec(
        "JPEG XL", "JXL", lambda q: {"quality": int(q), "effort": 7, "num_threads": 1},
        "libjxl via pillow-jxl-plugin, VarDCT, effort 7 (default), 1 thread", "quality 0–100",
        _Q_JXL, (20, 50, 90), plugin="pillow_jxl", reference_name="JPEG XL",
        reference_match="assumed to match (the reference gives no JPEG XL lossy settings; plugin defaults used)"),
    Codec.JPEG2000: CodecSpec(
        "JPEG 2000", "JPEG2000",
        lambda bpp: {"quality_mode": "rates", "quality_layers": [24.0 / bpp], "irreversible": True, "mct": 1,
                     "no_jp2": True},
        "OpenJPEG, 9/7 wavelet, RGB→YCbCr, one quality layer at the target rate, raw codestream (.j2k)",
        "target bits per pixel (compression ratio 24/bpp)",
        _BPP_J2K, (0.25, 1.0, 4.0), _BPP_J2K_SMALL, (2.0, 4.0, 8.0), feature="jpg_2000"),
    Codec.HEVC: CodecSpec(
        "HEVC (HEIF)", "HEIF", lambda q: {"quality": int(q), "chroma": 444},
        "libheif + x265 via pillow-heif, 4:4:4", "quality 0–100",
        _Q_AVIF, (20, 50, 80), plugin="pillow_heif", reference_name="HEVC intra",
        reference_match="match if pillow-heif uses x265 at 4:4:4"),
}


class LosslessCodec(enum.Enum):
    """The lossless codecs of ``benchmarks.lossless``."""

    PNG = "png"
    WEBP = "webp-lossless"
    JXL = "jxl-lossless"

    @property
    def spec(self) -> CodecSpec:
        return LOSSLESS[self]

    def available(self) -> bool:
        return _available(self.spec)


LOSSLESS: dict[LosslessCodec, CodecSpec] = {
    LosslessCodec.PNG: CodecSpec(
        "PNG", "PNG", lambda _: {"optimize": True, "compress_level": 9},
        "zlib level 9, optimize", "-", (0,), (0,), feature="zlib", reference_name="PNG"),
    LosslessCodec.WEBP: CodecSpec(
        "WebP lossless", "WEBP", lambda _: {"lossless": True, "quality": 100, "method": 6, "exact": True},
        "libwebp lossless, method 6, quality 100 (maximum effort)", "-", (0,), (0,), feature="webp",
        reference_name="WebP lossless"),
    LosslessCodec.JXL: CodecSpec(
        "JPEG XL lossless", "JXL", lambda _: {"lossless": True, "effort": 9, "num_threads": 1},
        "libjxl modular lossless, effort 9, 1 thread", "-", (0,), (0,), plugin="pillow_jxl",
        reference_name="JPEG XL lossless"),
}


@lru_cache(maxsize=None)
def _available(spec: CodecSpec) -> bool:
    """Whether Pillow can write and read this format here (registers the plugin if one is needed)."""
    if spec.feature is not None and not features.check(spec.feature):
        return False
    if spec.plugin is not None:
        try:
            importlib.import_module(spec.plugin)
        except ImportError:
            return False
        _PLUGINS[spec.plugin]()
    return True


@dataclass(frozen=True)
class Coded:
    """One image through one codec at one setting."""

    nbytes: int  # the whole file, headers included
    decoded: np.ndarray = field(repr=False)  # uint8 (H, W, 3)
    encode_s: float
    decode_s: float

    def bpp(self) -> float:
        h, w = self.decoded.shape[:2]
        return self.nbytes * 8 / (h * w)


def roundtrip(spec: CodecSpec, rgb: np.ndarray, quality: float = 0) -> Coded:
    """Encode ``rgb`` (uint8 (H, W, 3)) into bytes in memory and decode them again.

    Encoding time covers ``Image.save``; decoding time covers opening, decoding and the
    conversion to an RGB array.
    """
    if not _available(spec):
        raise RuntimeError(f"{spec.label} is not available in this Pillow installation")
    image = Image.fromarray(rgb, "RGB")
    options = spec.options(quality)
    buffer = io.BytesIO()
    t0 = time.perf_counter()
    image.save(buffer, format=spec.pillow_format, **options)
    t1 = time.perf_counter()
    data = buffer.getvalue()
    t2 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as decoded_image:
        decoded = np.asarray(decoded_image.convert("RGB"))
    t3 = time.perf_counter()
    if decoded.shape != rgb.shape:
        raise RuntimeError(f"{spec.label}: decoded shape {decoded.shape} differs from the source {rgb.shape}")
    return Coded(len(data), decoded, t1 - t0, t3 - t2)
