"""Whole Kodak images (768×512): the real files' curve, the coded chain's ideal curve and AVIF.

One encode per image gives both of diffcodec's curves: a whole image is coded with a record after
every step (EVERY_STEP), so the encoder's statistics hold, at each record, the file's real bytes
(header included) and the PSNR of x̂_0 there — exactly what a decoder of that prefix shows.  The
**ideal curve** is the same chain's cumulative KL(q‖p_θ) in bits at each record (the σ*² bound's
terms on this image's own chain: a one-sample estimate of the bound's rate, no header, no channel
overhead).  Pillow's AVIF (and any other ``--classic`` codec) is swept on the same images.

Each image's result is kept in ``<out>/kodak_whole-<model>-<image>.json`` as soon as it is done, so a
long run can be stopped and resumed (``--resume`` skips images already there); the summary
(``kodak_whole-<model>.md``) pools every image found: BD-rate (PSNR) per image and of the mean curves
(records at the same t across images; classic codecs at the same quality).

Usage:
  python -m benchmarks.kodak_whole --images kodim01 kodim05 --upto-t 20       # ~8 min an image
  python -m benchmarks.kodak_whole --summary-only                            # the table again
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diffcodec.checkpoint import load_model
from diffcodec.codec import CodecConfig, Stop, compress
from diffcodec.images import from_pil

from .common import datasets, report
from .common.bjontegaard import bd_rate, overlap
from .classic import measure
from .common.pillow_codecs import Codec

OUT = report.results_dir("kodak")


def encode_curves(image: datasets.EvalImage, model, upto_t: int) -> dict:
    """One encode with stats: per record t, file bytes, PSNR of x̂_0, and the chain's KL so far."""
    from PIL import Image

    start = time.perf_counter()
    enc = compress(from_pil(Image.fromarray(image.rgb)), model, CodecConfig(), Stop(upto_t=upto_t), max_pixels=None)
    seconds = time.perf_counter() - start
    stats = enc.stats.to_dict()
    pixels = stats["pixels"]
    kl_after = {}
    total = 0.0
    for step in stats["steps"]:
        total += step["kl_bits"]
        kl_after[step["s"]] = total
    records = [r for r in stats["records"] if r["t"] and r["psnr_mean"] is not None]
    return {"image": image.name, "pixels": pixels, "encode_s": seconds, "config": stats["config"],
            "t": [r["t"] for r in records], "bpp": [r["file_bytes"] * 8 / pixels for r in records],
            "psnr": [r["psnr_mean"] for r in records], "ideal_bpp": [kl_after[r["t"]] / pixels for r in records]}


def classic_curves(image: datasets.EvalImage, codecs: list[Codec]) -> dict:
    out = {}
    for codec in codecs:
        m = measure(codec, [image])
        out[codec.value] = {"quality": list(m.qualities), "bpp": m.bpp[:, 0].tolist(), "psnr": m.psnr[:, 0].tolist()}
    return out


# Points below this PSNR (the first records, x̂_0 at t ≈ 900 is noise) are left out of every BD-rate:
# real against ideal would otherwise be averaged down to 7 dB, where no codec comparison goes.
PSNR_FLOOR = 20.0


def _bd(ref_bpp, ref_psnr, test_bpp, test_psnr):
    curves = []
    for rate, quality in ((ref_bpp, ref_psnr), (test_bpp, test_psnr)):
        rate, quality = np.asarray(rate, float), np.asarray(quality, float)
        keep = quality >= PSNR_FLOOR
        curves += [rate[keep], quality[keep]]
    value = bd_rate(*curves)
    return None if value is None else round(value, 1)


def summary(docs: list[dict]) -> str:
    """Per image and pooled BD-rates (real vs ideal, real vs each classic codec, ideal vs each)."""
    codecs = sorted(docs[0]["classic"])
    header = ["image", "records (t)", "PSNR range dB", "real vs ideal"]
    header += [f"real vs {c}" for c in codecs] + [f"ideal vs {c}" for c in codecs] + ["encode s"]
    rows = []
    for d in docs:
        row = [d["image"], f"{len(d['t'])} ({d['t'][0]}…{d['t'][-1]})", f"{min(d['psnr']):.2f}–{max(d['psnr']):.2f}",
               _bd(d["ideal_bpp"], d["psnr"], d["bpp"], d["psnr"])]
        for c in codecs:
            row.append(_bd(d["classic"][c]["bpp"], d["classic"][c]["psnr"], d["bpp"], d["psnr"]))
        for c in codecs:
            row.append(_bd(d["classic"][c]["bpp"], d["classic"][c]["psnr"], d["ideal_bpp"], d["psnr"]))
        row.append(f"{d['encode_s']:.0f}")
        rows.append(row)
    common = sorted(set.intersection(*(set(d["t"]) for d in docs)), reverse=True)

    def mean_at(key, d_list):
        return [float(np.mean([d[key][d["t"].index(t)] for d in d_list])) for t in common]

    real, ideal, psnr = mean_at("bpp", docs), mean_at("ideal_bpp", docs), mean_at("psnr", docs)
    pooled = ["mean curve", f"{len(common)} common t", f"{min(psnr):.2f}–{max(psnr):.2f}", _bd(ideal, psnr, real, psnr)]
    classic_mean = {}
    for c in codecs:
        classic_mean[c] = (np.mean([d["classic"][c]["bpp"] for d in docs], axis=0),
                           np.mean([d["classic"][c]["psnr"] for d in docs], axis=0))
        pooled.append(_bd(*classic_mean[c], real, psnr))
    for c in codecs:
        pooled.append(_bd(*classic_mean[c], ideal, psnr))
    pooled.append(f"{np.median([d['encode_s'] for d in docs]):.0f} (median)")
    rows.append(pooled)
    shared = {c: overlap(psnr, classic_mean[c][1]) for c in codecs}
    lines = [f"{len(docs)} whole Kodak images; BD-rate (PSNR) in %, negative = fewer bits than the reference "
             "(the column's second name). *real*: the file's record prefixes, real bytes with the header; "
             "*ideal*: the coded chain's cumulative KL at the same records (σ*² terms, no header, no channel "
             "overhead; a one-sample estimate of the bound's rate on the coded plan, not the T = 1000 bound). "
             f"Every fit uses the points at or above {PSNR_FLOOR:g} dB. Mean curve: mean per-image PSNR and bpp of "
             "the records at the same t; classic codecs averaged "
             "at the same quality setting. PSNR range of the mean curves shared with each codec: "
             + ", ".join(f"{c} {r[0]:.2f}–{r[1]:.2f} dB" if r else f"{c} none" for c, r in shared.items()) + ".",
             "", report.table(header, rows)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="*", default=None, help="Kodak names (default: all 24)")
    ap.add_argument("--model", default="photo")
    ap.add_argument("--upto-t", type=int, default=20, help="the last record coded (lower: higher rates)")
    ap.add_argument("--classic", nargs="*", default=["avif", "webp"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--resume", action="store_true", help="skip images whose JSON is already there")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"kodak_whole-{args.model}"
    if not args.summary_only:
        model = load_model(args.model)
        codecs = [Codec(c) for c in args.classic]
        images = datasets.load("kodak")
        if args.images:
            images = [im for im in images if im.name in set(args.images)]
        for im in images:
            path = args.out / f"{tag}-{im.name}.json"
            if args.resume and path.exists():
                continue
            doc = encode_curves(im, model, args.upto_t)
            doc["classic"] = classic_curves(im, codecs)
            path.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{im.name}: {len(doc['t'])} records, {doc['bpp'][-1]:.3f} bpp at {doc['psnr'][-1]:.2f} dB "
                  f"(t = {doc['t'][-1]}), {doc['encode_s']:.0f} s", flush=True)
    docs = [json.loads(p.read_text()) for p in sorted(args.out.glob(f"{tag}-kodim*.json"))]
    if not docs:
        print("no results yet")
        return 1
    body = summary(docs)
    report.write_markdown(args.out / f"{tag}.md", f"Whole Kodak images, `{args.model}`: real files, ideal curve, "
                          "classic codecs", body, report.Provenance(
        f"Kodak, {len(docs)} whole images ({', '.join(d['image'] for d in docs)})", args.model,
        report.device_description()))
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
