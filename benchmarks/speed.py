"""Speed on this machine: encode and decode seconds per image (and images per second) by image
size, model and operating point, and training steps per second at batch 128 for the paper's
U-Net and the shipped one. Medians over ``--repeats`` runs, one process.

Usage:
  python -m benchmarks.speed                     # all cases, 3 repeats, on the CPU
  python -m benchmarks.speed --device cuda       # the network and the candidate scoring on a GPU
  python -m benchmarks.speed --cases photo-kodak-full-0.5bpp --repeats 1
  python -m benchmarks.speed --quick             # one repeat, small cases, seconds

The network runs on every core of the device; a lossless decode runs it in float64 (the
reference chain of the lossless record), lossy work in float32. The encoder scores
channel-simulation candidates in a compiled loop on the CPU, or on the GPU with ``--device``;
its time grows as 2**candidates per call and with the pixel count. Call sizes are the
device's defaults (``diffcodec.codec.call_size``) unless a case fixes them.
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

from .common import datasets, report
from diffcodec.quality import psnr_rgb


@dataclass(frozen=True)
class CodecCase:
    name: str
    model: str
    dataset: str
    crop: int | None  # None: the whole image
    stop: dict  # Stop fields; {} is full rate (lossless)
    what: str
    log2_candidates: int | None = None  # None: the device's default
    chunk_bits: float | None = None


CODEC_CASES = [
    CodecCase("cifar10-full", "cifar10", "cifar10", None, {}, "CIFAR-10 test image 0, 32×32, full rate (lossless)"),
    CodecCase("cifar10-35dB", "cifar10", "cifar10", None, {"psnr": 35.0}, "CIFAR-10 test image 0, the default stop (35 dB)"),
    CodecCase("default-full", "default", "cifar10", None, {}, "CIFAR-10 test image 0, full rate, the shipped tiny model"),
    CodecCase("photo-256-0.5bpp", "photo", "kodak", 256, {"bpp": 0.5},
              "256×256 centre crop of kodim01, largest prefix within 0.5 bpp", 8, 3.0),
    CodecCase("photo-256-full", "photo", "kodak", 256, {}, "256×256 centre crop of kodim01, full rate (lossless)", 8, 3.0),
]
# Whole Kodak images: minutes to hours on a CPU; a GPU's case (``--cases``).
LARGE_CASES = [CodecCase("photo-kodak-full-0.5bpp", "photo", "kodak", None, {"bpp": 0.5},
                         "kodim01, 768×512, largest prefix within 0.5 bpp")]
QUICK_CASES = [CodecCase("cifar-upto-500", "default", "cifar10", None, {"upto_t": 500},
                         "CIFAR-10 test image 0, stopped at t = 500, 2^8 candidates", 8, 3.0)]
TRAIN_CASES = {"ddpm-cifar10": 128, "tiny": 128}


def time_codec(case: CodecCase, repeats: int, device: str) -> dict:
    from bitstream.container import ImageMode
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage

    from diffcodec.checkpoint import load_model

    model = load_model(case.model, device)
    rgb = datasets.load(case.dataset, 1, case.crop)[0].rgb
    image = CodecImage(rgb, ImageMode.RGB)
    config = CodecConfig(log2_candidates=case.log2_candidates, chunk_bits=case.chunk_bits)
    enc_s, dec_s = [], []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        enc = compress(image, model, config, Stop(**case.stop))
        _sync(device)
        t1 = time.perf_counter()
        dec = decompress(enc.data, model)
        _sync(device)
        enc_s.append(t1 - t0)
        dec_s.append(time.perf_counter() - t1)
    psnr = psnr_rgb(rgb, dec.image.rgb)
    psnr = None if math.isinf(psnr) else psnr  # None: lossless
    return {"case": case.name, "model": case.model, "what": case.what, "size": f"{rgb.shape[1]}x{rgb.shape[0]}",
            "log2_candidates": enc.stats.config.log2_candidates, "chunk_bits": enc.stats.config.chunk_bits,
            "bpp": len(enc.data) * 8 / (rgb.shape[0] * rgb.shape[1]), "psnr": psnr, "t": dec.t,
            "encode_s": enc_s, "decode_s": dec_s, "encode_s_median": statistics.median(enc_s),
            "decode_s_median": statistics.median(dec_s)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: the codec's network and scoring, training")
    ap.add_argument("--cases", nargs="+", default=None,
                    help=f"codec cases by name (default: {', '.join(c.name for c in CODEC_CASES)}; also "
                         f"{', '.join(c.name for c in LARGE_CASES)}); 'none' skips the codec")
    ap.add_argument("--no-training", action="store_true", help="skip the training timings")
    ap.add_argument("--quick", action="store_true", help="one repeat, one small codec case, tiny network only")
    args = ap.parse_args(argv)

    cases, train_cases = CODEC_CASES, TRAIN_CASES
    if args.cases is not None:
        by_name = {c.name: c for c in CODEC_CASES + LARGE_CASES + QUICK_CASES}
        unknown = [n for n in args.cases if n not in by_name and n != "none"]
        if unknown:
            ap.error(f"unknown case(s) {', '.join(unknown)}")
        cases = [by_name[n] for n in args.cases if n != "none"]
    if args.quick:
        args.repeats, args.train_steps, cases, train_cases = 1, 1, QUICK_CASES, {"tiny": 16}
    if args.no_training:
        train_cases = {}
    out = report.results_dir("speed", args.quick)
    suffix = "" if args.device == "cpu" else "-" + args.device.replace(":", "")
    prov = report.Provenance(data="CIFAR-10 test image 0; Kodak kodim01 (a centre crop or whole); random images "
                                  "for training",
                             model=", ".join(sorted({c.model for c in cases})) + " (codec); U-Net configurations "
                                   "for training",
                             device=report.device_description(args.device))
    rows = []
    for case in cases:
        rows.append(time_codec(case, args.repeats, args.device))
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
    report.write_compressai(out / f"speed{suffix}.json", "diffcodec-speed",
                            "Encode/decode seconds per image (medians) by case; training seconds per step",
                            results, prov, repeats=args.repeats, codec_cases=rows, training=train)
    body = "\n".join([
        f"Medians of {args.repeats} runs in one process on {prov.device}. The network runs on every core "
        f"(float64 for a lossless decode's reference chain, float32 otherwise); candidates are scored "
        f"{'on the GPU' if args.device.startswith('cuda') else 'in the compiled CPU loop'}.\n",
        "## Codec\n",
        report.table(["case", "model", "size", "calls (2^k, bits)", "bpp", "PSNR", "t reached", "encode s", "decode s"],
                     [[r["what"], r["model"], r["size"], f"2^{r['log2_candidates']}, {r['chunk_bits']:g}",
                       f"{r['bpp']:.3f}", "lossless" if r["psnr"] is None else f"{r['psnr']:.2f}",
                       r["t"], f"{r['encode_s_median']:.2f}", f"{r['decode_s_median']:.2f}"] for r in rows]),
        "\n## Training (Algorithm 1: L_simple, Adam, gradient clipping; 32×32 images)\n",
        report.table(["network", "parameters", "batch", "s/step", "steps/s", "images/s"],
                     [[r["config"], f"{r['parameters']:,}", r["batch"], f"{r['step_s_median']:.2f}",
                       f"{r['steps_per_s']:.3f}", f"{r['images_per_s']:.1f}"] for r in train]),
        "\nThe paper trained 800k steps at batch 128 on a TPU v3-8 in 10.6 h (21 steps/s).\n"])
    report.write_markdown(out / f"speed{suffix}.md", "Speed", body, prov)
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
    report.save_figure(fig, out / f"speed{suffix}.png")
    print(f"wrote {out}/speed{suffix}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
