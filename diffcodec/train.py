"""Training by Algorithm 1 (L_simple) with Adam, warm-up, gradient clipping and an EMA.

One process, or data-parallel under ``torchrun`` (torch.distributed, DDP): each rank draws its
own share of every batch, gradients are averaged, and rank 0 writes checkpoints.

A step never waits for the device: the loss is summed where it is computed and read back
only every ``SpeedConfig.log_every`` steps and at saves; an in-memory data set (CIFAR-10)
lives on the device and its batches and flips are drawn there; Adam is fused on CUDA
(multi-tensor elsewhere) and the EMA is one multi-tensor lerp. A run may start from a trained
model's weights (``TrainConfig.init_from``); the checkpoint records which.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm import tqdm

from .checkpoint import load_model, load_state_strict, save_checkpoint
from .checkpoint_config import CONFIG_FILE, TRAIN_STATE_FILE, read_config
from .data import ArraySource, DataConfig, to_model_range
from .diffusion import GaussianDiffusion
from .devices import device_description, pick_device
from .errors import CheckpointError, DiffcodecError
from .models import resolve_model_path
from .schedule import ScheduleConfig
from .unet import CONFIGS, UNet, UNetConfig

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class SpeedConfig:
    """How a run uses its device. ``None`` means on for CUDA and off elsewhere; ``True`` or
    ``False`` force a feature (on the CPU the tests force features on to exercise them).

    None of these changes a run's random draws. bf16 changes its arithmetic (the forward pass
    in bfloat16); the others change only its speed."""

    bf16: bool | None = None  # bfloat16 autocast of the network's forward pass
    channels_last: bool | None = None  # NHWC activations, the layout tensor cores want
    tf32: bool = True  # TF32 matrix multiplies and convolutions on CUDA (sets torch.backends flags)
    device_data: bool = True  # keep an in-memory data set on the device when it takes ≤ ¼ of its free memory
    compile: str | None = None  # torch.compile mode (reduce-overhead: CUDA graphs); None runs eagerly
    compile_backend: str = "inductor"  # torch.compile backend (the tests use aot_eager on the CPU)
    log_every: int = 100  # steps between reads of the running loss (each read waits for the device)

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise DiffcodecError(f"unknown compile mode {self.compile!r} (choose from {', '.join(COMPILE_MODES)})")
        if self.log_every < 1:
            raise DiffcodecError(f"log_every must be >= 1, got {self.log_every}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WarmStart:
    """The model a run starts from: as given (a shipped name or a checkpoint folder), and, once
    loaded, its recorded name and the SHA-256 of its weights file."""

    source: str
    name: str = ""
    weights_sha256: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    init_from: WarmStart | None = None
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("steps", "batch_size", "lr", "warmup_steps", "grad_clip",
                                           "ema_decay", "seed", "save_every", "name")}
        return {"unet": self.unet.to_dict(), "schedule": self.schedule.to_dict(), "data": self.data.to_dict(), **d,
                "init_from": None if self.init_from is None else self.init_from.to_dict(),
                "speed": self.speed.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Also reads records written before ``init_from`` and ``speed`` existed."""
        rest = {k: v for k, v in d.items() if k not in ("unet", "schedule", "data", "init_from", "speed")}
        init = d.get("init_from")
        return cls(UNetConfig.from_dict(d["unet"]), ScheduleConfig.from_dict(d["schedule"]), DataConfig(**d["data"]),
                   **rest, init_from=None if init is None else WarmStart(**init),
                   speed=SpeedConfig(**d.get("speed", {})))


def resumed_config(out: Path, steps: int, speed: dict) -> TrainConfig:
    """The configuration of the run saved in ``out``, to continue to ``steps`` with the ``speed``
    settings given (``SpeedConfig`` fields) replacing the saved ones."""
    saved = read_config(out).get("meta", {}).get("training", {}).get("config")
    if saved is None:
        raise DiffcodecError(f"{out} was not written by diffcodec train; cannot resume")
    cfg = TrainConfig.from_dict(saved)
    return dataclasses.replace(cfg, steps=steps, speed=dataclasses.replace(cfg.speed, **speed))


def new_run_unet(out: Path, config_name: str | None, init_from: str | None, dropout: float | None,
                 force: bool) -> UNetConfig:
    """The network of a new run in ``out``: the named configuration, or the ``init_from`` model's,
    or the paper's; ``dropout`` overrides its dropout. An existing checkpoint in ``out`` is kept
    unless ``force``."""
    if (out / CONFIG_FILE).exists() and not force:
        raise DiffcodecError(f"{out} already holds a checkpoint; pass --resume to continue or --force to restart")
    if config_name is not None and config_name not in CONFIGS:
        raise DiffcodecError(f"unknown configuration {config_name!r} (choose from {', '.join(CONFIGS)})")
    if config_name is None and init_from is not None:
        unet = UNetConfig.from_dict(read_config(resolve_model_path(init_from))["unet"])
    else:
        unet = CONFIGS[config_name or "ddpm-cifar10"]
    return unet if dropout is None else dataclasses.replace(unet, dropout=dropout)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, so short runs are not dominated by the initial weights."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """ema ← ema + (1 − decay)(net − ema), all tensors in one multi-tensor operation."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - decay)


class SimpleLoss:
    """L_simple (eq. 14) with the schedule's ᾱ and timesteps held on the device: the same draws
    and arithmetic as :meth:`GaussianDiffusion.l_simple`, with nothing read back from the device."""

    def __init__(self, diffusion: GaussianDiffusion, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format):
        schedule = diffusion.schedule
        self.num_steps = len(schedule)
        self.abar = torch.from_numpy(schedule.alphas_cumprod).to(device=device, dtype=torch.float32)
        self.timesteps = torch.from_numpy(schedule.timesteps - 1).to(device)
        self.memory_format = memory_format

    def __call__(self, eps_fn, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        k = torch.randint(1, self.num_steps + 1, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        abar = self.abar[k - 1].view(-1, 1, 1, 1)
        x_k = (abar.sqrt() * x0 + (1 - abar).sqrt() * noise).contiguous(memory_format=self.memory_format)
        eps = eps_fn(x_k, self.timesteps[k - 1])
        return torch.mean((noise - eps) ** 2)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


class Trainer:
    """Holds the network, its EMA, the optimiser and the data stream of one run.

    Random draws: on the CPU one generator gives every batch, flip, timestep and noise, as it
    always has. On CUDA a generator on the device gives the timesteps and noise, and the batches
    too when the data set lives on the device; otherwise batches come from the CPU generator.
    Dropout draws from the device's default generator. All of them are saved, so a resumed run
    continues exactly where the interrupted one stopped.
    """

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
        cuda = self.device.type == "cuda"
        speed = cfg.speed
        self.bf16 = cuda if speed.bf16 is None else speed.bf16
        self.channels_last = cuda if speed.channels_last is None else speed.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if cuda and speed.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.net = UNet(cfg.unet).to(self.device)
        if cfg.init_from is not None and not resume:
            self._warm_start()
        self.net.to(memory_format=self.memory_format)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        adam = {"fused": True} if cuda else {"foreach": True}  # one kernel on CUDA, multi-tensor elsewhere
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, **adam)
        self.diffusion = GaussianDiffusion(cfg.schedule.build())
        self.loss_fn = SimpleLoss(self.diffusion, self.device, self.memory_format)
        seed = cfg.seed * 1_000_003 + self.rank
        self.generator = torch.Generator().manual_seed(seed)
        self.device_generator = torch.Generator(self.device).manual_seed(seed) if cuda else self.generator
        if cuda:  # dropout's generator: one stream per rank
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        self.data = cfg.data.build()
        self.data_on_device = self._place_data()
        self.step, self.elapsed, self.last_loss = 0, 0.0, float("nan")
        if resume:
            self._resume()
        model = torch.nn.parallel.DistributedDataParallel(self.net) if self.world > 1 else self.net
        if speed.compile is not None:
            model = torch.compile(model, backend=speed.compile_backend,
                                  **({"mode": speed.compile} if speed.compile_backend == "inductor" else {}))
        self.model = model

    def _place_data(self) -> bool:
        """Move an in-memory data set onto the device when allowed and it fits; True if there."""
        if not (self.cfg.speed.device_data and isinstance(self.data, ArraySource)):
            return False
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if self.data.nbytes > free // 4:
                return False
            self.data = self.data.to(self.device)
        return True

    def _warm_start(self) -> None:
        """Start from a trained model's weights (the EMA starts there too, as it copies the net)."""
        source = self.cfg.init_from
        model = load_model(source.source)
        theirs, ours = dataclasses.replace(model.unet_config, dropout=self.cfg.unet.dropout), self.cfg.unet
        if theirs != ours:
            diff = ", ".join(f"{f.name} {getattr(theirs, f.name)} vs {getattr(ours, f.name)}"
                             for f in dataclasses.fields(ours) if getattr(theirs, f.name) != getattr(ours, f.name))
            raise CheckpointError(f"--init-from {source.source}: its U-Net differs from this run's ({diff})")
        if model.schedule_config != self.cfg.schedule:
            raise CheckpointError(f"--init-from {source.source}: its noise schedule differs from this run's")
        if source.weights_sha256 and source.weights_sha256 != model.weights_sha256:
            raise CheckpointError(f"--init-from {source.source}: its weights changed since the run recorded them")
        self.net.load_state_dict(model.net.state_dict())
        self.cfg = dataclasses.replace(self.cfg, init_from=WarmStart(source.source, model.name, model.weights_sha256))

    # ---- state ------------------------------------------------------------------------------
    def _train_state(self) -> dict[str, torch.Tensor]:
        state = {f"param.{k}": v for k, v in self.net.state_dict().items()}
        names = {id(p): n for n, p in self.net.named_parameters()}
        for p, s in self.opt.state.items():
            for key in ("exp_avg", "exp_avg_sq", "step"):
                state[f"adam.{key}.{names[id(p)]}"] = torch.as_tensor(s[key]).reshape(-1)
        state["generator"] = self.generator.get_state()
        state["torch_rng"] = torch.get_rng_state()  # dropout on the CPU draws from the global generator
        if self.device.type == "cuda":
            state["device_generator"] = self.device_generator.get_state()
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)  # dropout on CUDA
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
        fused = self.device.type == "cuda"  # fused Adam keeps its step count on the device
        for n, p in self.net.named_parameters():
            if f"adam.exp_avg.{n}" in state:
                self.opt.state[p] = {
                    "step": state[f"adam.step.{n}"].reshape(()).to(torch.float32).to(p.device if fused else "cpu"),
                    "exp_avg": torch.empty_like(p).copy_(state[f"adam.exp_avg.{n}"].reshape(p.shape)),
                    "exp_avg_sq": torch.empty_like(p).copy_(state[f"adam.exp_avg_sq.{n}"].reshape(p.shape)),
                }
        self.generator.set_state(state["generator"])
        if "torch_rng" in state:  # absent in checkpoints written before it was saved
            torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "device_generator" in state:
            self.device_generator.set_state(state["device_generator"])
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.step, self.elapsed = int(state["counters"][0]), float(state["elapsed"][0])

    def save(self) -> None:
        if self.rank != 0:
            return
        meta = {"training": {"config": self.cfg.to_dict(), "steps_done": self.step,
                             "wall_seconds": round(self.elapsed, 1), "device": device_description(self.device),
                             "processes": self.world, "torch": torch.__version__, "loss": self.last_loss}}
        save_checkpoint(self.out_dir, self.ema.state_dict(), self.cfg.unet, self.cfg.schedule,
                        name=self.cfg.name, meta=meta, train_state=self._train_state())

    # ---- loop -------------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        """This rank's share of the next batch on the device, in [−1, 1]."""
        n = self.cfg.batch_size // self.world
        if self.data_on_device:
            batch = self.data.sample(n, self.device_generator)
        else:
            batch = self.data.sample(n, self.generator)
            if self.device.type == "cuda":  # uint8 through pinned memory, without waiting
                batch = batch.pin_memory().to(self.device, non_blocking=True)
        return to_model_range(batch)

    def train_step(self) -> torch.Tensor:
        """One step of Algorithm 1. Returns the loss as a tensor on the device: reading it
        (``float(loss)``) waits for the device, so the loop does that only now and then."""
        cfg = self.cfg
        x0 = self.next_batch()
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.step + 1) / max(cfg.warmup_steps, 1))
        if not self.net.training:
            self.net.train()
        if cfg.speed.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are done with
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(self.model, x0, self.device_generator)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        self.opt.step()
        update_ema(self.ema, self.net, ema_decay_at(self.step, cfg.ema_decay))
        self.step += 1
        return loss.detach()

    def run(self, progress: bool = True) -> None:
        """Train up to ``cfg.steps``, reading the mean loss every ``log_every`` steps and saving
        every ``save_every`` steps and at the end. ``elapsed`` counts training time, not saves."""
        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress or self.rank != 0,
                   desc="train", unit="step", dynamic_ncols=True)
        loss_sum, count = torch.zeros((), device=self.device), 0
        mark = time.perf_counter()
        try:
            while self.step < cfg.steps:
                loss_sum += self.train_step()
                count += 1
                bar.update(1)
                saving = self.step % cfg.save_every == 0 or self.step == cfg.steps
                if saving or self.step % cfg.speed.log_every == 0:
                    self.last_loss = float(loss_sum) / count  # waits for the device: the interval's true time
                    loss_sum.zero_()
                    count = 0
                    now = time.perf_counter()
                    self.elapsed += now - mark
                    bar.set_postfix(loss=f"{self.last_loss:.4f}")
                    if saving:
                        self.save()
                    mark = time.perf_counter()
        finally:
            bar.close()


