"""diffcodec against the classic codecs on the same pixels: PSNR and MS-SSIM against bpp (real
file bytes, headers included) and a BD-rate table against each classic codec.

diffcodec's operating points are the prefixes of full-rate (CIFAR-10) or long (Kodak) files:
one encode gives every point, decoded with the mean (x̂_0 of eq. 15) and the flow
(probability-flow ODE from x_t) reconstructions.

Beside them, the model's ideal curve: the bound of the same images under σ*² (``theory.ideal_curve``;
computed over all T steps and kept beside the report, or read from ``--bound``), with BD-rates by
the PSNR of the pooled MSE: the files against it, it against each classic codec, and the files
against each classic codec in that convention too.

Usage:
  python -m benchmarks.compare --dataset cifar10 --limit 100         # files in results/cifar10/ddc-default/
  python -m benchmarks.compare --dataset kodak --limit 4 --crop 128 --upto-t 30 --candidates 8 --chunk-bits 3
  python -m benchmarks.compare --quick                               # 2 CIFAR images, minutes
  python -m benchmarks.compare --dataset kodak --crop 256 --model photo --bound benchmarks/results/kodak/nll_photo-c256.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from diffcodec.checkpoint import load_model
from bitstream.selection import SelectionRule
from diffcodec.codec import CodecConfig

from .common import datasets, report
from .bd_between import bd_rates
from .classic import is_small, sweep
from diffcodec.quality import psnr_from_rmse
from .common.pillow_codecs import Codec
from .common.practice import decode_prefixes, encode_missing, header_bytes, operating_points
from .common.theory import describe_ideal, ideal_curve, load_document, report_bound

RECONSTRUCTIONS = {"mean": "x̂_0 (eq. 15)", "flow": "probability flow from x_t"}


def diffcodec_results(points: list[dict], encode_s: float | None) -> dict:
    return {"bpp": [p["bpp"] for p in points], "psnr-rgb": [p["psnr"] for p in points],
            "ms-ssim-rgb": [p["ms_ssim"] for p in points], "encoding_time": [encode_s] * len(points),
            "decoding_time": [p["decode_s"] for p in points], "t": [p["t"] for p in points],
            "psnr-rgb-pooled": [float(psnr_from_rmse(p["rmse_0_255"])) for p in points]}


def bd_cell(value: float | None, shared: tuple | None, key: str) -> str:
    """A BD-rate (``bd_between.bd_rates``) for a table, with the shared quality range."""
    digits = 3 if key == "ms-ssim-rgb" else 1
    return "no overlap" if value is None else f"{value:+.1f}% ({shared[0]:.{digits}f}–{shared[1]:.{digits}f})"


def model_bound(model, images: list[datasets.EvalImage], args) -> dict | None:
    """The model's bound on ``images``: read from ``--bound`` (the same weights, as many images),
    else computed and kept as ``rd_curve`` keeps it; None for images of several sizes."""
    if args.bound is not None:
        doc = load_document(args.bound, model)
        if doc is None or doc["images"] != len(images):
            raise SystemExit(f"{args.bound} is not a bound of {model.name}'s weights on these {len(images)} images")
        return doc
    if len({im.rgb.shape for im in images}) > 1:
        return None
    return report_bound(model, images, args.dataset, args.crop, args.quick)


def stored_default_curves(out: Path, suffix: str, data: str) -> dict:
    """``default``'s diffcodec curves from its own compare report on the same images (``data``
    names them), to show beside another model's; empty where that report is missing or other."""
    curves = {}
    for how in RECONSTRUCTIONS:
        path = out / f"compare{report.model_tag('default')}{suffix}-diffcodec-{how}.json"
        if path.exists():
            doc = json.loads(path.read_text())
            if doc.get("description", "").endswith(f"of {data}"):
                curves[f"default-{how}"] = doc["results"]
    return curves


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["cifar10", "kodak"], default="cifar10")
    ap.add_argument("--model", default="default")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--crop", type=int, default=None, help="centre crops (same pixels for every codec)")
    ap.add_argument("--ddc-dir", type=Path, default=None)
    ap.add_argument("--candidates", type=int, default=None, help="log2 of candidates per call, for new files "
                    "(default: the codec's)")
    ap.add_argument("--chunk-bits", type=float, default=None, help="KL per call, for new files (default: the codec's)")
    ap.add_argument("--selection", default="greedy", help="selection rule of new files: greedy, pfr, tempered:λ")
    ap.add_argument("--upto-t", type=int, default=None, help="stop new files at this t (default: full rate)")
    ap.add_argument("--flow-steps", type=int, default=50)
    ap.add_argument("--codecs", nargs="+", default=[c.value for c in Codec], help="classic codecs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bound", type=Path, default=None, help="the model's bound on the same images (a stored "
                    "`diffcodec nll` JSON) instead of computing it")
    ap.add_argument("--quick", action="store_true", help="2 CIFAR images, fast encoder, 3 codecs")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit, args.candidates, args.flow_steps = 2, 8, 10
        args.codecs = ["jpeg420", "webp", "avif"]
    out = report.results_dir(args.dataset, args.quick)
    crop = f"-c{args.crop}" if args.crop else ""
    suffix = report.model_tag(args.model) + crop
    folder = args.ddc_dir or out / f"ddc{suffix}"
    images = datasets.load(args.dataset, args.limit, args.crop)
    model = load_model(args.model)
    settings = CodecConfig(log2_candidates=args.candidates, chunk_bits=args.chunk_bits,
                           selection=SelectionRule.parse(args.selection))
    encode_s = encode_missing(images, folder, model.name, settings, args.upto_t, args.workers)
    per_image = decode_prefixes(images, folder, model.name, tuple(RECONSTRUCTIONS), args.flow_steps, args.workers)
    images = [im for im in images if im.name in per_image]
    bound = model_bound(model, images, args)  # before the classic sweeps: a wrong --bound stops here
    pixels = images[0].rgb.shape[0] * images[0].rgb.shape[1]
    header = header_bytes(folder, images[0])
    data = datasets.describe(args.dataset, len(images), args.crop)
    prov = report.Provenance(data=data, model=f"{model.name} (weights sha256 {model.weights_sha256[:12]}…)",
                             device=report.device_description())
    enc_med = float(np.median(list(encode_s.values()))) if encode_s else None

    curves = {}
    for how, label in RECONSTRUCTIONS.items():
        res = diffcodec_results(operating_points(per_image, how, pixels), enc_med)
        curves[f"diffcodec-{how}"] = res
        report.write_compressai(out / f"compare{suffix}-diffcodec-{how}.json", f"diffcodec-{model.name}-{how}",
                                f"diffcodec, model {model.name}, {label}, prefixes of .ddc files of {data}",
                                res, prov, settings={k: str(v) for k, v in settings.__dict__.items()})
    available = [Codec(c) for c in args.codecs if Codec(c).available()]
    for codec in available:
        qualities = codec.spec.default_qualities(small=is_small(images), quick=True) if args.quick else None
        res = sweep(codec, images, qualities, progress=True)
        curves[codec.value] = res
        report.write_compressai(out / f"compare{suffix}-{codec.value}.json", codec.spec.label,
                                f"{codec.spec.label} ({codec.spec.settings}) on {data}", res, prov)

    beside = {}
    if model.name != "default":
        beside = stored_default_curves(out, crop, data)
        curves.update(beside)

    # BD-rate of diffcodec (and default beside it) against each classic codec, PSNR and MS-SSIM
    bd_rows = []
    for name in [f"diffcodec-{how}" for how in RECONSTRUCTIONS] + list(beside):
        label = name.replace("-", " ")  # "diffcodec mean" (this model), "default mean" beside it
        for codec in available:
            rates = bd_rates(curves[codec.value], curves[name])
            bd_rows.append([label, codec.spec.label] + [bd_cell(*rates[key], key) for key in ("psnr-rgb", "ms-ssim-rgb")])

    # the model's ideal curve on the same images, against the files and the classic codecs (pooled MSE)
    ideal, ideal_rows, ideal_text = None, [], "No ideal curve: the images differ in size and no `--bound` was given.\n"
    if bound is not None:
        real, classic = curves["diffcodec-mean"], [(c.spec.label, curves[c.value]) for c in available]
        ideal = ideal_curve(bound, span=[real["psnr-rgb-pooled"]] + [c["psnr-rgb-pooled"] for _, c in classic])
        model_curve = {"bpp": ideal["bpp"], "psnr-rgb-pooled": ideal["psnr"]}
        pairs = ([("diffcodec mean", ideal["label"], model_curve, real)]
                 + [(ideal["label"], label, c, model_curve) for label, c in classic]
                 + [("diffcodec mean", label, c, real) for label, c in classic])
        rates = [(test, against, bd_rates(ref, ours, keys=["psnr-rgb-pooled"])["psnr-rgb-pooled"])
                 for test, against, ref, ours in pairs]
        ideal_rows = [[test, against, bd_cell(*rate, "psnr")] for test, against, rate in rates]
        ideal["bd_rate_pooled_psnr"] = [{"test": test, "against": against, "bd_rate": rate[0], "psnr_range": rate[1]}
                                        for test, against, rate in rates]
        source = f"`{args.bound}`" if args.bound else "over all T steps, kept beside the report as `nll_*.json`"
        ideal_text = (describe_ideal(ideal, bound["images"], source)
                      + " BD-rates here are by the PSNR of the pooled MSE on both sides, the bound's convention; "
                      "the first row is how much of the model's curve the files reach (0 %: all of it).\n\n"
                      + report.table(["test", "against", "BD-rate (PSNR of pooled MSE)"], ideal_rows) + "\n")
        report.write_compressai(out / f"compare{suffix}-ideal.json", f"ideal-{model.name}", f"{ideal['label']} of {data}",
                                model_curve, prov, **{k: v for k, v in ideal.items() if k not in ("bpp", "psnr")})

    points = [[name, f"{b:.3f}", f"{p:.2f}", f"{m:.4f}"] for name, c in curves.items()
              for b, p, m in zip(c["bpp"], c["psnr-rgb"], c["ms-ssim-rgb"])
              if name.startswith(("diffcodec", "default"))]
    beside_note = (f"\n`default`'s curves (rows `default …`) are read from its own report on the same images "
                   f"(`compare{report.model_tag('default')}{crop}.md`, made with the encoder settings given there).\n"
                   if beside else "")
    body = "\n".join([
        f"Model `{model.name}` on {data}. bpp from real file bytes with headers (diffcodec: the prefix "
        f"of a file ending at a record boundary, {header} header bytes and 3 framing bytes per record "
        f"included). PSNR-RGB and MS-SSIM-RGB are means over images (MS-SSIM convention in "
        f"`diffcodec/quality.py`). BD-rate (Bjøntegaard, piecewise cubic interpolation of log rate against quality, over "
        f"the shared quality range given in brackets): negative means diffcodec needs fewer bits.\n",
        "## BD-rate of diffcodec against each classic codec\n",
        report.table(["diffcodec", "against", "BD-rate (PSNR)", "BD-rate (MS-SSIM)"], bd_rows),
        "\n## Against the model's ideal curve\n",
        ideal_text,
        "\n## diffcodec operating points\n",
        report.table(["curve", "bpp", "PSNR-RGB", "MS-SSIM-RGB"], points),
        f"\nEncoder settings of the files: {settings}. Classic codecs: settings as in `classic.md`.\n" + beside_note])
    report.write_markdown(out / f"compare{suffix}.md", f"diffcodec against classic codecs: {data}", body, prov)

    fig, axes = report.figure(1, 2)
    for name, c in curves.items():
        coded = name.startswith(("diffcodec", "default"))
        style = ("o-" if name.startswith("diffcodec") else "s:") if coded else ".--"
        axes[0, 0].plot(c["bpp"], c["psnr-rgb"], style, label=name, lw=2 if coded else 1)
        axes[0, 1].plot(c["bpp"], c["ms-ssim-rgb"], style, label=name, lw=2 if coded else 1)
    if ideal is not None:
        axes[0, 0].plot(ideal["bpp"], ideal["psnr"], "k-", lw=1.5, label=f"{ideal['label']}, PSNR of pooled MSE")
    for ax, key in zip(axes[0], ("PSNR-RGB (dB)", "MS-SSIM-RGB")):
        ax.set_xlabel("bpp (real bytes, headers included)")
        ax.set_ylabel(key)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(data, fontsize=9)
    report.save_figure(fig, out / f"compare{suffix}.png")
    for row in bd_rows + ideal_rows:
        print("  ".join(row))
    print(f"wrote {out}/compare{suffix}.{{md,png}} and CompressAI JSON per curve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
