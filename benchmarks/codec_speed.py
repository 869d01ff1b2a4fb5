"""Encode and decode seconds on this machine, medians over ``--repeats`` runs, one process.

Cases:
  cifar-full   a CIFAR-10 test image (32×32), full rate (lossless), encoder defaults
  crop-0.5bpp  a 256×256 crop of a Kodak image, stopped at the largest file within 0.5 bpp,
               with ``--crop-candidates`` / ``--crop-chunk-bits`` (the encoder's time grows as
               2**candidates per coded step and with the pixel count)

Usage:
  python benchmarks/codec_speed.py [--repeats 3] [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads outside the network passes (the codec runs those on one)")
    ap.add_argument("--crop-candidates", type=int, default=8)
    ap.add_argument("--crop-chunk-bits", type=float, default=3.0)
    ap.add_argument("--cases", default="cifar-full,crop-0.5bpp")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.data import load_cifar10
    from diffcodec.images import CodecImage, load_image

    model = load_model("default")
    cases = {}
    if "cifar-full" in args.cases:
        rgb = load_cifar10(DATA / "cifar-10-subset", "test")[0].permute(1, 2, 0).numpy().copy()
        cases["cifar-full"] = (CodecImage(rgb, ImageMode.RGB), CodecConfig(), Stop())
    if "crop-0.5bpp" in args.cases:
        full = load_image(DATA / "kodak" / "kodim23.png").rgb
        crop = np.ascontiguousarray(full[128:384, 256:512])
        cases["crop-0.5bpp"] = (CodecImage(crop, ImageMode.RGB),
                                CodecConfig(log2_candidates=args.crop_candidates, chunk_bits=args.crop_chunk_bits),
                                Stop(bpp=0.5))
    rows = []
    for name, (image, config, stop) in cases.items():
        enc_s, dec_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            enc = compress(image, model, config, stop)
            t1 = time.perf_counter()
            dec = decompress(enc.data, model)
            t2 = time.perf_counter()
            enc_s.append(t1 - t0)
            dec_s.append(t2 - t1)
        err = dec.image.rgb.astype(np.float64) - image.rgb
        psnr = float("inf") if not err.any() else 10 * np.log10(255**2 / np.mean(err**2))
        rows.append({"case": name, "size": f"{image.width}x{image.height}", "bpp": enc.stats["bpp"],
                     "psnr_rgb": psnr, "t_reached": dec.t, "encode_s_median": statistics.median(enc_s),
                     "decode_s_median": statistics.median(dec_s), "encode_s": enc_s, "decode_s": dec_s,
                     "log2_candidates": config.log2_candidates, "chunk_bits": config.chunk_bits})
        r = rows[-1]
        print(f"{name:12} {r['size']:>8} {r['bpp']:6.3f} bpp  PSNR {psnr:6.2f} dB  t={dec.t:<4} "
              f"encode {r['encode_s_median']:7.2f} s  decode {r['decode_s_median']:6.2f} s  "
              f"(medians of {args.repeats}; 2^{config.log2_candidates} candidates, {config.chunk_bits} bits/call)",
              flush=True)
    doc = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
           "repeats": args.repeats, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
