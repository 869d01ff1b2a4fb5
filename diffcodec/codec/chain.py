"""What encoder and decoder compute alike: the coded chain's priors and posteriors for one image
size, the shared noise, and the image ↔ model-range conversions."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from bitstream import chunks as chunking
from bitstream.channel import IndexModel
from bitstream.container import Header, ImageMode, VarianceChoice
from bitstream.noise import SharedNoise

from ..checkpoint import Model
from ..diffusion import GaussianDiffusion
from ..errors import DiffcodecError
from ..images import CodecImage
from ..plan import StepPlan
from ..schedule import ScheduleConfig

SCHEDULES = {0: ScheduleConfig()}  # schedule ids of the format (FORMAT.md); never change one
XT_STREAM = (0, 0)  # shared-noise stream of x_T


class CodecError(DiffcodecError):
    """A file this codec cannot decode (corrupt, truncated header, wrong model, …)."""


def schedule_id(model: Model) -> int:
    for sid, cfg in SCHEDULES.items():
        if cfg == model.schedule_config:
            return sid
    raise CodecError("the model's noise schedule has no id in the .ddc format")


def model_hash(model: Model) -> bytes:
    return bytes.fromhex(model.weights_sha256)[:4]


@contextlib.contextmanager
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Chain:
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
        with single_thread():
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


def pad_to_factor(rgb: np.ndarray, factor: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ph, pw = -h % factor, -w % factor
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else rgb


def to_model(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float64) / 127.5 - 1.0).permute(2, 0, 1)[None].contiguous()


def to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    img = ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[:h, :w])


def prediction(x0_hat: torch.Tensor, h: int, w: int, mode: ImageMode) -> np.ndarray:
    """Integer prediction of the pixels the lossless step codes (one channel for L)."""
    pred = ((x0_hat[0, :, :h, :w] + 1) * 127.5).round().clamp(0, 255).to(torch.int64)
    if mode is ImageMode.L:
        pred = pred.double().mean(0, keepdim=True).round().to(torch.int64)
    return pred.flatten().numpy()


def lossless_pixels(image: CodecImage) -> np.ndarray:
    planes = image.rgb[:, :, :1] if image.mode is ImageMode.L else image.rgb
    return planes.transpose(2, 0, 1).astype(np.int64).flatten()
