"""The codec on a device, in one run: what only a GPU session can measure.

1. ``ratio``: CIFAR-10 test images at full rate with the ``cifar10`` model and the device's call
   sizes (``diffcodec.codec.GPU_CALLS``): file bits against the same images' bound (evaluated
   on the device, σ² = β, β̃ and optimal), and encode/decode seconds.
2. ``cross``: those files decoded with the network on the CPU, and Kodak centre crops encoded
   with ``photo`` on the device and decoded on the CPU; then files encoded on the CPU decoded on
   the device: how many decode bit for bit (format v3 says all).
3. ``kodak``: whole Kodak images at 0.5 bpp with ``photo``: encode + decode seconds.

Usage (a GPU session; paths default to ../shared beside the repository):
  python -m benchmarks.gpu.gpu_codec --device cuda                      # all parts
  python -m benchmarks.gpu.gpu_codec --device cuda --parts ratio --limit 100
  python -m benchmarks.gpu.gpu_codec --device cpu --quick               # a CPU smoke test (minutes)

Writes ``gpu_codec-<device>.{json,md}`` under benchmarks/results/speed/ (or
``$DIFFCODEC_BENCH_RESULTS``), naming the device, and prints a short table last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from ..common import datasets, report


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn, *args, **kwargs):
    _sync(device)
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync(device)
    return out, time.perf_counter() - t0


def part_ratio(args, images) -> dict:
    """Full-rate files on the device against the bound of the same images."""
    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage
    from diffcodec.nll import evaluate_dataset

    model = load_model("cifar10", args.device)
    stack = torch.from_numpy(np.stack([im.rgb for im in images])).permute(0, 3, 1, 2).contiguous()
    (bound, bound_s) = _timed(args.device, evaluate_dataset, model, stack.to(args.device), batch_size=256,
                              steps_per_call=4, error_table=model.error_table, progress=False)
    config = CodecConfig(log2_candidates=args.candidates, chunk_bits=args.chunk_bits)
    files, enc_s, dec_s, exact = [], [], [], 0
    for im in images:
        image = CodecImage(im.rgb, ImageMode.RGB)
        enc, t_enc = _timed(args.device, compress, image, model, config, Stop())
        dec, t_dec = _timed(args.device, decompress, enc.data, model)
        files.append(enc.data)
        enc_s.append(t_enc)
        dec_s.append(t_dec)
        exact += int(dec.exact is True and np.array_equal(dec.image.rgb, im.rgb))
    dims = 3 * images[0].rgb.shape[0] * images[0].rgb.shape[1]
    file_bpd = float(np.mean([len(f) * 8 / dims for f in files]))
    bounds = {v: bound.split(v)["total_bits_per_dim"] for v in bound.variances}
    return {"images": len(images), "file_bits_per_dim": file_bpd, "bound_bits_per_dim": bounds,
            "ratio_to_beta": file_bpd / bounds["fixedlarge"],
            "ratio_to_optimal": file_bpd / bounds["optimal"] if "optimal" in bounds else None,
            "bound_seconds": bound_s, "encode_s_median": statistics.median(enc_s),
            "decode_s_median": statistics.median(dec_s), "exact_on_device": exact,
            "log2_candidates": enc.stats.config.log2_candidates,
            "chunk_bits": enc.stats.config.chunk_bits, "_files": files}


def part_cross(args, images, crops, cifar_files) -> dict:
    """Files made on one device decoded on the other."""
    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage

    out = {}
    cpu_cifar = load_model("cifar10", "cpu")
    out["cifar_device_to_cpu"] = sum(
        int(np.array_equal(decompress(f, cpu_cifar).image.rgb, im.rgb)) for f, im in zip(cifar_files, images))
    out["cifar_files"] = len(cifar_files)
    dev_photo, cpu_photo = load_model("photo", args.device), load_model("photo", "cpu")
    dev_cifar = load_model("cifar10", args.device)
    config = CodecConfig(log2_candidates=args.candidates, chunk_bits=args.chunk_bits)
    ok = 0
    for im in crops:
        data = compress(CodecImage(im.rgb, ImageMode.RGB), dev_photo, config, Stop()).data
        ok += int(np.array_equal(decompress(data, cpu_photo).image.rgb, im.rgb))
    out["kodak_device_to_cpu"], out["kodak_crops"] = ok, len(crops)
    cheap = CodecConfig(log2_candidates=8, chunk_bits=3.0)  # CPU encodes of the other direction
    back = 0
    for im in images[: args.back]:
        data = compress(CodecImage(im.rgb, ImageMode.RGB), cpu_cifar, cheap, Stop()).data
        back += int(np.array_equal(decompress(data, dev_cifar).image.rgb, im.rgb))
    for im in crops[: max(1, args.back // 8)]:
        data = compress(CodecImage(im.rgb, ImageMode.RGB), cpu_photo, cheap, Stop()).data
        back += int(np.array_equal(decompress(data, dev_photo).image.rgb, im.rgb))
    out["cpu_to_device"], out["cpu_to_device_files"] = back, args.back + max(1, args.back // 8)
    return out


def part_kodak(args) -> dict:
    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.images import CodecImage

    model = load_model("photo", args.device)
    config = CodecConfig(log2_candidates=args.candidates, chunk_bits=args.chunk_bits)
    rows = []
    for im in datasets.load("kodak", args.kodak, args.kodak_crop):
        enc, t_enc = _timed(args.device, compress, CodecImage(im.rgb, ImageMode.RGB), model, config, Stop(bpp=0.5))
        dec, t_dec = _timed(args.device, decompress, enc.data, model)
        h, w = im.rgb.shape[:2]
        mse = float(np.mean((dec.image.rgb.astype(float) - im.rgb) ** 2))
        rows.append({"image": im.name, "size": f"{w}x{h}", "bpp": len(enc.data) * 8 / (h * w),
                     "psnr": 10 * np.log10(255**2 / mse) if mse else None, "encode_s": t_enc, "decode_s": t_dec,
                     "total_s": t_enc + t_dec})
    return {"images": rows, "total_s_median": statistics.median(r["total_s"] for r in rows)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parts", nargs="+", default=["ratio", "cross", "kodak"], choices=["ratio", "cross", "kodak"])
    ap.add_argument("--limit", type=int, default=100, help="CIFAR-10 test images (parts ratio, cross)")
    ap.add_argument("--crops", type=int, default=12, help="Kodak 128×128 centre crops (part cross)")
    ap.add_argument("--back", type=int, default=16, help="CIFAR images encoded on the CPU, decoded on the device")
    ap.add_argument("--kodak", type=int, default=3, help="whole Kodak images at 0.5 bpp (part kodak)")
    ap.add_argument("--kodak-crop", type=int, default=None, help="crop them (a smoke test)")
    ap.add_argument("--candidates", type=int, default=None, help="log2 candidates per call (default: the device's)")
    ap.add_argument("--chunk-bits", type=float, default=None, help="KL bits per call (default: the device's)")
    ap.add_argument("--quick", action="store_true", help="2 CIFAR images, 1 crop, one 64×64 'Kodak' image")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit, args.crops, args.back, args.kodak, args.kodak_crop = 2, 1, 1, 1, 64
    out_dir = report.results_dir("speed", args.quick)
    name = f"gpu_codec-{args.device.replace(':', '')}"
    doc = {"device": report.device_description(args.device), "torch": torch.__version__}
    images = datasets.load("cifar10", args.limit)
    files = []
    if "ratio" in args.parts:
        doc["ratio"] = part_ratio(args, images)
        files = doc["ratio"].pop("_files")
        r = doc["ratio"]
        print(f"ratio: {r['images']} CIFAR images, 2^{r['log2_candidates']} candidates, {r['chunk_bits']} bits/call: "
              f"file {r['file_bits_per_dim']:.4f} bits/dim, bound β {r['bound_bits_per_dim']['fixedlarge']:.4f} "
              f"-> {r['ratio_to_beta']:.4f}; optimal {r['ratio_to_optimal']}; encode {r['encode_s_median']:.2f} s, "
              f"decode {r['decode_s_median']:.2f} s; bound {r['bound_seconds']:.1f} s", flush=True)
    if "cross" in args.parts:
        crops = datasets.load("kodak", args.crops, 128)
        if not files:
            ap.error("part cross needs part ratio's files")
        doc["cross"] = part_cross(args, images, crops, files)
        print(f"cross: {doc['cross']}", flush=True)
    if "kodak" in args.parts:
        doc["kodak"] = part_kodak(args)
        print(f"kodak: median encode+decode {doc['kodak']['total_s_median']:.2f} s: {doc['kodak']['images']}",
              flush=True)
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    prov = report.Provenance(data=f"CIFAR-10 test, first {args.limit} images; Kodak", model="cifar10, photo",
                             device=doc["device"])
    report.write_markdown(out_dir / f"{name}.md", f"The codec on {doc['device']}",
                          "```\n" + json.dumps(doc, indent=1) + "\n```\n", prov)
    print(f"wrote {out_dir}/{name}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
