"""The ε-network evaluated in overlapping tiles, so that memory and time grow linearly with pixels.

Run on a whole image, the U-Net's activations grow with the pixels and its self-attention with
their square (a 12-megapixel photo is 532×356 tokens at 1/8 resolution). Tiled, the image is cut
into a grid of cores of about ``tile`` pixels a side, and each core's ε̂ is the core part of the
network's output on a window: the core with ``halo`` pixels of context on each side, clipped to
the image. GroupNorm statistics and attention then come from the window only, which is closer
to the 64×64 crops the shipped models were trained on than a whole photo is.

This is part of the function the codec evaluates: encoder and decoder must cut the same tiles,
so a file names ``tile`` and ``halo`` (FORMAT.md §3) and :func:`spans` is integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Tiling:
    """``tile`` 0: the whole image in one network call; else cores of about ``tile`` pixels a
    side, each seen with ``halo`` pixels of context around it."""

    tile: int = 0
    halo: int = 0

    def __post_init__(self) -> None:
        if self.tile < 0 or self.halo < 0:
            raise ValueError("tile and halo must be >= 0")
        if self.tile == 0 and self.halo:
            raise ValueError("a halo needs a tile size")

    @property
    def whole(self) -> bool:
        return self.tile == 0

    def describe(self) -> str:
        return "whole image" if self.whole else f"tiles of {self.tile} px, halo {self.halo} px"

    @classmethod
    def parse(cls, text: str) -> "Tiling":
        """``SIDE`` or ``SIDE:HALO`` in pixels (``0``: the whole image; else SIDE 16 … 65536 and
        HALO at most 65536); ValueError with a message for the user otherwise."""
        side, _, halo = text.partition(":")
        try:
            tiling = cls(int(side), int(halo or 0))
        except ValueError:
            raise ValueError("expected auto, 0, SIDE or SIDE:HALO (pixels, SIDE >= 16)") from None
        if not tiling.whole and (tiling.tile < 16 or tiling.tile > 65536 or tiling.halo > 65536):
            raise ValueError("SIDE must be 16 … 65536 pixels and HALO at most 65536")
        return tiling


WHOLE = Tiling()


def spans(size: int, tile: int, halo: int, factor: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) along one side of ``size`` pixels (a
    multiple of ``factor``): n = ⌈size/tile⌉ cores with edges at factor·⌊i·(size/factor)/n⌋, so
    they differ by at most ``factor``; windows reach ``halo`` (rounded up to ``factor``) further
    on each side, within the image, so every window's side is a multiple of ``factor``."""
    if size % factor:
        raise ValueError(f"size {size} is not a multiple of the network's factor {factor}")
    if tile == 0:
        return [(0, size, 0, size)]
    units = size // factor
    n = min(-(-size // tile), units)
    edges = [factor * (i * units // n) for i in range(n + 1)]
    reach = -(-halo // factor) * factor
    return [(lo, hi, max(0, lo - reach), min(size, hi + reach)) for lo, hi in zip(edges, edges[1:])]


def network_windows(tiling: Tiling, height: int, width: int, factor: int) -> list[tuple[int, int]]:
    """(height, width) of every window one network pass runs on."""
    rows = spans(height, tiling.tile, tiling.halo, factor)
    cols = spans(width, tiling.tile, tiling.halo, factor)
    return [(y1 - y0, x1 - x0) for _, _, y0, y1 in rows for _, _, x0, x1 in cols]


def window_pixels(height: int, width: int, tiling: Tiling, factor: int) -> tuple[int, int]:
    """(pixels of all windows, pixels of the largest window): the network's work and its peak."""
    sizes = [h * w for h, w in network_windows(tiling, height, width, factor)]
    return sum(sizes), max(sizes)


def tiled(eps_fn: EpsFn, tiling: Tiling, factor: int) -> EpsFn:
    """``eps_fn`` evaluated in ``tiling``'s tiles (``eps_fn`` itself for the whole image)."""
    if tiling.whole:
        return eps_fn

    def evaluate(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = None
        for r0, r1, y0, y1 in spans(x.shape[2], tiling.tile, tiling.halo, factor):
            for c0, c1, x0, x1 in spans(x.shape[3], tiling.tile, tiling.halo, factor):
                eps = eps_fn(x[:, :, y0:y1, x0:x1], t)
                if out is None:
                    out = torch.empty(x.shape, dtype=eps.dtype, device=eps.device)
                out[:, :, r0:r1, c0:c1] = eps[:, :, r0 - y0:r1 - y0, c0 - x0:c1 - x0]
        return out

    return evaluate
