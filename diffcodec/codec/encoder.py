"""Encoding (Algorithm 3): an image → records, with the stop rules and per-step statistics."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from bitstream import chunks as chunking
from bitstream import guarded_rounding, interlaced
from bitstream.channel import log_weight_coefficients
from bitstream.container import ENDING_VERSION, Header, ImageMode, RecordLayout, VarianceChoice, crc16, pack, unpack
from bitstream.selection import EXACT, SelectionRule, select_step, step_coefficients

from ..checkpoint import Model
from ..images import CodecImage
from ..quality import ms_ssim_or_none, psnr_rgb
from ..tiling import Tiling
from .chain import (
    GUARD_MARGIN,
    Chain,
    lossless_pixels,
    model_hash,
    pad_to_factor,
    padded_size,
    prediction_from_rounded,
    prediction_values,
    schedule_id,
    to_model,
    to_uint8,
)
from .config import (DEFAULT_STOP, CodecConfig, Stop, call_size, format_version, reachable, resolve_t_stop,
                     selection_rule, tiling_for)
from .landing import Attempt, enough, land
from .limits import DEFAULT_MAX_PIXELS, check_pixels
from .plan import make_plan
from .records import RecordWriter
from .stats import ChainHealth, CodedSettings, EncodeStats, FullRateRetry, RecordStats, StepStats, Target


# A lossy stop whose target only the lossless record meets (no lossy prefix reaches it) would
# give a file coded down to LOSSY_T_STOP, a few per cent larger than the full-rate file.  The
# encoder then also encodes the full-rate file and keeps the smaller; for a --bpp budget it does
# so when its own full file fits, or overshoots by at most this fraction (README, "Why these
# defaults").
FULL_RATE_RETRY_MARGIN = 0.15



@dataclass
class Encoded:
    """The file's bytes and what the encode measured."""

    data: bytes
    stats: EncodeStats


def _header(model: Model, image: CodecImage, config: CodecConfig, t_stop: int, tiling: Tiling) -> Header:
    layout = config.layout
    if layout is None:
        layout = RecordLayout.COARSE if image.width * image.height < 256 * 256 else RecordLayout.EVERY_STEP
    log2_candidates, chunk_bits = call_size(config, model, image.width * image.height)
    quarter = round(chunk_bits * 4)  # a multiple of 1/4 (CodecConfig checks a given one)
    variance = config.variance
    if variance is None:
        variance = VarianceChoice.OPTIMAL if model.error_table is not None else VarianceChoice.POSTERIOR
    if variance is VarianceChoice.OPTIMAL and model.error_table is None:
        raise ValueError(f"model '{model.name}' has no error table for optimal reverse variances")
    table = model.error_table.short_hash if variance is VarianceChoice.OPTIMAL else b""
    return Header(model_hash(model), image.width, image.height, image.mode, variance, layout,
                  schedule_id(model), t_stop, config.groups, tiling.tile, log2_candidates, quarter, config.seed,
                  version=format_version(config, tiling), variance_table=table, selection=selection_rule(config).byte,
                  halo=tiling.halo)


@torch.no_grad()
def compress(image: CodecImage, model: Model, config: CodecConfig = CodecConfig(), stop: Stop = DEFAULT_STOP,
             progress=None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Encoded:
    """Encode ``image``; ``progress(done, total)`` is called after each coded step.

    The channel steps run the network in float32, whatever the stop, so an early stop gives the
    same records as a full-rate encode; the lossless record is predicted from the records replayed
    with the network in float64 (the reference chain, ``chain`` module docstring).  A --bpp
    budget stops coding within the first record that cannot fit.  A target that only the
    lossless record meets gives no larger a file than full rate (``FULL_RATE_RETRY_MARGIN``).
    ``stats.target`` says whether the stop's target was met.  An image of more than
    ``max_pixels`` pixels (None: no limit) is refused before any work (``limits``)."""
    f = model.unet_config.downsampling_factor
    tiling = tiling_for(config, padded_size(image.height, image.width, f))
    check_pixels(image.width, image.height, max_pixels, "encoding", f, whole=tiling.whole)
    stop = reachable(stop, image.width * image.height)
    header = _header(model, image, config, resolve_t_stop(config, stop), tiling)
    plan = make_plan(model.schedule_config.num_timesteps, header.t_stop, header.groups, header.layout)
    h, w = image.height, image.width
    padded = pad_to_factor(image.rgb, model.unet_config.downsampling_factor)
    chain = Chain(model, header, plan, padded.shape[:2])
    rule = selection_rule(config)
    scorer = candidate_scorer(model) if header.version < 4 else log_weights_function(model)
    x0 = to_model(padded)
    records: list[bytes] = []
    if image.mode is ImageMode.RGBA:
        records.append(zlib.compress(image.alpha.tobytes(), 9))
    sizes = [len(pack(header, records))]  # file bytes after each record
    steps_out, record_out, coded_steps = [], [], []
    x = chain.x_T()
    eps = chain.eps(x, plan.boundaries[0])
    total_steps = plan.num_steps + 1
    done = 0
    stop_here = False
    budget = None if stop.bpp is None else stop.bpp * h * w / 8  # bytes
    lands = can_land(config, stop)
    plan_T = model.schedule_config.num_timesteps
    last_level = 0
    for r, steps in enumerate(plan.record_steps()):
        enc = RecordWriter(last_level if chain.levels_carry_over else 0)
        for k, (step, t, s) in enumerate(steps):
            before = (x, eps, enc.copy()) if lands else None
            coded = code_step(chain, rule, scorer, x0, x, eps, step, t, s, enc)
            x = coded.x_s
            eps = chain.eps(x, s)
            coded_steps.append(coded.symbols)
            steps_out.append(coded.stats)
            done += 1
            if progress:
                progress(done, total_steps)
            if lands:
                at_s = _attempt(chain, header, s, x, eps, enc, coded, records, image, x0,
                                needs_end=k < len(steps) - 1)
                if enough(at_s, stop.psnr, budget):
                    x_t, eps_t, enc_t = before
                    at_t = None  # the file ending at t, before this step (none before the first step)
                    if k > 0:
                        at_t = _attempt(chain, header, t, x_t, eps_t, enc_t, None, records, image, x0)
                    elif steps_out[:-1]:
                        at_t = _attempt(chain, header, t, x_t, eps_t, None, None, records, image, x0, needs_end=False)

                    def attempt(end_t: int) -> Attempt:
                        plan_e = make_plan(plan_T, header.t_stop, header.groups, header.layout, end_t)
                        chain_e = Chain(model, replace(header, version=ENDING_VERSION, end_t=end_t), plan_e,
                                        padded.shape[:2])
                        enc_e = enc_t.copy()
                        coded_e = code_step(chain_e, rule, scorer, x0, x_t, eps_t, step, t, end_t, enc_e)
                        return _attempt(chain_e, header, end_t, coded_e.x_s, chain_e.eps(coded_e.x_s, end_t), enc_e,
                                        coded_e, records, image, x0)

                    final = land(t, at_s, attempt, stop.psnr, budget, at_t).state
                    header, x = final.header, final.x
                    del coded_steps[-1], steps_out[-1]
                    if final.coded is not None:
                        coded_steps.append(final.coded.symbols)
                        steps_out.append(final.coded.stats)
                    if final.record is not None:
                        records.append(final.record)
                        sizes.append(len(pack(header, records)))
                        record_out.append(_record_stats(chain, len(records) - 1, final.t, sizes[-1], final.quality,
                                                        x, x0, image))
                    stop_here = True
                    break
            elif budget is not None and r > 0 and sizes[-1] + enc.bytes_at_least() + 3 > budget:
                stop_here = True  # this record cannot fit (3: its shortest framing): not finished
                break
        if stop_here:
            break
        last_level = enc.last_level
        records.append(enc.finish())
        sizes.append(len(pack(header, records)))
        t_now = plan.t_after_record(r)
        record_out.append(_record_stats(chain, len(records) - 1, t_now, sizes[-1],
                                        _quality(chain, t_now, x, eps, x0, image), x, x0, image))
        stop_here = _should_stop(stop, t_now, record_out[-1].psnr_mean, sizes, h * w)
        if stop_here:
            break
    lossless = {}
    if not stop_here:  # the lossless record
        reference = Chain(model, header, plan, padded.shape[:2], reference=True)
        x, eps = replay(reference, coded_steps)
        payload, lossless = _lossless_record(image, reference.x0_hat(x, plan.t_stop, eps))
        records.append(payload)
        sizes.append(len(pack(header, records)))
        record_out.append(RecordStats(len(records) - 1, 0, sizes[-1], None, 0.0))
        done += 1
        if progress:
            progress(done, total_steps)
    keep = 2 if image.mode is ImageMode.RGBA else 1  # alpha alone is no image
    if stop.bpp is not None:  # drop records past the budget, keeping at least one channel record
        while len(records) > keep and len(pack(header, records)) * 8 > stop.bpp * h * w:
            records.pop()
            record_out.pop()
    data = pack(header, records)
    retry = (not stop_here and config.t_stop is None and not stop.full_rate
             and (budget is None or sizes[-1] <= budget * (1 + FULL_RATE_RETRY_MARGIN)))  # sizes[-1]: all records
    settings = CodedSettings(header.t_stop, header.groups, header.log2_candidates, header.chunk_bits,
                             header.variance.name.lower(), header.layout.name.lower(), header.seed, rule.describe(),
                             header.version, header.end_t)
    stats = EncodeStats(unpack(data).header_bytes, len(data), h * w, len(data) * 8 / (h * w), steps_out, record_out,
                        settings, len(records), lossless)
    if retry:  # only the lossless record met the target: the full-rate file may be smaller
        def more(d, t):
            if progress:
                progress(done + d, done + t)
        full = compress(image, model, config, Stop(), more, max_pixels=None)
        if len(full.data) < len(data) and (budget is None or len(full.data) <= budget):
            data, stats = full.data, full.stats
        stats.full_rate_retry = FullRateRetry(sizes[-1], len(full.data),
                                              "full_rate" if data is full.data else "lossy_t_stop")
    stats.target = _target(stop, stats)
    return Encoded(data, stats)


@dataclass
class CodedStep:
    """One channel-simulation step t → s: its symbols, its statistics and the state it reaches."""

    symbols: tuple  # (step, t, s, level, indices), what ``replay`` and a decoder rebuild from
    stats: StepStats
    x_s: torch.Tensor


def code_step(chain: Chain, rule: SelectionRule, scorer, x0: torch.Tensor, x: torch.Tensor, eps: torch.Tensor,
              step: int, t: int, s: int, enc: RecordWriter) -> CodedStep:
    """Code the step from x_t to s into ``enc`` (its level change and candidate indices)."""
    header = chain.header
    x0_hat, p_mean, p_std = chain.prior(x, t, eps)
    q_mean, q_std = chain.posterior(x0, x, t)
    kl_dims = np.log(p_std / q_std) + (q_std**2 + (q_mean - p_mean) ** 2) / (2 * p_std**2) - 0.5
    kl_bits = float(kl_dims.sum() / math.log(2))
    level = chunking.level_for(kl_bits, header.chunk_bits, chain.dims)
    coded = enc.level(chain.level_model, level)
    if header.version >= 4:
        a, b = step_coefficients(q_mean, q_std, p_mean, p_std, chain.order(step))
        indices = select_step(header.seed, step, a, b, chain.chunk_sizes(level), header.log2_candidates,
                              EXACT if chain.small_call(level) else rule, scorer)
    else:
        parts = chain.parts(step, level)
        coefficients = [log_weight_coefficients(q_mean[idx], q_std, p_mean[idx], p_std) for idx in parts]
        indices = scorer.best_indices(header.seed, [(step, j + 1) for j in range(len(parts))], coefficients,
                                      header.log2_candidates)
    for n in indices:
        coded += enc.index(chain.index_model_for(level), n)
    x_s = chain.step_from_indices(x, eps, step, t, level, indices)  # exactly what a decoder rebuilds
    return CodedStep((step, t, s, level, indices),
                     StepStats(step, t, s, kl_bits, len(indices), coded), x_s)


def can_land(config: CodecConfig, stop: Stop) -> bool:
    """Whether a --psnr or --bpp target may end the file inside a plan step (``landing``): the
    encoder chooses the version (6 then) and the stop has such a target."""
    return config.version is None and (stop.psnr is not None or stop.bpp is not None)


@dataclass
class _Ending:
    """A file ending at t: its header, its last record (None: the records as they are), the state."""

    t: int
    header: Header
    record: bytes | None
    coded: CodedStep | None
    x: torch.Tensor
    quality: tuple[float, float, np.ndarray]  # (PSNR, RMSE, the picture) of x̂_0 there


def _quality(chain: Chain, t: int, x: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor,
             image: CodecImage) -> tuple[float, float, np.ndarray]:
    """PSNR and RMSE (on [0, 255]) of x̂_0 at t against the image, and x̂_0 as uint8 pixels (the
    MS-SSIM of a kept record is taken from them, not on every landing attempt)."""
    h, w = image.height, image.width
    x0_hat = chain.x0_hat(x, t, eps)
    rmse = float(((x0_hat - x0)[..., :h, :w] ** 2).mean().sqrt()) * 127.5
    shown = to_uint8(x0_hat, h, w)
    return psnr_rgb(image.rgb, shown), rmse, shown


def _record_stats(chain: Chain, index: int, t: int, file_bytes: int, quality: tuple[float, float, np.ndarray],
                  x: torch.Tensor, x0: torch.Tensor, image: CodecImage) -> RecordStats:
    """A kept lossy record's stats: its ``_quality``, the MS-SSIM of its picture, the chain's health."""
    psnr, rmse, shown = quality
    return RecordStats(index, t, file_bytes, psnr, rmse, ms_ssim_or_none(image.rgb, shown),
                       ChainHealth.of(x, x0, chain.full_schedule.alphas_cumprod[t - 1]))


def _attempt(chain: Chain, header: Header, t: int, x: torch.Tensor, eps: torch.Tensor, enc: RecordWriter | None,
             coded: CodedStep | None, records: list[bytes], image: CodecImage, x0: torch.Tensor,
             needs_end: bool = True) -> Attempt:
    """The file that ends at t with the open record ``enc`` (None: the records as they are); its
    header names ``end_t`` unless the layout ends a record at t anyway (``needs_end`` False)."""
    if needs_end:
        header = replace(header, version=ENDING_VERSION, end_t=t)
    record = enc.finish() if enc is not None else None
    quality = _quality(chain, t, x, eps, x0, image)
    size = len(pack(header, records + ([record] if record is not None else [])))
    return Attempt(t, quality[0], size, _Ending(t, header, record, coded, x, quality))


def candidate_scorer(model: Model):
    """Where the channel simulation scores its candidates: on the model's GPU when it has one
    (``bitstream.torch_scoring``), else in the CPU's compiled loop; both pick the same indices."""
    if model.device.type == "cpu":
        from bitstream.kernels import CompiledScorer  # numba: imported by the encoder only

        return CompiledScorer()
    from bitstream.torch_scoring import TorchScorer

    return TorchScorer(str(model.device))


def log_weights_function(model: Model):
    """The version-4 scorer of the model's device (``bitstream.selection``): the compiled CPU
    kernel, or torch on the model's GPU; both compute the same normals bit for bit."""
    if model.device.type == "cpu":
        from bitstream.kernels32 import log_weights_step  # numba: imported by the encoder only

        return log_weights_step
    import functools

    from bitstream.torch_noise32 import log_weights_step

    return functools.partial(log_weights_step, device=str(model.device))


def _target(stop: Stop, stats: EncodeStats) -> Target:
    """Which target the stop set and whether the file meets it (only a --bpp budget can be
    missed: the smallest file, header and first channel record, may exceed it)."""
    last_t, last_psnr = (stats.last_record.t, stats.last_record.psnr_mean) if stats.records else (None, None)
    if stop.bpp is not None:
        return Target("bpp", stop.bpp, stats.bpp <= stop.bpp, stats.bpp)
    if stop.psnr is not None:  # the lossless record meets any PSNR (reached: None, as its psnr_mean)
        return Target("psnr", stop.psnr, last_t == 0 or (last_psnr is not None and last_psnr >= stop.psnr), last_psnr)
    if stop.upto_t:
        return Target("upto_t", stop.upto_t, last_t is not None and last_t <= stop.upto_t, last_t)
    return Target("full_rate", None, last_t == 0, last_t)


def replay(chain: Chain, coded_steps: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, ε̂) at the end of the coded steps ``(step, t, s, level, indices)``, rebuilt on ``chain``
    as a decoder would (the encoder's float64 replay of its float32 encode)."""
    x = chain.x_T()
    eps = chain.eps(x, chain.plan.boundaries[0])
    for step, t, s, level, indices in coded_steps:
        x = chain.step_from_indices(x, eps, step, t, level, indices)
        eps = chain.eps(x, s)
    return x, eps


def _should_stop(stop: Stop, t_now: int, psnr: float, sizes: list[int], pixels: int) -> bool:
    if stop.upto_t is not None and stop.upto_t > 0 and t_now <= stop.upto_t:
        return True
    if stop.psnr is not None and psnr >= stop.psnr:
        return True
    return stop.bpp is not None and sizes[-1] * 8 > stop.bpp * pixels


def _lossless_record(image: CodecImage, x0_hat: torch.Tensor) -> tuple[bytes, dict]:
    """Pixel CRC, the guarded rounding's list, the residual planes (FORMAT.md §7)."""
    h, w = image.height, image.width
    values = prediction_values(x0_hat, h, w)
    guard, rounded = guarded_rounding.encode(values, GUARD_MARGIN)
    r = lossless_pixels(image) - prediction_from_rounded(rounded, image.mode)
    check = crc16(image.rgb.tobytes())
    listed = int(guarded_rounding.near_half(values, GUARD_MARGIN).size)
    return (check.to_bytes(2, "little") + guard + interlaced.encode(r.reshape(-1, h, w)),
            {"guard_listed": listed, "guard_bytes": len(guard), "guard_margin": GUARD_MARGIN})
