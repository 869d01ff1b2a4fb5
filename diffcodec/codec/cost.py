"""How long an encode will take, known before it starts: a cost model of the CPU encoder.

Per coded step the encoder runs the network once (float32) over the padded image and simulates
the channel: every chunk scores 2^k candidates on each of its dimensions, so a step scores
2^k · 3·H'·W' candidate values whatever its chunk count, plus a cost per call that grows with
2^k. A full-rate file then replays the steps with the network in float64 for the lossless
record (``chain``). The network's time grows with the pixels, and faster at large sizes (its
attention compares every pair of positions at a quarter of the resolution):

    seconds ≈ steps · (net32(P) + s·2^k·3P) + calls · c·2^k + [steps · net64(P)],
    net(P) = a·P + b·P²,  calls ≈ steps + KL/B,  KL ≈ RATE_BITS_PER_DIM · 3P

An image the network sees in tiles (``diffcodec.tiling``) costs one net(P_w) per window w, so
net(P) becomes Σ_w net(P_w): linear in the pixels, with the halos' overlap on top.

The constants (``CPU_2_CORES``) are for 2 idle cores of an AMD EPYC: ``python -m
benchmarks.studies.encode_cost --threads 1`` measured one core's network passes (minimum of 3; on a busy
machine one thread gives steadier figures), halved for two; version 4's scoring constants are
``python -m benchmarks.studies.scoring_speed --only-v4`` on 2 threads (whole selections: about 1.7e9
candidate-dimensions a second, and some 30 ns a candidate a call for PFR's arrival times).
Version 3's scoring (``CPU_2_CORES_V3``) runs the exact vectorised kernel of
``bitstream.kernels_exact`` (``python -m benchmarks.studies.scoring_speed_v3``: about 5.7e8
candidate-dimensions a second on 2 threads). How close the estimates come to real encodes is in
the README ("Image sizes"); on a machine shared with other work two threads can be many times
slower.
A lossy stop's step count is not known in advance: its estimate is the longest it can take
(all channel steps), marked as such.

The network constants are those of the shipped `default` (the `tiny` U-Net). Another network's
passes are scaled by its ratio of floating-point operations to `tiny`'s at the same size,
counted on the meta device (no arithmetic; ``network_cost_ratio``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from bitstream.container import RecordLayout

from ..checkpoint import Model
from ..tiling import Tiling, network_windows
from .chain import padded_size
from .config import CodecConfig, call_size, reachable, resolve_t_stop, tiling_for
from .plan import make_plan


@dataclass(frozen=True)
class CostModel:
    """Seconds per unit of work on one machine."""

    net32_per_pixel: float
    net32_per_pixel2: float
    net64_per_pixel: float
    net64_per_pixel2: float
    per_candidate_dim: float  # channel-simulation scoring
    per_candidate_call: float  # a call's own cost, per candidate (arrival times, launch)


CPU_2_CORES = CostModel(net32_per_pixel=5e-6, net32_per_pixel2=2.4e-11, net64_per_pixel=18e-6,
                        net64_per_pixel2=8.4e-11, per_candidate_dim=0.6e-9, per_candidate_call=30e-9)
# Format version 3's scoring (Philox4x64, float64 Box–Muller, 16 candidates a SIMD tile)
CPU_2_CORES_V3 = CostModel(net32_per_pixel=5e-6, net32_per_pixel2=2.4e-11, net64_per_pixel=18e-6,
                           net64_per_pixel2=8.4e-11, per_candidate_dim=1.8e-9, per_candidate_call=0.12e-6)

# KL of all channel steps, bits per dimension, for counting the calls (the shipped model: about
# 0.65 down to t = 20 on CIFAR-10; photos cost less).
RATE_BITS_PER_DIM = 0.8

LONG_ENCODE_SECONDS = 60.0  # the command line suggests a faster setting above this


def _flops(config, height: int, width: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..unet import UNet

    with torch.device("meta"):
        net = UNet(config)
        x, t = torch.empty(1, 3, height, width), torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        net(x, t)
    return counter.get_total_flops()


@functools.lru_cache(maxsize=64)
def network_cost_ratio(config, height: int, width: int) -> float:
    """One pass of a network of ``config`` over a ``height``×``width`` image, in passes of the
    network the constants were calibrated on (`tiny`): their ratio of floating-point operations."""
    from ..unet import CONFIGS

    if config == CONFIGS["tiny"]:
        return 1.0
    return _flops(config, height, width) / _flops(CONFIGS["tiny"], height, width)


@dataclass(frozen=True)
class EncodeEstimate:
    seconds: float
    steps: int  # coded steps (the most a lossy stop codes)
    lossless: bool  # the lossless record (float64 replay) is counted
    at_most: bool  # a lossy stop: it may end earlier

    def describe(self) -> str:
        return f"{'up to ' if self.at_most else ''}about {format_seconds(self.seconds)}"


def format_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def estimate_encode(model: Model, width: int, height: int, config, stop, cost: CostModel | None = None
                    ) -> EncodeEstimate:
    """Seconds ``compress`` takes for a ``width``×``height`` image with ``config`` and ``stop``
    (``CodecConfig``, ``Stop``) on the machine ``cost`` describes (None: 2 cores, for the file's
    format version)."""
    if cost is None:
        cost = CPU_2_CORES if config.version is None or config.version >= 4 else CPU_2_CORES_V3
    log2_candidates, chunk_bits = call_size(config, model, width * height)
    f = model.unet_config.downsampling_factor
    padded_h, padded_w = padded_size(height, width, f)
    pixels = padded_h * padded_w
    stop = reachable(stop, width * height)
    t_stop = resolve_t_stop(config, stop)
    steps = make_plan(model.schedule_config.num_timesteps, t_stop, config.groups, RecordLayout.COARSE).num_steps
    candidates = 2**log2_candidates
    calls = steps + RATE_BITS_PER_DIM * 3 * pixels / chunk_bits
    windows = network_windows(tiling_for(config, (padded_h, padded_w)), padded_h, padded_w, f)
    seconds = (steps * (_passes(model, windows, cost.net32_per_pixel, cost.net32_per_pixel2)
                        + cost.per_candidate_dim * candidates * 3 * pixels)
               + calls * cost.per_candidate_call * candidates)
    if stop.full_rate:
        seconds += steps * _passes(model, windows, cost.net64_per_pixel, cost.net64_per_pixel2)
    return EncodeEstimate(seconds, steps, stop.full_rate, not stop.full_rate)


def estimate_decode(model: Model, width: int, height: int, steps: int = 40, lossless: bool = False,
                    cost: CostModel = CPU_2_CORES, tiling: Tiling | None = None) -> float:
    """Seconds ``decompress`` takes for ``steps`` coded steps of a ``width``×``height`` file (one
    float32 network pass each; a lossless decode replays them in float64 instead).  ``tiling``:
    the file's (None: what the encoder picks for that size)."""
    f = model.unet_config.downsampling_factor
    padded = padded_size(height, width, f)
    tiling = tiling if tiling is not None else tiling_for(CodecConfig(), padded)
    a, b = (cost.net64_per_pixel, cost.net64_per_pixel2) if lossless else (cost.net32_per_pixel, cost.net32_per_pixel2)
    return steps * _passes(model, network_windows(tiling, *padded, f), a, b)


def _passes(model: Model, windows: list[tuple[int, int]], per_pixel: float, per_pixel2: float) -> float:
    """Seconds of one network pass over every window, net(P) = a·P + b·P² each."""
    return sum(network_cost_ratio(model.unet_config, h, w) * (per_pixel * h * w + per_pixel2 * (h * w) ** 2)
               for h, w in windows)


def faster_setting(model: Model, width: int, height: int, config, stop, cost: CostModel | None = None):
    """(a smaller ``log2_candidates``, its estimate) when that saves at least a quarter of the time,
    else None (with version 4's scoring the network passes are most of a large image's encode)."""
    if call_size(config, model, width * height)[0] <= 8:
        return None
    cheaper = replace(config, log2_candidates=8)
    faster = estimate_encode(model, width, height, cheaper, stop, cost)
    if faster.seconds > 0.75 * estimate_encode(model, width, height, config, stop, cost).seconds:
        return None
    return 8, faster
