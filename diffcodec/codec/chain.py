"""What encoder and decoder compute alike: the coded chain's priors and posteriors for one image
size, the shared noise, the lossless record's prediction, and the image ↔ model-range
conversions.

Network precision.  Channel decoding reads indices and never compares network outputs, so any
precision decodes it; x_t only drifts by rounding.  The lossless record's prediction, though, is a
rounding of x̂_0(x_{t_stop}), and a rounding needs equal inputs on both sides.  From format
version 3 it is defined on the *reference chain*: the channel records replayed with the network
computing in float64.  Two machines' float64 chains agree to about 1e-10 of a pixel, and the
prediction's guarded rounding (``bitstream.guarded_rounding``) absorbs any difference below
``GUARD_MARGIN``.  Lossy work runs the network in float32. The thread count is free (small images use one,
``ONE_THREAD_PIXELS``).
Files of versions 1 and 2 predict from a float32 chain run on one thread, as they were written.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from bitstream import chunks as chunking
from bitstream.channel import reconstruct as channel_reconstruct
from bitstream.container import Header, ImageMode, VarianceChoice
from bitstream.index_law import IndexModel
from bitstream.noise import SharedNoise
from bitstream.noise32 import SharedNoise32

from ..checkpoint import Model
from ..diffusion import GaussianDiffusion
from ..errors import DiffcodecError
from ..images import CodecImage
from ..schedule import ScheduleConfig
from ..tiling import Tiling, tiled
from .plan import StepPlan

SCHEDULES = {0: ScheduleConfig()}  # schedule ids of the format (FORMAT.md); never change one
XT_STREAM = (0, 0)  # shared-noise stream of x_T
REFERENCE_DTYPE = torch.float64  # the network's precision in the chain the lossless record is predicted from
WORKING_DTYPE = torch.float32  # ... and in lossy work
# The encoder lists every prediction value within this many pixel levels of a half-integer
# (``bitstream.guarded_rounding``): the decoder then rounds exactly as the encoder whenever their
# reference chains agree this closely (the margin's measurement: README, "Why these defaults").
GUARD_MARGIN = 2.0**-20


class CodecError(DiffcodecError):
    """A file this codec cannot decode (corrupt, truncated header, wrong model, …)."""


def schedule_id(model: Model) -> int:
    for sid, cfg in SCHEDULES.items():
        if cfg == model.schedule_config:
            return sid
    raise CodecError("the model's noise schedule has no id in the .ddc format")


def model_hash(model: Model) -> bytes:
    return bytes.fromhex(model.weights_sha256)[:4]


# Network passes on images up to this many pixels run on one CPU thread: their convolutions are
# too small to share, and on a busy machine the threads' barriers wait on each other (README,
# "Why these defaults").
ONE_THREAD_PIXELS = 64 * 64


@contextlib.contextmanager
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Chain:
    """Priors and posteriors of the coded chain for one image size; shared by both sides.

    ``reference``: the network computes in float64 (the chain the lossless record of version 3
    is predicted from); otherwise in float32.  Version 1 and 2 files use float32 on one thread."""

    def __init__(self, model: Model, header: Header, plan: StepPlan, padded_hw: tuple[int, int],
                 reference: bool = False):
        self.header = header
        self.legacy = header.version < 3
        self.reference = reference and not self.legacy
        self.model = model.in_dtype(REFERENCE_DTYPE if self.reference else WORKING_DTYPE)
        # version 5: the network runs in tiles (``diffcodec.tiling``); both sides cut the same ones
        self.tiling = Tiling(header.tile, header.halo)
        self.eps_fn = tiled(self.model.eps_fn, self.tiling, model.unet_config.downsampling_factor)
        self.plan = plan
        self.shape = (1, 3, *padded_hw)
        self.dims = int(np.prod(self.shape))
        # legacy files were written on one thread; small images gain nothing from more
        self.one_thread = self.legacy or padded_hw[0] * padded_hw[1] <= ONE_THREAD_PIXELS
        full = model.schedule_config.build()
        self.full_schedule = full
        self.diffusion = GaussianDiffusion(full.respace(plan.boundaries))
        self.step_of = {int(t): k + 1 for k, t in enumerate(self.diffusion.schedule.timesteps)}
        self.prior_variance = prior_variances(model, header, self.diffusion.schedule)
        # version 4: Philox4x32 and float32 normals from basic operations (``bitstream.noise32``)
        self.noise = SharedNoise32(header.seed) if header.version >= 4 else SharedNoise(header.seed)
        self.index_model = IndexModel(header.log2_candidates, header.chunk_bits, portable=not self.legacy,
                                      uniform=header.greedy)
        # greedy files code a one-chunk step (KL ≤ B: a small call) by exact PFR under the Zipf law of
        # budget B/2, since a k-bit index would cost far more than its KL (FORMAT.md §6)
        self.small_call_model = (IndexModel(header.log2_candidates, header.chunk_bits / 2) if header.greedy
                                 else self.index_model)
        self.levels_carry_over = header.version >= 4  # a record's first level change is from the last level
        self.level_model = chunking.LevelModel(portable=not self.legacy)
        self._order = None  # (step, permutation) of the last step asked for

    def x_T(self) -> torch.Tensor:
        u = self.noise.normal(XT_STREAM, 0, self.dims)
        return torch.from_numpy(u).view(self.shape)

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        k = torch.tensor([self.step_of[t]])
        with single_thread() if self.one_thread else contextlib.nullcontext():
            return self.diffusion.predict_eps(self.eps_fn, x, k).double()

    def x0_hat(self, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """Clipped x̂_0 of the state at t (eq. 15)."""
        return self.diffusion.x0_from_eps(x_t, torch.tensor([self.step_of[t]]), eps).clamp(-1, 1)

    def prior(self, x_t: torch.Tensor, t: int, eps: torch.Tensor):
        """(x̂_0, p mean (d,), p std scalar) of the step from t."""
        d = self.diffusion
        k = torch.tensor([self.step_of[t]])
        x0_hat, mean = d.denoise(x_t, k, eps, clip_denoised=True)
        return x0_hat, mean.flatten().numpy(), math.sqrt(float(self.prior_variance[k.item() - 1]))

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: int):
        k = torch.tensor([self.step_of[t]])
        mean, var = self.diffusion.q_posterior(x0, x_t, k)
        return mean.flatten().numpy(), math.sqrt(float(var.flatten()[0]))

    def index_model_for(self, level: int) -> IndexModel:
        """The law of the indices of a step at ``level``."""
        return self.small_call_model if level == 0 else self.index_model

    def small_call(self, level: int) -> bool:
        """Whether a step at ``level`` is coded by exact PFR although the file's rule is greedy."""
        return level == 0 and self.header.greedy

    def order(self, step: int) -> np.ndarray:
        """The step's shared permutation of the dimensions (its chunks are contiguous slices).  The
        last step's is kept: the encoder asks for it twice a step (coefficients, then the rebuild)."""
        if self._order is None or self._order[0] != step:
            self._order = (step, chunking.permutation(self.noise, (step, 0), self.dims))
        return self._order[1]

    def parts(self, step: int, level: int) -> list[np.ndarray]:
        return chunking.split(self.order(step), chunking.chunk_count(level))

    def chunk_sizes(self, level: int) -> np.ndarray:
        """Sizes of the chunks of ``parts`` at ``level``."""
        return chunking.split_sizes(self.dims, chunking.chunk_count(level))

    def step_from_indices(self, x_t: torch.Tensor, eps: torch.Tensor, step: int, t: int, level: int,
                          indices: list[int]) -> torch.Tensor:
        """x_s rebuilt from one coded step's level and candidate indices (what a decoder does)."""
        _, p_mean, p_std = self.prior(x_t, t, eps)
        x_s = np.empty(self.dims)
        if isinstance(self.noise, SharedNoise32):  # every chunk's candidate in one pass
            order = self.order(step)
            z = self.noise.selected_normals32(step, self.chunk_sizes(level), indices).astype(np.float64)
            x_s[order] = p_mean[order] + p_std * z
            return torch.from_numpy(x_s).view(self.shape)
        for j, (idx, n) in enumerate(zip(self.parts(step, level), indices, strict=True)):
            x_s[idx] = channel_reconstruct(n, p_mean[idx], p_std, self.noise, (step, j + 1))
        return torch.from_numpy(x_s).view(self.shape)


def prior_variances(model: Model, header: Header, schedule) -> np.ndarray:
    """σ² of p_θ for every step of the coded (respaced) chain, as the header's variance choice says."""
    if header.variance is VarianceChoice.POSTERIOR:
        return schedule.posterior_variance
    if header.variance is VarianceChoice.BETA:
        return schedule.betas
    check_variance_table(header, model)
    return model.error_table.variances(schedule)


def check_variance_table(header: Header, model: Model) -> None:
    """CodecError unless the model holds the error table an OPTIMAL-variance file names."""
    if header.variance is not VarianceChoice.OPTIMAL:
        return
    table = model.error_table
    if table is None or table.short_hash != header.variance_table:
        have = f"has table {table.short_hash.hex()}…" if table is not None else "has no error table"
        raise CodecError(f"the file was coded with the optimal reverse variances of table "
                         f"{header.variance_table.hex()}…, and model '{model.name}' {have}")


def padded_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """(H', W'): the image's sides padded up to multiples of the network's ``factor``."""
    return int(height) + (-int(height) % factor), int(width) + (-int(width) % factor)


def pad_to_factor(rgb: np.ndarray, factor: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ph, pw = -h % factor, -w % factor
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else rgb


def to_model(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float64) / 127.5 - 1.0).permute(2, 0, 1)[None].contiguous()


def to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    img = ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[:h, :w])


def prediction_values(x0_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
    """(x̂_0 + 1)·127.5 on the unpadded crop, all three channels, planar order: the real numbers
    the lossless record's prediction rounds."""
    return ((x0_hat[0, :, :h, :w] + 1) * 127.5).flatten().numpy()


def prediction_from_rounded(rounded: np.ndarray, mode: ImageMode) -> np.ndarray:
    """The lossless step's integer prediction from the rounded values of the three channels (one
    plane for L: the rounded mean of the three)."""
    pred = np.clip(rounded, 0, 255).reshape(3, -1)
    if mode is ImageMode.L:
        return (pred.sum(0) * 2 + 3) // 6  # round(mean of three integers), never a tie
    return pred.reshape(-1)


def prediction(x0_hat: torch.Tensor, h: int, w: int, mode: ImageMode) -> np.ndarray:
    """Integer prediction of versions 1 and 2: the values rounded with no guard."""
    pred = ((x0_hat[0, :, :h, :w] + 1) * 127.5).round().clamp(0, 255).to(torch.int64)
    if mode is ImageMode.L:
        pred = pred.double().mean(0, keepdim=True).round().to(torch.int64)
    return pred.flatten().numpy()


def lossless_pixels(image: CodecImage) -> np.ndarray:
    planes = image.rgb[:, :, :1] if image.mode is ImageMode.L else image.rgb
    return planes.transpose(2, 0, 1).astype(np.int64).flatten()
