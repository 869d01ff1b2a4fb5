"""Training by Algorithm 1 (L_simple) with Adam, warm-up, gradient clipping and an EMA.

One process, or data-parallel under ``torchrun`` (torch.distributed, DDP): each rank draws its
own share of every batch, gradients are averaged, and rank 0 writes checkpoints.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm import tqdm

from .checkpoint import TRAIN_STATE_FILE, load_state_strict, read_config, save_checkpoint
from .data import DataConfig, to_model_range
from .diffusion import GaussianDiffusion
from .errors import CheckpointError, DiffcodecError
from .schedule import ScheduleConfig
from .unet import CONFIGS, UNet, UNetConfig


@dataclass
class TrainConfig:
    """Everything that determines a training run (the paper's CIFAR-10 values by default)."""

    unet: UNetConfig = field(default_factory=lambda: CONFIGS["ddpm-cifar10"])
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 800_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 5000
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    seed: int = 0
    save_every: int = 5000
    name: str = "model"

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("steps", "batch_size", "lr", "warmup_steps", "grad_clip",
                                           "ema_decay", "seed", "save_every", "name")}
        return {"unet": self.unet.to_dict(), "schedule": self.schedule.to_dict(), "data": self.data.to_dict(), **d}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        rest = {k: v for k, v in d.items() if k not in ("unet", "schedule", "data")}
        return cls(UNetConfig.from_dict(d["unet"]), ScheduleConfig.from_dict(d["schedule"]), DataConfig(**d["data"]), **rest)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, so short runs are not dominated by the initial weights."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; anything unusable is a DiffcodecError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DiffcodecError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise DiffcodecError(f"device {name!r} is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise DiffcodecError(f"device {name!r} is not supported (use cpu, cuda, cuda:N or auto)")
    return device


class Trainer:
    """Holds the network, its EMA, the optimiser and the data stream of one run."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, device: str = "auto", resume: bool = False):
        self.cfg, self.out_dir = cfg, Path(out_dir)
        self.rank, self.world = _dist_info()
        if cfg.batch_size % self.world:
            raise DiffcodecError(f"batch size {cfg.batch_size} is not divisible by {self.world} processes")
        if cfg.data.crop_size % cfg.unet.downsampling_factor:
            raise DiffcodecError(f"crop size {cfg.data.crop_size} is not divisible by the U-Net's factor "
                                 f"{cfg.unet.downsampling_factor}")
        self.device = pick_device(device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.net = UNet(cfg.unet).to(self.device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.diffusion = GaussianDiffusion(cfg.schedule.build())
        self.data = cfg.data.build()
        self.generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.rank)
        self.step, self.elapsed = 0, 0.0
        if resume:
            self._resume()
        self.model = (torch.nn.parallel.DistributedDataParallel(self.net) if self.world > 1 else self.net)

    # ---- state ------------------------------------------------------------------------------
    def _train_state(self) -> dict[str, torch.Tensor]:
        state = {f"param.{k}": v for k, v in self.net.state_dict().items()}
        names = {id(p): n for n, p in self.net.named_parameters()}
        for p, s in self.opt.state.items():
            for key in ("exp_avg", "exp_avg_sq", "step"):
                state[f"adam.{key}.{names[id(p)]}"] = torch.as_tensor(s[key]).reshape(-1)
        state["generator"] = self.generator.get_state()
        state["torch_rng"] = torch.get_rng_state()  # dropout draws from the global CPU generator
        state["counters"] = torch.tensor([self.step], dtype=torch.int64)
        state["elapsed"] = torch.tensor([self.elapsed], dtype=torch.float64)
        return state

    def _resume(self) -> None:
        config = read_config(self.out_dir)
        saved = config.get("meta", {}).get("training", {}).get("config")
        if saved is not None and TrainConfig.from_dict(saved).unet != self.cfg.unet:
            raise CheckpointError(f"{self.out_dir} holds a different U-Net configuration; cannot resume")
        path = self.out_dir / TRAIN_STATE_FILE
        if not path.is_file():
            raise CheckpointError(f"{self.out_dir} has no {TRAIN_STATE_FILE}; cannot resume")
        state = load_file(str(path))
        load_state_strict(self.net, {k[6:]: v for k, v in state.items() if k.startswith("param.")}, str(path))
        load_state_strict(self.ema, {k: v.float() for k, v in load_file(str(self.out_dir / "model.safetensors")).items()},
                          str(self.out_dir))
        for n, p in self.net.named_parameters():
            if f"adam.exp_avg.{n}" in state:
                self.opt.state[p] = {
                    "step": state[f"adam.step.{n}"].reshape(()).clone(),
                    "exp_avg": state[f"adam.exp_avg.{n}"].reshape(p.shape).to(self.device),
                    "exp_avg_sq": state[f"adam.exp_avg_sq.{n}"].reshape(p.shape).to(self.device),
                }
        self.generator.set_state(state["generator"])
        if "torch_rng" in state:  # absent in checkpoints written before it was saved
            torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed = int(state["counters"][0]), float(state["elapsed"][0])

    def save(self) -> None:
        if self.rank != 0:
            return
        meta = {"training": {"config": self.cfg.to_dict(), "steps_done": self.step,
                             "wall_seconds": round(self.elapsed, 1), "device": device_description(self.device),
                             "processes": self.world, "torch": torch.__version__}}
        save_checkpoint(self.out_dir, self.ema.state_dict(), self.cfg.unet, self.cfg.schedule,
                        name=self.cfg.name, meta=meta, train_state=self._train_state())

    # ---- loop -------------------------------------------------------------------------------
    def train_step(self) -> float:
        cfg = self.cfg
        batch = self.data.sample(cfg.batch_size // self.world, self.generator)
        x0 = to_model_range(batch).to(self.device, non_blocking=True)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.step + 1) / max(cfg.warmup_steps, 1))
        self.net.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.diffusion.l_simple(self.model, x0, generator=self._device_generator())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        self.opt.step()
        update_ema(self.ema, self.net, ema_decay_at(self.step, cfg.ema_decay))
        self.step += 1
        return float(loss.detach())

    def _device_generator(self) -> torch.Generator | None:
        if self.device.type == "cpu":
            return self.generator
        return None  # CUDA draws from the device's own generator, seeded per rank below

    def run(self, progress: bool = True) -> None:
        if self.device.type == "cuda":
            torch.cuda.manual_seed(self.cfg.seed * 1_000_003 + self.rank + self.step)
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not progress or self.rank != 0,
                   desc="train", unit="step", dynamic_ncols=True)
        loss_avg = None
        try:
            while self.step < self.cfg.steps:
                start = time.perf_counter()
                loss = self.train_step()
                self.elapsed += time.perf_counter() - start
                loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
                bar.update(1)
                bar.set_postfix(loss=f"{loss_avg:.4f}")
                if self.step % self.cfg.save_every == 0 or self.step == self.cfg.steps:
                    self.save()
        finally:
            bar.close()


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
