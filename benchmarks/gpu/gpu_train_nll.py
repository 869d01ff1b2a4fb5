"""Training steps/s and bound time on one device, with the fast settings.

(a) the paper's U-Net (``ddpm-cifar10``, 35.7M parameters) and (b) the same architecture at half
width (8.95M parameters, the ``cifar10-c64`` network): ``Trainer.train_step`` steps per second at
batch 128 on CIFAR-10 training images held on the device; the median over timed windows after a
warm-up, the device synchronised at each window's ends. (c) ``diffcodec nll`` on the first N
CIFAR-10 test images with a given model: seconds and bits/dim for each batch / timesteps-per-call
/ precision variant, so that speed and agreement are read side by side.

On CUDA it also counts the synchronising CUDA calls (``torch.cuda.set_sync_debug_mode``) in a few
training steps and in bound evaluations of two lengths: none may grow with the steps.

Usage:
  python -m benchmarks.gpu.gpu_train_nll --device cuda
  python -m benchmarks.gpu.gpu_train_nll --device cuda --parts paper,c64 --compile none,reduce-overhead
  python -m benchmarks.gpu.gpu_train_nll --device cuda --parts nll --nll-variants 512x1,512x2,512x2:bf16
  python -m benchmarks.gpu.gpu_train_nll --quick          # CPU smoke run: batch 2, nll of 1 image with `default`

Paths default to ``../shared`` beside the checkout. A variant ``BxM[:bf16]`` is batch size B,
M timesteps per network call, and optionally a bf16 network.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ..common import report

SHARED = report.ROOT.parent / "shared"
C64 = {"base_channels": 64, "channel_mult": (1, 2, 2, 2), "num_res_blocks": 2, "attention_levels": (1,)}


@dataclasses.dataclass(frozen=True)
class Timing:
    """How a training measurement is taken."""

    batch: int = 128
    warmup_steps: int = 30  # not timed (compilation, autotuning, allocator warm-up)
    window_steps: int = 50
    windows: int = 5


@dataclasses.dataclass(frozen=True)
class NllVariant:
    batch_size: int
    steps_per_call: int
    bf16: bool = False

    @classmethod
    def parse(cls, text: str) -> "NllVariant":
        body, _, flag = text.partition(":")
        b, _, m = body.partition("x")
        if flag not in ("", "bf16") or not b.isdigit() or not (m or "1").isdigit():
            raise ValueError(f"bad nll variant {text!r} (want BxM or BxM:bf16)")
        return cls(int(b), int(m or 1), flag == "bf16")

    def label(self) -> str:
        return f"{self.batch_size}x{self.steps_per_call}{':bf16' if self.bf16 else ''}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_syncs(device: torch.device, fn) -> int | None:
    """Synchronising CUDA calls made by ``fn()`` (None, and ``fn`` not run, off CUDA)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def forward_gflops(unet_config, size: int = 32) -> float:
    """Forward GFLOP per image (multiply-adds count 2), counted on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffcodec.unet import UNet

    net = UNet(unet_config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, unet_config.in_channels, size, size), torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops() / 1e9


def time_training(name: str, unet_config, cifar: Path, device: str, compile_mode: str | None, timing: Timing) -> dict:
    """Steps/s of Trainer.train_step with the device's fast settings."""
    from diffcodec.data import DataConfig
    from diffcodec.devices import device_description
    from diffcodec.train import SpeedConfig, TrainConfig, Trainer
    from diffcodec.unet import count_parameters

    cfg = TrainConfig(unet=unet_config, data=DataConfig(cifar=[str(cifar)]), steps=10**9, batch_size=timing.batch,
                      warmup_steps=500, save_every=10**9, name=name, speed=SpeedConfig(compile=compile_mode))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), device=device)
    dev = trainer.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    for _ in range(timing.warmup_steps):
        trainer.train_step()
    _sync(dev)
    warmup_s = time.perf_counter() - start
    rates, losses = [], []
    for _ in range(timing.windows):
        _sync(dev)
        t0 = time.perf_counter()
        total = torch.zeros((), device=dev)
        for _ in range(timing.window_steps):
            total += trainer.train_step()
        losses.append(float(total) / timing.window_steps)  # waits for the device
        rates.append(timing.window_steps / (time.perf_counter() - t0))
    syncs = count_syncs(dev, lambda: [trainer.train_step() for _ in range(3)])
    rate = statistics.median(rates)
    gflop = forward_gflops(unet_config)
    return {"network": name, "parameters": count_parameters(trainer.net), "batch": timing.batch,
            "device": device_description(dev), "compile": compile_mode or "none", "bf16": trainer.bf16,
            "channels_last": trainer.channels_last, "data_on_device": trainer.data_on_device,
            "optimizer": "fused Adam" if dev.type == "cuda" else "foreach Adam",
            "warmup_steps": timing.warmup_steps, "warmup_s": warmup_s, "window_steps": timing.window_steps,
            "steps_per_s_windows": rates, "steps_per_s": rate, "images_per_s": rate * timing.batch,
            "forward_gflop_per_image": gflop, "train_tflop_per_s": 3 * gflop * timing.batch * rate / 1e3,
            "mean_loss_windows": losses, "syncs_in_3_steps": syncs,
            "peak_memory_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None}


def time_nll(model, images: torch.Tensor, variant: NllVariant) -> dict:
    """Seconds of evaluate_dataset (the bound, all T terms) and the split it gives."""
    from diffcodec.bound import evaluate_bound
    from diffcodec.data import to_model_range
    from diffcodec.nll import evaluate_dataset, network_function

    device = next(model.net.parameters()).device
    diffusion = model.diffusion()
    first = to_model_range(images[: variant.batch_size])
    eps_fn = network_function(model, variant.bf16)
    m, K = variant.steps_per_call, diffusion.num_steps

    def bound(calls: int):  # a warm-up of the same shapes, and the sync count
        evaluate_bound(diffusion, eps_fn, first, steps=range(K, max(K - calls * m, 0), -1), steps_per_call=m,
                       generator=torch.Generator(device).manual_seed(0))

    syncs = (None, None)
    if device.type == "cuda":
        bound(1)
        syncs = (count_syncs(device, lambda: bound(2)), count_syncs(device, lambda: bound(6)))
        _sync(device)
    t0 = time.perf_counter()
    result = evaluate_dataset(model, images, batch_size=variant.batch_size, seed=0, progress=False,
                              steps_per_call=m, bf16=variant.bf16)
    seconds = time.perf_counter() - t0
    return {"variant": variant.label(), **dataclasses.asdict(variant), "images": result.images, "seconds": seconds,
            "image_steps_per_s": result.images * K / seconds,
            "syncs_in_2_and_6_calls": None if syncs[0] is None else list(syncs),
            "split": {v: result.split(v) for v in ("fixedlarge", "fixedsmall")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--cifar", type=Path, default=SHARED / "data" / "cifar-10-subset",
                    help="CIFAR-10 python batches (train split for training, test split for nll)")
    ap.add_argument("--model", default=None,
                    help="model for nll: a checkpoint folder or shipped name "
                         "[default: ../shared/models/cifar10-c64; --quick: default]")
    ap.add_argument("--images", type=int, default=1017, help="CIFAR-10 test images for nll")
    ap.add_argument("--parts", default="paper,c64,nll", help="comma list of paper, c64, nll")
    ap.add_argument("--compile", default="none", help="comma list of torch.compile modes to time training with")
    ap.add_argument("--nll-variants", default="512x1,512x2,512x2:bf16", help="comma list of BxM[:bf16]")
    ap.add_argument("--batch", type=int, default=128, help="training batch")
    ap.add_argument("--warmup-steps", type=int, default=30)
    ap.add_argument("--window-steps", type=int, default=50)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch [default: torch's; --quick: 1, which a shared CPU runs fastest]")
    ap.add_argument("--quick", action="store_true",
                    help="CPU smoke run: batch 2, 1 warm-up step, 2 windows of 1 step; nll of 1 image with "
                         "`default` at 100 and 250 timesteps per call")
    args = ap.parse_args(argv)
    from diffcodec.checkpoint import load_model
    from diffcodec.data import load_cifar10
    from diffcodec.devices import pick_device
    from diffcodec.unet import CONFIGS, UNetConfig

    device = pick_device(args.device)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - {"paper", "c64", "nll"}:
        ap.error(f"unknown parts {sorted(parts - {'paper', 'c64', 'nll'})}")
    timing = Timing(args.batch, args.warmup_steps, args.window_steps, args.windows)
    model_name = args.model or str(SHARED / "models" / "cifar10-c64")
    variants = [NllVariant.parse(v) for v in args.nll_variants.split(",") if v]
    images_n = args.images
    if args.quick:
        timing = Timing(batch=2, warmup_steps=1, window_steps=1, windows=2)
        model_name = args.model or "default"
        images_n = 1
        variants = [NllVariant(1, 100), NllVariant(1, 250)]
    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = True  # as Trainer does on CUDA; nll keeps the library's defaults
    networks = {"paper": ("ddpm-cifar10", CONFIGS["ddpm-cifar10"]), "c64": ("c64 (8.95M)", UNetConfig(**C64))}
    training = []
    for key in ("paper", "c64"):
        if key not in parts:
            continue
        for mode in args.compile.split(","):
            mode = None if mode.strip() in ("", "none") else mode.strip()
            row = time_training(networks[key][0], networks[key][1], args.cifar, str(device), mode, timing)
            training.append(row)
            print(f"train {row['network']:>14} ({row['parameters']:,} params) batch {row['batch']} compile "
                  f"{row['compile']}: {row['steps_per_s']:.2f} steps/s ({row['images_per_s']:.3g} images/s, "
                  f"{row['train_tflop_per_s']:.3g} TFLOP/s), warm-up {row['warmup_s']:.1f} s, "
                  f"syncs in 3 steps: {row['syncs_in_3_steps']}", flush=True)
    nll_rows = []
    if "nll" in parts:
        model = load_model(model_name, device)
        images = load_cifar10(args.cifar, "test")[:images_n].to(device)
        for variant in variants:
            row = time_nll(model, images, variant)
            nll_rows.append(row)
            s = row["split"]["fixedlarge"]
            print(f"nll {row['variant']:>12}: {row['images']} images in {row['seconds']:.1f} s "
                  f"({row['image_steps_per_s']:.0f} image-steps/s), {s['rate_bits_per_dim']:.4f} + "
                  f"{s['distortion_bits_per_dim']:.4f} = {s['total_bits_per_dim']:.4f} bits/dim, "
                  f"syncs in 2 / 6 calls: {row['syncs_in_2_and_6_calls']}", flush=True)

    model_label = os.path.relpath(model_name, report.ROOT) if Path(model_name).is_dir() else model_name
    out = report.results_dir("train_nll", args.quick)
    stem = f"train_nll-{device.type}"
    cifar = os.path.relpath(args.cifar, report.ROOT)
    prov = report.Provenance(
        data=f"CIFAR-10 train split of {cifar} for training; CIFAR-10 test, first {images_n} image(s) for nll",
        model=f"U-Nets ddpm-cifar10 and c64 (random initialisation) for training; {model_label} for nll",
        device=report.device_description(str(device)),
        bits="none counted: speeds, and the model's bound in bits/dim for nll")
    doc = {"name": "diffcodec-train-nll-speed", "description": __doc__.split("\n")[0],
           "provenance": dataclasses.asdict(prov), "quick": args.quick, "torch": torch.__version__,
           "timing": dataclasses.asdict(timing), "threads": torch.get_num_threads(), "training": training,
           "nll": nll_rows}
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    body = [f"Device: **{prov.device}**, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s).\n"]
    if training:
        body += [f"## Training (Algorithm 1, batch {timing.batch}, 32×32)\n",
                 f"Median of {timing.windows} windows of {timing.window_steps} steps after {timing.warmup_steps} "
                 "warm-up steps; the device is synchronised at each window's ends. TFLOP/s counts forward + "
                 "backward as 3 × the forward FLOPs.\n",
                 report.table(["network", "parameters", "compile", "bf16", "channels-last", "data on device",
                               "steps/s", "images/s", "TFLOP/s", "warm-up s", "syncs in 3 steps"],
                              [[r["network"], f"{r['parameters']:,}", r["compile"], r["bf16"], r["channels_last"],
                                r["data_on_device"], f"{r['steps_per_s']:.2f}", f"{r['images_per_s']:.3g}",
                                f"{r['train_tflop_per_s']:.3g}", f"{r['warmup_s']:.1f}", r["syncs_in_3_steps"]]
                               for r in training]),
                 "\nBefore (NVIDIA H200, per-step loss read-back and host-side batches): paper U-Net 13.25 steps/s "
                 "with bf16 autocast; the 8.95M network about 11 steps/s.\n"]
    if nll_rows:
        body += [f"## Bound (`diffcodec nll`), CIFAR-10 test, first {images_n} image(s), model {model_label}\n",
                 "Variant BxM: batch of B images, M timesteps per network call. The x_t of every timestep are "
                 "the same draws in every variant; only the network's rounding differs.\n",
                 report.table(["variant", "images", "seconds", "image-steps/s", "rate", "distortion",
                               "total (σ² = β)", "total (σ² = β̃)", "syncs in 2 / 6 calls"],
                              [[r["variant"], r["images"], f"{r['seconds']:.1f}", f"{r['image_steps_per_s']:.0f}",
                                f"{r['split']['fixedlarge']['rate_bits_per_dim']:.4f}",
                                f"{r['split']['fixedlarge']['distortion_bits_per_dim']:.4f}",
                                f"{r['split']['fixedlarge']['total_bits_per_dim']:.4f}",
                                f"{r['split']['fixedsmall']['total_bits_per_dim']:.4f}",
                                r["syncs_in_2_and_6_calls"]] for r in nll_rows]),
                 "\nBefore (NVIDIA H200): 1,017 images with cifar10-c64 at batch 512 took 91.6 s "
                 "(4.239 bits/dim, σ² = β).\n"]
    report.write_markdown(out / f"{stem}.md", "Training and bound speed", "\n".join(body), prov)
    print(f"wrote {out}/{stem}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
