"""What the encoder is asked for: its settings (:class:`CodecConfig`, all written into the
header), where it stops (:class:`Stop`), and the defaults that fill what a config leaves open.

The defaults were chosen by measurement; the figures are in the reports each comment names
(``benchmarks/results/``) and in the README, not here, so that they cannot go stale in code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bitstream.container import TILED_VERSION, UNTILED_VERSION, RecordLayout, VarianceChoice
from bitstream.selection import EXACT, GREEDY, SelectionRule

from ..checkpoint import Model
from ..errors import OptionError
from ..tiling import Tiling


@dataclass(frozen=True)
class CodecConfig:
    """Encoder settings; all of them are written into the header."""

    t_stop: int | None = None  # None: chosen by the stop rule (:func:`resolve_t_stop`)
    groups: int = 40
    log2_candidates: int | None = None  # None: by the model's device (:func:`call_size`)
    chunk_bits: float | None = None  # KL budget of a call in bits, a multiple of 1/4; None: by the model's device
    variance: VarianceChoice | None = None  # None: OPTIMAL when the model has an error table, else POSTERIOR
    layout: RecordLayout | None = None  # None: COARSE below 256×256 pixels, else EVERY_STEP
    seed: int = 0
    selection: SelectionRule | None = None  # None: DEFAULT_SELECTION (version 3: exact PFR only)
    tiling: Tiling | None = None  # how the network sees the image; None: by its size (:func:`tiling_for`)
    version: int | None = None  # format version written: None = the lowest that says what the file does

    def __post_init__(self) -> None:
        if self.chunk_bits is not None and abs(round(self.chunk_bits * 4) - self.chunk_bits * 4) > 1e-9:
            raise OptionError("chunk_bits must be a multiple of 0.25")


# Images of more pixels than this (after padding) are run through the network in tiles: memory and
# time then grow linearly with the pixels (``diffcodec.tiling``), and `photo`'s bound is no worse
# for it (README, "Why these defaults").
WHOLE_IMAGE_PIXELS = 512 * 512
DEFAULT_TILING = Tiling(384, 16)


def tiling_for(config: CodecConfig, padded_hw: tuple[int, int]) -> Tiling:
    """The config's tiling, or the default for an image of ``padded_hw`` pixels."""
    if config.tiling is not None:
        return config.tiling
    return DEFAULT_TILING if padded_hw[0] * padded_hw[1] > WHOLE_IMAGE_PIXELS else Tiling()


def format_version(config: CodecConfig, tiling: Tiling) -> int:
    """The config's version, or the lowest that can say what the file does (older decoders read it)."""
    version = config.version if config.version is not None else (UNTILED_VERSION if tiling.whole else TILED_VERSION)
    if not tiling.whole and version < TILED_VERSION:
        raise ValueError(f"a tiled network evaluation needs format version {TILED_VERSION}")
    return version


@dataclass(frozen=True)
class Stop:
    """Where the encoder stops (the first that applies; all None = code everything)."""

    upto_t: int | None = None  # stop once the chain reaches t <= upto_t (0 = lossless)
    bpp: float | None = None  # largest file within this many bits per pixel
    psnr: float | None = None  # first prefix whose mean reconstruction reaches this PSNR (dB)

    @property
    def full_rate(self) -> bool:
        """True when the encoder is asked for the whole file (the decoded image is lossless)."""
        return self.bpp is None and self.psnr is None and not self.upto_t


DEFAULT_STOP = Stop(psnr=35.0)


def choose_stop(upto_t: int | None = None, bpp: float | None = None, psnr: float | None = None,
                lossless: bool = False, spell=str) -> Stop:
    """The stop of at most one target (none: :data:`DEFAULT_STOP`; ``lossless``: full rate).
    More than one is an :class:`OptionError` naming them, each as ``spell(field)`` gives it
    (the command line spells ``upto_t`` as ``--upto-t``)."""
    given = [name for name, v in (("upto_t", upto_t), ("bpp", bpp), ("psnr", psnr)) if v is not None]
    given += ["lossless"] if lossless else []
    if len(given) > 1:
        raise OptionError(f"choose one of {', '.join(map(spell, given))}: at most one target applies")
    if lossless:
        return Stop()
    return Stop(upto_t, bpp, psnr) if given else DEFAULT_STOP


# t_stop, the last channel-coded step, when the configuration leaves it open.  Below it, x_0 is
# sent by the lossless record, which costs more than the bound's steps t ≤ t_stop but less than
# channel-simulating them (each call pays its own overhead on a few bits of KL).  A full-rate file
# is cheapest with a higher t_stop; lossy stops need records down to small t, where PSNR reaches
# the usual targets (35 dB and above), so they keep a low one (README, "Why these defaults").
LOSSY_T_STOP = 10
FULL_RATE_T_STOP = 20


def resolve_t_stop(config: CodecConfig, stop: Stop, pixels: int | None = None) -> int:
    """``config.t_stop``, or the default for this kind of stop when it is None.  With the image's
    ``pixels``, a PSNR target no lossy prefix can reach counts as full rate (:func:`reachable`)."""
    if config.t_stop is not None:
        return config.t_stop
    if pixels is not None:
        stop = reachable(stop, pixels)
    return FULL_RATE_T_STOP if stop.full_rate else LOSSY_T_STOP


def max_finite_psnr(pixels: int) -> float:
    """The highest PSNR an 8-bit RGB image of ``pixels`` pixels has without being equal: one
    sample off by one, MSE = 1/(3·pixels)."""
    return 10 * math.log10(255.0**2 * 3 * pixels)


def reachable(stop: Stop, pixels: int) -> Stop:
    """``stop``, or full rate when it asks for a PSNR above :func:`max_finite_psnr` (only the
    lossless image has it)."""
    if stop.psnr is not None and stop.psnr > max_finite_psnr(pixels):
        return Stop()
    return stop


# Channel-simulation calls sized for where the candidates are scored: (log2 candidates, KL bits
# per call).  Each call costs about log2(B + 1) + 1 bits over its KL, so bigger calls waste less,
# but the sample follows q only while 2**k is well above 2**B, and the work grows as 2**k
# (``benchmarks.studies.channel_overhead``).
CPU_CALLS = (12, 5.0)  # exact PFR in the CPU's compiled loop
GPU_CALLS = (16, 8.0)  # a GPU scores 2**16 candidates of a call at once
# Greedy selection sends k bits a call whatever its KL, so its calls carry more: about k − 2 bits.
GREEDY_SLACK_BITS = 2.0
GREEDY_CPU_CALLS = (12, 10.0)
GREEDY_GPU_CALLS = (16, 14.0)
# On small images scoring is cheap (its work grows with the pixels), and 2^16 candidates pay
# (README, "Why these defaults").
GREEDY_CPU_SMALL_CALLS = (16, 14.0)
SMALL_IMAGE_PIXELS = 64 * 64
DEFAULT_SELECTION = GREEDY


def selection_rule(config: CodecConfig) -> SelectionRule:
    """The config's selection rule, or the default (version 3 files know exact PFR only)."""
    if config.version is not None and config.version < 4:
        if config.selection not in (None, EXACT):
            raise ValueError("format version 3 codes exact PFR only")
        return EXACT
    return config.selection if config.selection is not None else DEFAULT_SELECTION


def call_size(config: CodecConfig, model: Model, pixels: int | None = None) -> tuple[int, float]:
    """(log2 candidates, bits per call): the config's, or the defaults of the rule, the model's device
    and the image's ``pixels`` (None: a large image)."""
    gpu = model.device.type != "cpu"
    greedy = selection_rule(config).greedy
    if greedy:
        small = pixels is not None and pixels <= SMALL_IMAGE_PIXELS
        k, bits = GREEDY_GPU_CALLS if gpu else (GREEDY_CPU_SMALL_CALLS if small else GREEDY_CPU_CALLS)
    else:
        k, bits = GPU_CALLS if gpu else CPU_CALLS
    k = config.log2_candidates if config.log2_candidates is not None else k
    if config.chunk_bits is not None:
        return k, config.chunk_bits
    return k, (max(1.0, k - GREEDY_SLACK_BITS) if greedy else bits)
