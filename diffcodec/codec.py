"""The codec: where the diffusion model meets the bitstream (Algorithms 3 and 4 of the paper).

Encoding an image x_0 (``compress``):

1. x_T is drawn from the shared seed (p(x_T) = N(0, I); KL to q(x_T|x_0) ≈ 1e-5 bits/dim).
2. For each coded step t → s of the plan (``diffcodec.plan``), x_s ~ q(x_s|x_t, x_0) is sent
   by channel simulation against p_θ(x_s|x_t) = N(μ̃(x̂_0(x_t), x_t), σ²) (``bitstream.channel``):
   the step's dimensions are shuffled and split into chunks of about B bits of KL each
   (``bitstream.chunks``), one candidate index per chunk, all range-coded.
3. x_0 is sent losslessly given x_{t_stop}: integer residuals around the rounded x̂_0, colour
   planes predicted from each other, with a Gaussian law whose σ is chosen per plane
   (``bitstream.residual``).

Decoding (``decompress``) replays the chain from the indices; any prefix of records gives
x_t for some t, shown through a :class:`~diffcodec.reconstruct.Reconstruction`.

The network runs single-threaded inside the codec so that encoder and decoder on one kind of
machine compute bit-identical means (the thread count changes float results). Decoding
never depends on that: only the lossless step's rounded prediction does, and a CRC of the
pixels tells the decoder when the result is not exact.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from bitstream import chunks as chunking
from bitstream import residual
from bitstream.channel import IndexModel, reconstruct as channel_reconstruct, simulate
from bitstream.container import (
    FormatError, Header, ImageMode, RecordLayout, VarianceChoice, crc16, pack, unpack,
)
from bitstream.noise import SharedNoise

from .checkpoint import Model
from .diffusion import GaussianDiffusion
from .errors import DiffcodecError
from .images import CodecImage
from .plan import StepPlan, make_plan
from .reconstruct import Reconstruction, reconstruct
from .schedule import ScheduleConfig

SCHEDULES = {0: ScheduleConfig()}  # schedule ids of the format (FORMAT.md); never change one
XT_STREAM = (0, 0)  # shared-noise stream of x_T


@dataclass(frozen=True)
class CodecConfig:
    """Encoder settings; all of them are written into the header."""

    t_stop: int = 10
    groups: int = 40
    log2_candidates: int = 12
    chunk_bits: float = 5.0
    variance: VarianceChoice = VarianceChoice.POSTERIOR
    layout: RecordLayout | None = None  # None: COARSE below 256×256 pixels, else EVERY_STEP
    seed: int = 0


@dataclass(frozen=True)
class Stop:
    """Where the encoder stops (the first that applies; all None = code everything)."""

    upto_t: int | None = None  # stop once the chain reaches t <= upto_t (0 = lossless)
    bpp: float | None = None  # largest file within this many bits per pixel
    psnr: float | None = None  # first prefix whose mean reconstruction reaches this PSNR (dB)


DEFAULT_STOP = Stop(psnr=35.0)


class CodecError(DiffcodecError):
    """A file this codec cannot decode (corrupt, truncated header, wrong model, …)."""


def _schedule_id(model: Model) -> int:
    for sid, cfg in SCHEDULES.items():
        if cfg == model.schedule_config:
            return sid
    raise CodecError("the model's noise schedule has no id in the .ddc format")


def model_hash(model: Model) -> bytes:
    return bytes.fromhex(model.weights_sha256)[:4]


@contextlib.contextmanager
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Chain:
    """Priors and posteriors of the coded chain for one image size; shared by both sides."""

    def __init__(self, model: Model, header: Header, plan: StepPlan, padded_hw: tuple[int, int]):
        self.model = model
        self.header = header
        self.plan = plan
        self.shape = (1, 3, *padded_hw)
        self.dims = int(np.prod(self.shape))
        full = model.schedule_config.build()
        self.full_schedule = full
        self.diffusion = GaussianDiffusion(full.respace(plan.boundaries))
        self.step_of = {int(t): k + 1 for k, t in enumerate(self.diffusion.schedule.timesteps)}
        self.noise = SharedNoise(header.seed)
        self.index_model = IndexModel(header.log2_candidates, header.chunk_bits)
        self.level_model = chunking.LevelModel()

    def x_T(self) -> torch.Tensor:
        u = self.noise.normal(XT_STREAM, 0, self.dims)
        return torch.from_numpy(u).view(self.shape)

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        k = torch.tensor([self.step_of[t]])
        with _single_thread():
            return self.diffusion.predict_eps(self.model.eps_fn, x.float(), k).double()

    def prior(self, x_t: torch.Tensor, t: int, eps: torch.Tensor):
        """(x̂_0, p mean (d,), p std scalar) of the step from t."""
        d = self.diffusion
        k = torch.tensor([self.step_of[t]])
        x0_hat, mean = d.denoise(x_t, k, eps, clip_denoised=True)
        s = d.schedule
        var = s.posterior_variance if self.header.variance is VarianceChoice.POSTERIOR else s.betas
        return x0_hat, mean.flatten().numpy(), math.sqrt(float(var[k.item() - 1]))

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: int):
        k = torch.tensor([self.step_of[t]])
        mean, var = self.diffusion.q_posterior(x0, x_t, k)
        return mean.flatten().numpy(), math.sqrt(float(var.flatten()[0]))

    def parts(self, step: int, level: int) -> list[np.ndarray]:
        order = chunking.permutation(self.noise, (step, 0), self.dims)
        return chunking.split(order, chunking.chunk_count(level))


def _pad(rgb: np.ndarray, factor: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ph, pw = -h % factor, -w % factor
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else rgb


def _to_model(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float64) / 127.5 - 1.0).permute(2, 0, 1)[None].contiguous()


def _to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    img = ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[:h, :w])


def _prediction(x0_hat: torch.Tensor, h: int, w: int, mode: ImageMode) -> np.ndarray:
    """Integer prediction of the pixels the lossless step codes (one channel for L)."""
    pred = ((x0_hat[0, :, :h, :w] + 1) * 127.5).round().clamp(0, 255).to(torch.int64)
    if mode is ImageMode.L:
        pred = pred.double().mean(0, keepdim=True).round().to(torch.int64)
    return pred.flatten().numpy()


def _lossless_pixels(image: CodecImage) -> np.ndarray:
    planes = image.rgb[:, :, :1] if image.mode is ImageMode.L else image.rgb
    return planes.transpose(2, 0, 1).astype(np.int64).flatten()


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


def _header(model: Model, image: CodecImage, config: CodecConfig) -> Header:
    layout = config.layout
    if layout is None:
        layout = RecordLayout.COARSE if image.width * image.height < 256 * 256 else RecordLayout.EVERY_STEP
    quarter = round(config.chunk_bits * 4)
    if abs(quarter / 4 - config.chunk_bits) > 1e-9:
        raise ValueError("chunk_bits must be a multiple of 1/4")
    return Header(model_hash(model), image.width, image.height, image.mode, config.variance, layout,
                  _schedule_id(model), config.t_stop, config.groups, 0, config.log2_candidates, quarter, config.seed)


@torch.no_grad()
def compress(image: CodecImage, model: Model, config: CodecConfig = CodecConfig(), stop: Stop = DEFAULT_STOP,
             progress=None) -> Encoded:
    """Encode ``image``; ``progress(done, total)`` is called after each coded step."""
    header = _header(model, image, config)
    plan = make_plan(model.schedule_config.num_timesteps, header.t_stop, header.groups, header.layout)
    h, w = image.height, image.width
    padded = _pad(image.rgb, model.unet_config.downsampling_factor)
    chain = _Chain(model, header, plan, padded.shape[:2])
    x0 = _to_model(padded)
    records: list[bytes] = []
    if image.mode is ImageMode.RGBA:
        records.append(zlib.compress(image.alpha.tobytes(), 9))
    sizes = [len(pack(header, records))]  # file bytes after each record
    steps_out, record_out = [], []
    x = chain.x_T()
    eps = chain.eps(x, plan.boundaries[0])
    total_steps = plan.num_steps + 1
    done = 0
    stop_here = False
    for r, steps in enumerate(plan.record_steps()):
        enc = _RecordWriter()
        for step, t, s in steps:
            x0_hat, p_mean, p_std = chain.prior(x, t, eps)
            q_mean, q_std = chain.posterior(x0, x, t)
            kl_dims = np.log(p_std / q_std) + (q_std**2 + (q_mean - p_mean) ** 2) / (2 * p_std**2) - 0.5
            kl_bits = float(kl_dims.sum() / math.log(2))
            level = chunking.level_for(kl_bits, header.chunk_bits, chain.dims)
            coded = enc.level(chain.level_model, level)
            x_s = np.empty(chain.dims)
            parts = chain.parts(step, level)
            for j, idx in enumerate(parts):
                n, sample = simulate(q_mean[idx], q_std, p_mean[idx], p_std, chain.noise, (step, j + 1),
                                     header.log2_candidates)
                coded += enc.index(chain.index_model, n)
                x_s[idx] = sample
            x = torch.from_numpy(x_s).view(chain.shape)
            eps = chain.eps(x, s)
            steps_out.append({"step": step, "t": t, "s": s, "kl_bits": kl_bits, "chunks": len(parts),
                              "ideal_coded_bits": coded})
            done += 1
            if progress:
                progress(done, total_steps)
        records.append(enc.finish())
        sizes.append(len(pack(header, records)))
        t_now = plan.t_after_record(r)
        x0_hat = chain.diffusion.x0_from_eps(x, torch.tensor([chain.step_of[t_now]]), eps).clamp(-1, 1)
        psnr = _psnr(_to_uint8(x0_hat, h, w), image.rgb)
        rmse = float(((x0_hat - x0)[..., :h, :w] ** 2).mean().sqrt()) * 127.5
        record_out.append({"record": len(records) - 1, "t": t_now, "file_bytes": sizes[-1], "psnr_mean": psnr,
                           "rmse_0_255": rmse, **_standardised(x, x0, chain.full_schedule.alphas_cumprod[t_now - 1])})
        stop_here = _should_stop(stop, t_now, psnr, sizes, h * w)
        if stop_here:
            break
    if not stop_here:  # the lossless record
        t = plan.t_stop
        x0_hat = chain.diffusion.x0_from_eps(x, torch.tensor([chain.step_of[t]]), eps).clamp(-1, 1)
        records.append(_lossless_record(image, x0_hat))
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
    stats = {"header_bytes": unpack(data).header_bytes, "file_bytes": len(data), "pixels": h * w, "dims": 3 * h * w,
             "bpp": len(data) * 8 / (h * w), "steps": steps_out, "records": record_out,
             "config": {"t_stop": header.t_stop, "groups": header.groups, "log2_candidates": header.log2_candidates,
                        "chunk_bits": header.chunk_bits, "variance": header.variance.name.lower(),
                        "layout": header.layout.name.lower(), "seed": header.seed}}
    return Encoded(data, stats)


def _should_stop(stop: Stop, t_now: int, psnr: float, sizes: list[int], pixels: int) -> bool:
    if stop.upto_t is not None and stop.upto_t > 0 and t_now <= stop.upto_t:
        return True
    if stop.psnr is not None and psnr >= stop.psnr:
        return True
    return stop.bpp is not None and sizes[-1] * 8 > stop.bpp * pixels


def _lossless_record(image: CodecImage, x0_hat: torch.Tensor) -> bytes:
    h, w = image.height, image.width
    pixels = _lossless_pixels(image)
    r = (pixels - _prediction(x0_hat, h, w, image.mode)).reshape(-1, h * w)
    check = crc16(image.rgb.tobytes())
    return check.to_bytes(2, "little") + residual.encode_planes(r)


class _RecordWriter:
    """One range-coded stream per record: level changes and candidate indices, in order."""

    def __init__(self):
        import constriction
        self._enc = constriction.stream.queue.RangeEncoder()
        self._prev_level = 0

    def level(self, lm: chunking.LevelModel, level: int) -> float:
        delta = level - self._prev_level
        self._prev_level = level
        self._enc.encode(np.array([lm.symbol(delta)], dtype=np.int32), lm.model)
        return lm.ideal_bits(delta)

    def index(self, im: IndexModel, n: int) -> float:
        self._enc.encode(np.array([n], dtype=np.int32), im.model)
        return im.ideal_bits(n)

    def finish(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


class _RecordReader:
    def __init__(self, payload: bytes, record: int):
        import constriction
        data = payload + b"\0" * (-len(payload) % 4)
        self._dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        self._prev_level = 0
        self.record = record

    def _decode(self, model) -> int:
        try:
            return int(self._dec.decode(model, 1)[0])
        except (AssertionError, ValueError, KeyError) as e:
            raise CodecError(f"record {self.record} does not decode ({e})") from None

    def level(self, lm: chunking.LevelModel, dims: int) -> int:
        level = self._prev_level + lm.delta(self._decode(lm.model))
        if not 0 <= level <= chunking.MAX_LEVEL or chunking.chunk_count(level) > dims:
            raise CodecError(f"record {self.record} does not decode (level {level} out of range)")
        self._prev_level = level
        return level

    def index(self, im: IndexModel) -> int:
        return self._decode(im.model)


# ---- decoding -------------------------------------------------------------------------------


@dataclass
class Decoded:
    image: CodecImage
    t: int  # timestep of the decoded state (0: the lossless record was decoded)
    records_used: int
    truncated: bool  # the file ended inside a record
    exact: bool | None  # lossless record: pixels match the encoder's CRC (None if not decoded)
    frames: list = field(default_factory=list)  # (t, CodecImage) at each record, if asked
    x_t: torch.Tensor | None = None  # the chain state at t (padded size, [−1, 1] scale), t > 0
    records_available: int = 0  # complete records in the data


def read_header(data: bytes) -> Header:
    try:
        return Header.from_bytes(bytes(data))[0]
    except FormatError as e:
        raise CodecError(str(e)) from None


def check_model(header: Header, model: Model) -> None:
    if header.model_hash != model_hash(model):
        raise CodecError(f"the file was made with model {header.model_hash.hex()}…, not with "
                         f"'{model.name}' ({model.weights_sha256[:8]}…); pass the right --model")
    if SCHEDULES.get(header.schedule_id) != model.schedule_config:
        raise CodecError(f"the file's schedule id {header.schedule_id} does not match the model's schedule")


@torch.no_grad()
def decompress(data: bytes, model: Model, upto_t: int | None = None,
               how: Reconstruction = Reconstruction.MEAN, *, steps: int = 50, frames: bool = False,
               progress=None) -> Decoded:
    """Decode the longest complete prefix (or up to the first record at t <= ``upto_t``)."""
    try:
        unpacked = unpack(data)
    except FormatError as e:
        raise CodecError(str(e)) from None
    header = unpacked.header
    check_model(header, model)
    if header.tile != 0:
        raise CodecError("tiled files are not supported by this version")
    plan = make_plan(model.schedule_config.num_timesteps, header.t_stop, header.groups, header.layout)
    h, w = header.height, header.width
    f = model.unet_config.downsampling_factor
    chain = _Chain(model, header, plan, (h + (-h % f), w + (-w % f)))
    records = list(unpacked.records)
    alpha = None
    if header.mode is ImageMode.RGBA:
        if not records:
            raise CodecError("the file ends before its alpha record")
        try:
            alpha = np.frombuffer(zlib.decompress(records.pop(0)), dtype=np.uint8)
        except zlib.error:
            raise CodecError("record 0 (alpha) does not decode") from None
        if alpha.size != h * w:
            raise CodecError("record 0 (alpha) has the wrong size")
        alpha = alpha.reshape(h, w)
    offset = 1 if header.mode is ImageMode.RGBA else 0
    channel_records = plan.record_steps()
    if len(records) > len(channel_records) + 1:
        raise CodecError(f"the file has {len(records) + offset} records, more than its plan allows")
    x = chain.x_T()
    t_now = plan.boundaries[0]
    eps = chain.eps(x, t_now)
    out_frames = []
    used = 0

    def show(x, t, eps) -> CodecImage:
        if how is Reconstruction.MEAN:
            x0 = chain.diffusion.x0_from_eps(x, torch.tensor([chain.step_of[t]]), eps).clamp(-1, 1)
        else:
            with _single_thread():
                x0 = reconstruct(chain.full_schedule, model.eps_fn, x, t, how, steps=steps, seed=header.seed)
        return _image(_to_uint8(x0, h, w), header.mode, alpha)

    for r, payload in enumerate(records[:len(channel_records)]):
        reader = _RecordReader(payload, r + offset)
        for step, t, s in channel_records[r]:
            _, p_mean, p_std = chain.prior(x, t, eps)
            level = reader.level(chain.level_model, chain.dims)
            x_s = np.empty(chain.dims)
            for j, idx in enumerate(chain.parts(step, level)):
                n = reader.index(chain.index_model)
                x_s[idx] = channel_reconstruct(n, p_mean[idx], p_std, chain.noise, (step, j + 1))
            x = torch.from_numpy(x_s).view(chain.shape)
            eps = chain.eps(x, s)
            t_now = s
            if progress:
                progress()
        used = r + 1
        if frames:
            out_frames.append((t_now, show(x, t_now, eps)))
        if upto_t is not None and t_now <= upto_t and upto_t > 0:
            return Decoded(show(x, t_now, eps), t_now, used + offset, unpacked.truncated, None, out_frames, x,
                           len(unpacked.records))
    if len(records) == len(channel_records) + 1:
        payload = records[-1]
        if len(payload) < 2:
            raise CodecError(f"record {len(records) - 1 + offset} (lossless) is too short")
        check = int.from_bytes(payload[:2], "little")
        x0_hat = chain.diffusion.x0_from_eps(x, torch.tensor([chain.step_of[t_now]]), eps).clamp(-1, 1)
        pred = _prediction(x0_hat, h, w, header.mode)
        c = 1 if header.mode is ImageMode.L else 3
        try:
            r = residual.decode_planes(payload[2:], c, h * w).flatten()
        except (AssertionError, ValueError, KeyError) as e:
            raise CodecError(f"record {len(records) - 1 + offset} (lossless) does not decode ({e})") from None
        pixels = np.clip(pred + r, 0, 255).astype(np.uint8)
        planes = pixels.reshape(c, h, w).transpose(1, 2, 0)
        rgb = np.ascontiguousarray(np.repeat(planes, 3, axis=2) if c == 1 else planes)
        image = _image(rgb, header.mode, alpha)
        exact = crc16(rgb.tobytes()) == check
        if frames:
            out_frames.append((0, image))
        return Decoded(image, 0, len(records) + offset, unpacked.truncated, exact, out_frames,
                       records_available=len(unpacked.records))
    return Decoded(show(x, t_now, eps), t_now, used + offset, unpacked.truncated, None, out_frames, x,
                           len(unpacked.records))


def _image(rgb: np.ndarray, mode: ImageMode, alpha) -> CodecImage:
    if mode is ImageMode.L:
        grey = rgb.astype(np.float64).mean(axis=2).round().astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return CodecImage(np.ascontiguousarray(rgb), mode, alpha)


def describe(data: bytes) -> dict:
    """Header, plan and per-record sizes of a file, without a model (``diffcodec info``)."""
    try:
        u = unpack(data)
    except FormatError as e:
        raise CodecError(str(e)) from None
    h = u.header
    if h.schedule_id not in SCHEDULES:
        raise CodecError(f"unknown schedule id {h.schedule_id}")
    plan = make_plan(SCHEDULES[h.schedule_id].num_timesteps, h.t_stop, h.groups, h.layout)
    labels = ["alpha (zlib)"] if h.mode is ImageMode.RGBA else []
    prev = plan.boundaries[0]
    for r in range(len(plan.record_ends)):
        labels.append(f"t {prev}→{plan.t_after_record(r)}")
        prev = plan.t_after_record(r)
    labels.append("lossless x_0")
    dims = 3 * h.width * h.height
    total = u.header_bytes
    records = []
    for i, size in enumerate(u.record_bytes):
        total += size
        records.append({"record": i, "content": labels[i] if i < len(labels) else "?", "bytes": size,
                        "cumulative_bits_per_dim": total * 8 / dims})
    header = {"version": data[3], "model_hash": h.model_hash.hex(), "width": h.width, "height": h.height,
              "mode": h.mode.name, "variance": h.variance.name.lower(), "layout": h.layout.name.lower(),
              "schedule_id": h.schedule_id, "t_stop": h.t_stop, "groups": h.groups, "tile": h.tile,
              "log2_candidates": h.log2_candidates, "chunk_bits": h.chunk_bits, "seed": h.seed}
    return {"header": header, "header_bytes": u.header_bytes, "file_bytes": len(data),
            "bpp": len(data) * 8 / (h.width * h.height), "boundaries": list(plan.boundaries),
            "coded_steps": plan.num_steps, "records": records, "truncated": u.truncated}
