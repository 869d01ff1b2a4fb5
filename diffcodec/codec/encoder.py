"""Encoding (Algorithm 3): an image → records, with the stop rules and per-step statistics."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from bitstream import chunks as chunking
from bitstream import guarded_rounding, interlaced
from bitstream.channel import log_weight_coefficients
from bitstream.container import ENDING_VERSION, TILED_VERSION, UNTILED_VERSION, Header, ImageMode, RecordLayout, VarianceChoice, crc16, pack, unpack
from bitstream.selection import EXACT, GREEDY, SelectionRule, select_step, step_coefficients

from ..checkpoint import Model
from ..images import CodecImage
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
from .landing import Attempt, enough, land
from .limits import DEFAULT_MAX_PIXELS, check_pixels
from .plan import make_plan
from .records import RecordWriter

@dataclass(frozen=True)
class CodecConfig:
    """Encoder settings; all of them are written into the header."""

    t_stop: int | None = None  # None: chosen by the stop rule (:func:`resolve_t_stop`)
    groups: int = 40
    log2_candidates: int | None = None  # None: by the model's device (:func:`call_size`)
    chunk_bits: float | None = None  # KL budget of a call in bits; None: by the model's device
    variance: VarianceChoice | None = None  # None: OPTIMAL when the model has an error table, else POSTERIOR
    layout: RecordLayout | None = None  # None: COARSE below 256×256 pixels, else EVERY_STEP
    seed: int = 0
    selection: SelectionRule | None = None  # None: DEFAULT_SELECTION (version 3: exact PFR only)
    tiling: Tiling | None = None  # how the network sees the image; None: by its size (:func:`tiling_for`)
    version: int | None = None  # format version written: None = 5 when tiled, else 4; 3 = exact PFR, Philox4x64


# Images of more pixels than this (after padding) are run through the network in tiles: memory and
# time then grow linearly with the pixels (``diffcodec.tiling``).  `photo`'s bound is no worse for
# it (``benchmarks.local_evaluation``, paired): tiles of 128 with a 16-pixel halo −0.09 % on six
# 256×256 Kodak crops; 384:16 −0.01 % on two whole Kodak images, where a pass of kodim02 (run
# alone) took 6.9 s against 10.2 s whole: 1.11 × the pixels, in windows that suit the caches better.
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

# t_stop, the last channel-coded step, when the configuration leaves it open.  Below it, x_0 is
# sent by the lossless record, which costs more than the bound's steps t ≤ t_stop but less than
# channel-simulating them (each call pays its own overhead on a few bits of KL).  A full-rate file
# is cheapest with a higher t_stop (first 12 CIFAR-10 test images, defaults otherwise: file ÷
# bound 1.166 at t_stop 10, 1.138 at 20, 1.139 at 30, 1.145 at 40); lossy stops need
# records down to small t, where PSNR reaches the usual targets (35 dB and above), so they keep
# a low one.
LOSSY_T_STOP = 10
FULL_RATE_T_STOP = 20


# A lossy stop whose target only the lossless record meets (no lossy prefix reaches it) would
# give a file coded down to LOSSY_T_STOP, a few per cent larger than the full-rate file.  The
# encoder then also encodes the full-rate file and keeps the smaller; for a --bpp budget it does
# so when its own full file fits, or overshoots by at most this fraction (its full file ÷ the
# full-rate file, first 8 CIFAR-10 test images, 40 groups, 2^8 candidates, 3-bit calls:
# 1.027 … 1.097).
FULL_RATE_RETRY_MARGIN = 0.15


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


def _standardised(x_t: torch.Tensor, x0: torch.Tensor, abar: float) -> dict:
    """z = (x_t − √ᾱ x_0)/√(1−ᾱ), N(0, 1) per dimension if x_t ~ q(x_t|x_0): its mean, variance and
    Kolmogorov–Smirnov distance to N(0, 1) (a fidelity check of the channel simulation)."""
    z = np.sort(((x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)).flatten().numpy())
    n = z.size
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    ks = float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))
    return {"z_mean": float(z.mean()), "z_var": float(z.var()), "z_ks": ks, "z_n": n}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@dataclass
class Encoded:
    data: bytes
    stats: dict = field(default_factory=dict)


# Channel-simulation calls sized for where the candidates are scored: (log2 candidates, KL bits
# per call).  Each call costs about log2(B + 1) + 1 bits over its KL, so bigger calls waste less,
# but the sample follows q only while 2**k is well above 2**B, and the work grows as 2**k.
CPU_CALLS = (12, 5.0)  # the CPU's compiled loop: ~8 s a CIFAR-10 image at full rate on 2 cores
GPU_CALLS = (16, 8.0)  # a GPU scores 2**16 candidates of a call at once; calls of 10 or 12 bits with
# 2**16 candidates pull the sample 0.2σ and 0.44σ towards the prior, 8 bits by 0.02σ (benchmarks.channel_overhead)
# Greedy selection sends k bits a call whatever its KL, so its calls carry more: about k − 2 bits.
GREEDY_SLACK_BITS = 2.0
GREEDY_CPU_CALLS = (12, 10.0)
GREEDY_GPU_CALLS = (16, 14.0)
# On small images scoring is cheap (its work grows with the pixels), and 2^16 candidates pay: first
# 32 CIFAR-10 test images, `cifar10`, BD-rate against version 3's defaults −17.1 % at 2^16 and 14
# bits, −14.3 % at 2^12 and 10 bits, median encode 11.1 s and 2.9 s on one core of 2
# (``benchmarks.selection_rules``).
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


def _header(model: Model, image: CodecImage, config: CodecConfig, t_stop: int, tiling: Tiling) -> Header:
    layout = config.layout
    if layout is None:
        layout = RecordLayout.COARSE if image.width * image.height < 256 * 256 else RecordLayout.EVERY_STEP
    log2_candidates, chunk_bits = call_size(config, model, image.width * image.height)
    quarter = round(chunk_bits * 4)
    if abs(quarter / 4 - chunk_bits) > 1e-9:
        raise ValueError("chunk_bits must be a multiple of 1/4")
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
    ``stats["target"]`` says whether the stop's target was met.  An image of more than
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
                        z = _standardised(x, x0, chain.full_schedule.alphas_cumprod[final.t - 1])
                        record_out.append({"record": len(records) - 1, "t": final.t, "file_bytes": sizes[-1],
                                           **final.stats, **z})
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
        record_out.append({"record": len(records) - 1, "t": t_now, "file_bytes": sizes[-1],
                           **_state_stats(chain, t_now, x, eps, x0, image)})
        stop_here = _should_stop(stop, t_now, record_out[-1]["psnr_mean"], sizes, h * w)
        if stop_here:
            break
    lossless = {}
    if not stop_here:  # the lossless record
        reference = Chain(model, header, plan, padded.shape[:2], reference=True)
        x, eps = replay(reference, coded_steps)
        payload, lossless = _lossless_record(image, reference.x0_hat(x, plan.t_stop, eps))
        records.append(payload)
        sizes.append(len(pack(header, records)))
        record_out.append({"record": len(records) - 1, "t": 0, "file_bytes": sizes[-1], "psnr_mean": None,
                           "rmse_0_255": 0.0})
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
    stats = {"header_bytes": unpack(data).header_bytes, "file_bytes": len(data), "pixels": h * w, "dims": 3 * h * w,
             "bpp": len(data) * 8 / (h * w), "steps": steps_out, "records": record_out, "lossless": lossless,
             "config": {"t_stop": header.t_stop, "groups": header.groups, "log2_candidates": header.log2_candidates,
                        "chunk_bits": header.chunk_bits, "variance": header.variance.name.lower(),
                        "layout": header.layout.name.lower(), "seed": header.seed,
                        "selection": rule.describe(), "version": header.version, "end_t": header.end_t}}
    stats["record_count"] = len(records)
    if retry:  # only the lossless record met the target: the full-rate file may be smaller
        def more(d, t):
            if progress:
                progress(done + d, done + t)
        full = compress(image, model, config, Stop(), more, max_pixels=None)
        if len(full.data) < len(data) and (budget is None or len(full.data) <= budget):
            data, stats = full.data, full.stats
        stats["full_rate_retry"] = {"lossy_t_stop_bytes": sizes[-1], "full_rate_bytes": len(full.data),
                                    "kept": "full_rate" if data is full.data else "lossy_t_stop"}
    stats["target"] = _target(stop, stats)
    return Encoded(data, stats)


@dataclass
class CodedStep:
    """One channel-simulation step t → s: its symbols, its statistics and the state it reaches."""

    symbols: tuple  # (step, t, s, level, indices), what ``replay`` and a decoder rebuild from
    stats: dict
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
                     {"step": step, "t": t, "s": s, "kl_bits": kl_bits, "chunks": len(indices), "ideal_coded_bits": coded},
                     x_s)


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
    stats: dict


def _state_stats(chain: Chain, t: int, x: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor, image: CodecImage,
                 z: bool = True) -> dict:
    """PSNR and RMSE of x̂_0 at t, and (``z``) the chain's z statistics there: one record's stats."""
    h, w = image.height, image.width
    x0_hat = chain.x0_hat(x, t, eps)
    rmse = float(((x0_hat - x0)[..., :h, :w] ** 2).mean().sqrt()) * 127.5
    out = {"psnr_mean": _psnr(to_uint8(x0_hat, h, w), image.rgb), "rmse_0_255": rmse}
    if z:
        out.update(_standardised(x, x0, chain.full_schedule.alphas_cumprod[t - 1]))
    return out


def _attempt(chain: Chain, header: Header, t: int, x: torch.Tensor, eps: torch.Tensor, enc: RecordWriter | None,
             coded: CodedStep | None, records: list[bytes], image: CodecImage, x0: torch.Tensor,
             needs_end: bool = True) -> Attempt:
    """The file that ends at t with the open record ``enc`` (None: the records as they are); its
    header names ``end_t`` unless the layout ends a record at t anyway (``needs_end`` False)."""
    if needs_end:
        header = replace(header, version=ENDING_VERSION, end_t=t)
    record = enc.finish() if enc is not None else None
    stats = _state_stats(chain, t, x, eps, x0, image, z=False)
    size = len(pack(header, records + ([record] if record is not None else [])))
    return Attempt(t, stats["psnr_mean"], size, _Ending(t, header, record, coded, x, stats))


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


def _target(stop: Stop, stats: dict) -> dict:
    """Which target the stop set and whether the file meets it (only a --bpp budget can be
    missed: the smallest file, header and first channel record, may exceed it)."""
    last = stats["records"][-1] if stats["records"] else {"t": None, "psnr_mean": None}
    if stop.bpp is not None:
        return {"rule": "bpp", "value": stop.bpp, "met": stats["bpp"] <= stop.bpp, "reached": stats["bpp"]}
    if stop.psnr is not None:  # the lossless record meets any PSNR (reached: None, as its psnr_mean)
        met = last["t"] == 0 or (last["psnr_mean"] is not None and last["psnr_mean"] >= stop.psnr)
        return {"rule": "psnr", "value": stop.psnr, "met": met, "reached": last["psnr_mean"]}
    if stop.upto_t:
        return {"rule": "upto_t", "value": stop.upto_t, "met": last["t"] is not None and last["t"] <= stop.upto_t,
                "reached": last["t"]}
    return {"rule": "full_rate", "value": None, "met": last["t"] == 0, "reached": last["t"]}


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
