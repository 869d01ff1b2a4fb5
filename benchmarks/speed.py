"""Speed on this machine: encode and decode seconds per image (and images per second) by image
size and operating point, and training steps per second at batch 128 for the paper's U-Net and
the shipped one. Medians over ``--repeats`` runs, one process.

Usage:
  python -m benchmarks.speed                     # all cases, 3 repeats
  python -m benchmarks.speed --device cuda       # on a GPU
  python -m benchmarks.speed --quick             # one repeat, small cases, seconds

The codec runs its network passes on one thread (float outputs depend on the thread count) and
scores channel-simulation candidates on every core (numba); its encoder time grows as
2**candidates per call and with the pixel count.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import datasets, report
from .metrics import psnr_rgb


@dataclass(frozen=True)
class CodecCase:
    name: str
    dataset: str
    crop: int | None
    log2_candidates: int
    chunk_bits: float
    stop: dict  # Stop fields; {} is full rate (lossless)
    what: str


CODEC_CASES = [
    CodecCase("cifar-full", "cifar10", None, 12, 5.0, {}, "CIFAR-10 test image 0, 32×32, full rate (lossless), defaults"),
    CodecCase("cifar-35dB", "cifar10", None, 12, 5.0, {"psnr": 35.0}, "CIFAR-10 test image 0, the default stop (35 dB)"),
    CodecCase("kodak-256-0.5bpp", "kodak", 256, 8, 3.0, {"bpp": 0.5},
              "256×256 centre crop of kodim01, largest prefix within 0.5 bpp, 2^8 candidates, 3 bits per call"),
]
QUICK_CASES = [CodecCase("cifar-upto-500", "cifar10", None, 8, 3.0, {"upto_t": 500},
                         "CIFAR-10 test image 0, stopped at t = 500, 2^8 candidates")]
TRAIN_CASES = {"ddpm-cifar10": 128, "tiny": 128}


def time_codec(case: CodecCase, model, repeats: int) -> dict:
    from bitstream.container import ImageMode
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage

    rgb = datasets.load(case.dataset, 1, case.crop)[0].rgb
    image = CodecImage(rgb, ImageMode.RGB)
    config = CodecConfig(log2_candidates=case.log2_candidates, chunk_bits=case.chunk_bits)
    enc_s, dec_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc = compress(image, model, config, Stop(**case.stop))
        t1 = time.perf_counter()
        dec = decompress(enc.data, model)
        enc_s.append(t1 - t0)
        dec_s.append(time.perf_counter() - t1)
    psnr = psnr_rgb(rgb, dec.image.rgb)
    psnr = None if math.isinf(psnr) else psnr  # None: lossless
    return {"case": case.name, "what": case.what, "size": f"{rgb.shape[1]}x{rgb.shape[0]}",
            "bpp": len(enc.data) * 8 / (rgb.shape[0] * rgb.shape[1]), "psnr": psnr, "t": dec.t,
            "encode_s": enc_s, "decode_s": dec_s, "encode_s_median": statistics.median(enc_s),
            "decode_s_median": statistics.median(dec_s)}


def time_training(config_name: str, batch: int, steps: int, device: str) -> dict:
    """Seconds per Algorithm-1 step (L_simple, Adam, gradient clipping) on random images."""
    from diffcodec.diffusion import GaussianDiffusion
    from diffcodec.schedule import ScheduleConfig
    from diffcodec.unet import CONFIGS, UNet, count_parameters

    net = UNet(CONFIGS[config_name]).to(device)
    diffusion = GaussianDiffusion(ScheduleConfig().build())
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1).to(device)
    seconds = []
    for i in range(steps + 1):  # the first step warms up and is not counted
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = diffusion.l_simple(net, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            seconds.append(time.perf_counter() - t0)
    med = statistics.median(seconds)
    return {"config": config_name, "parameters": count_parameters(net), "batch": batch, "step_s": seconds,
            "step_s_median": med, "steps_per_s": 1 / med, "images_per_s": batch / med}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training; the codec runs on CPU)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--quick", action="store_true", help="one repeat, one small codec case, tiny network only")
    args = ap.parse_args(argv)
    from diffcodec.checkpoint import load_model

    cases, train_cases = CODEC_CASES, TRAIN_CASES
    if args.quick:
        args.repeats, args.train_steps, cases, train_cases = 1, 1, QUICK_CASES, {"tiny": 16}
    model = load_model(args.model)
    out = report.results_dir("speed", args.quick)
    prov = report.Provenance(data="CIFAR-10 test image 0; a Kodak centre crop; random images for training",
                             model=f"{model.name} (codec); U-Net configurations for training",
                             device=report.device_description(args.device))
    rows = []
    for case in cases:
        rows.append(time_codec(case, model, args.repeats))
        r = rows[-1]
        quality = "lossless" if r["psnr"] is None else f"{r['psnr']:.2f} dB"
        print(f"{r['case']:>18} {r['size']:>8} {r['bpp']:6.3f} bpp {quality:>9} t={r['t']:<4} "
              f"encode {r['encode_s_median']:7.2f} s decode {r['decode_s_median']:6.2f} s", flush=True)
    train = []
    for name, batch in train_cases.items():
        train.append(time_training(name, batch, args.train_steps, args.device))
        r = train[-1]
        print(f"train {name:>14} ({r['parameters']:,} parameters) batch {batch}: {r['step_s_median']:.2f} s/step, "
              f"{r['images_per_s']:.1f} images/s", flush=True)
    results = {"bpp": [r["bpp"] for r in rows], "psnr-rgb": [r["psnr"] for r in rows],
               "encoding_time": [r["encode_s_median"] for r in rows],
               "decoding_time": [r["decode_s_median"] for r in rows], "case": [r["case"] for r in rows]}
    report.write_compressai(out / "speed.json", f"diffcodec-{model.name}-speed",
                            "Encode/decode seconds per image (medians) by case; training seconds per step",
                            results, prov, repeats=args.repeats, codec_cases=rows, training=train)
    body = "\n".join([
        f"Medians of {args.repeats} runs in one process; the codec's network passes run on one thread, its candidate scoring on every core.\n",
        "## Codec\n",
        report.table(["case", "size", "bpp", "PSNR", "t reached", "encode s", "decode s", "images/s (decode)"],
                     [[r["what"], r["size"], f"{r['bpp']:.3f}", "lossless" if r["psnr"] is None else f"{r['psnr']:.2f}",
                       r["t"], f"{r['encode_s_median']:.2f}", f"{r['decode_s_median']:.2f}",
                       f"{1 / r['decode_s_median']:.2f}"] for r in rows]),
        "\n## Training (Algorithm 1: L_simple, Adam, gradient clipping; 32×32 images)\n",
        report.table(["network", "parameters", "batch", "s/step", "steps/s", "images/s"],
                     [[r["config"], f"{r['parameters']:,}", r["batch"], f"{r['step_s_median']:.2f}",
                       f"{r['steps_per_s']:.3f}", f"{r['images_per_s']:.1f}"] for r in train]),
        "\nThe paper trained 800k steps at batch 128 on a TPU v3-8 in 10.6 h (21 steps/s).\n"])
    report.write_markdown(out / "speed.md", "Speed", body, prov)
    fig, axes = report.figure()
    ax = axes[0, 0]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, results["encoding_time"], 0.4, label="encode")
    ax.bar(x + 0.2, results["decoding_time"], 0.4, label="decode")
    ax.set_xticks(x, [r["case"] for r in rows], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per image (median)")
    ax.legend()
    ax.set_title(prov.device, fontsize=8)
    report.save_figure(fig, out / "speed.png")
    print(f"wrote {out}/speed.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
