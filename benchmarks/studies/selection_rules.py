"""Real files of several selection rules on the same images: bytes and PSNR of every record,
the chain's health, and BD-rates against the first setting.

Each setting is ``VERSION:RULE:K:B`` (e.g. ``3:pfr:12:5``, landed main's CPU default, and
``4:greedy:12:10``).  Every image is encoded once per setting down to t = 10 (``Stop(upto_t=10)``:
no lossless record), and every record end is an operating point: its real file bytes (header
included) and the PSNR of the decoder's mean reconstruction there (the encoder computes the same
chain as the decoder), pooled over images as the PSNR of the mean MSE.  ``z`` is the chain's state
standardised against q(x_t|x_0): mean, variance and KS distance per record, averaged over images
(1, 1 and ~0.015 for a sample of q on 32×32; greedy under-disperses).  Each record's pictures:
the MS-SSIM of the mean x̂_0 (mean over images, as the encoder measures it), and the PSNR (pooled)
and MS-SSIM of the probability-flow reconstruction a decoder shows there (``--flow-steps``
passes a record, ``diffcodec.codec.measure_flow``), which assumes x_t ~ q: a rule that leaves
q shows there first.

With ``--bound`` (a stored ``diffcodec nll`` JSON of the same model and images, e.g.
``benchmarks/results/cifar10/nll_cifar10_first20.json``) each setting is also set against the
model's ideal curve: the bound's cumulative rate once x_t is held against the PSNR of its x̂_0 there
(σ*², the variances the files are coded with), sampled at 30 points evenly spaced in PSNR; the
BD-rate of real files against it is "how much of the model's curve the files reach".
``--from-json`` re-reads a run's rows instead of encoding, and ``--first N`` keeps its first N images.

Usage:
  python -m benchmarks.studies.selection_rules --dataset cifar10 --limit 32 --model cifar10 \\
      --settings 3:pfr:12:5 4:pfr:12:5 4:greedy:12:10 --json out.json
  python -m benchmarks.studies.selection_rules --dataset kodak --crop 256 --limit 4 --model photo ...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.bjontegaard import bd_rate
from ..common.datasets import load
from diffcodec.quality import pooled_psnr
from ..common.practice import worker_setup
from ..common.theory import IDEAL_POINTS, ideal_curve


@dataclass(frozen=True)
class Setting:
    version: int
    rule: str
    k: int
    bits: float

    @classmethod
    def parse(cls, text: str) -> "Setting":
        version, *rule, k, bits = text.split(":")  # the rule may hold a colon (tempered:λ)
        return cls(int(version), ":".join(rule), int(k), float(bits))

    @property
    def label(self) -> str:
        return f"v{self.version} {self.rule} k={self.k} B={self.bits:g}"


def _encode(job):
    name, rgb, model_name, setting, flow_steps = job
    from bitstream.container import ImageMode
    from bitstream.selection import SelectionRule
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, measure_flow
    from diffcodec.images import CodecImage

    model = load_model(model_name)
    config = CodecConfig(log2_candidates=setting.k, chunk_bits=setting.bits, version=setting.version,
                         selection=SelectionRule.parse(setting.rule))
    t0 = time.perf_counter()
    image = CodecImage(rgb, ImageMode.RGB)
    enc = compress(image, model, config, Stop(upto_t=10))
    seconds = time.perf_counter() - t0
    if flow_steps:
        measure_flow(enc.stats, enc.data, model, image, flow_steps)
    steps = enc.stats.steps
    return {"image": name, "setting": setting.label, "seconds": seconds,
            "records": [r.to_dict() for r in enc.stats.records], "kl_bits": sum(s.kl_bits for s in steps),
            "coded_bits": sum(s.ideal_coded_bits for s in steps), "calls": sum(s.chunks for s in steps)}


def curve(rows: list[dict], pixels: int) -> dict:
    """Operating points of one setting: per record, mean bpp and PSNR of the pooled MSE."""
    n_records = min(len(r["records"]) for r in rows)
    bpp, psnr, psnr_per_image, t, z = [], [], [], [], []
    pictures = {"ms_ssim_mean": [], "psnr_flow": [], "ms_ssim_flow": []}  # MS-SSIM: mean over images
    for i in range(n_records):
        recs = [r["records"][i] for r in rows]
        bpp.append(float(np.mean([x["file_bytes"] for x in recs])) * 8 / pixels)
        psnr.append(float(pooled_psnr([x["psnr_mean"] for x in recs])))
        psnr_per_image.append(float(np.mean([x["psnr_mean"] for x in recs])))
        t.append(recs[0]["t"])
        z.append({key: float(np.mean([x[key] for x in recs])) for key in ("z_mean", "z_var", "z_ks")})
        for key, values in pictures.items():  # absent from rows of runs that did not measure them
            got = [x[key] for x in recs if x.get(key) is not None]
            values.append(None if len(got) < len(recs) else
                          float(pooled_psnr(got)) if key == "psnr_flow" else float(np.mean(got)))
    kl = sum(r["kl_bits"] for r in rows)
    return {"bpp": bpp, "psnr": psnr, "psnr_per_image": psnr_per_image, "t": t, "z": z, **pictures, "coded_over_kl": sum(r["coded_bits"] for r in rows) / kl,
            "overhead_bits_per_call": (sum(r["coded_bits"] for r in rows) - kl) / sum(r["calls"] for r in rows),
            "seconds_median": float(np.median([r["seconds"] for r in rows]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "kodak"])
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--model", default="cifar10")
    ap.add_argument("--settings", nargs="+", type=Setting.parse, default=[Setting.parse("3:pfr:12:5"),
                                                                         Setting.parse("4:greedy:12:10")])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write the curves and per-image rows here")
    ap.add_argument("--bound", type=Path, default=None, help="the model's bound on the same images (nll JSON)")
    ap.add_argument("--from-json", type=Path, default=None, help="rows of an earlier run instead of encoding")
    ap.add_argument("--classic", nargs="*", default=[], help="classic codecs to set against, on the same images "
                    "by mean per-image PSNR (e.g. avif webp)")
    ap.add_argument("--first", type=int, default=None, help="only the first N images of the rows")
    ap.add_argument("--flow-steps", type=int, default=50, help="network passes of each record's probability-flow "
                    "reconstruction, whose PSNR and MS-SSIM are measured (0: not measured)")
    args = ap.parse_args(argv)
    images = load(args.dataset, args.limit, args.crop)
    pixels = images[0].rgb.shape[0] * images[0].rgb.shape[1]
    if args.from_json:
        rows = json.loads(args.from_json.read_text())["rows"]
    else:
        jobs = [(im.name, im.rgb, args.model, s, args.flow_steps) for s in args.settings for im in images]
        with mp.get_context("spawn").Pool(args.workers, initializer=worker_setup) as pool:
            rows = pool.map(_encode, jobs, chunksize=1)
    if args.first:
        keep = {im.name for im in images[:args.first]}
        rows = [r for r in rows if r["image"] in keep]
        images = images[:args.first]
    ideal = ideal_curve(json.loads(args.bound.read_text())) if args.bound else None
    if ideal and json.loads(args.bound.read_text())["images"] != len(images):
        raise SystemExit(f"the bound covers {json.loads(args.bound.read_text())['images']} images, not {len(images)}")
    classic = {}
    if args.classic:
        from ..classic import sweep
        from ..common.pillow_codecs import Codec

        classic = {name: sweep(Codec(name), images) for name in args.classic}
    curves = {s.label: curve([r for r in rows if r["setting"] == s.label], pixels) for s in args.settings}
    base = args.settings[0].label
    print(f"{args.dataset} {len(images)} images{f' (centre crops {args.crop})' if args.crop else ''}, "
          f"model {args.model}; every record of files coded to t = 10; bpp with headers; PSNR of the pooled MSE")
    for label, c in curves.items():
        rate = bd_rate(curves[base]["bpp"], curves[base]["psnr"], c["bpp"], c["psnr"])
        print(f"\n{label}: coded/KL {c['coded_over_kl']:.3f}, {c['overhead_bits_per_call']:.2f} bits over KL a call, "
              f"encode median {c['seconds_median']:.1f} s, BD-rate vs {base}: "
              + ("n/a" if rate is None else f"{rate:+.1f} %"))
        if ideal:
            vs_ideal = bd_rate(ideal["bpp"], ideal["psnr"], c["bpp"], c["psnr"])
            c["bd_rate_vs_ideal"] = vs_ideal
            print(f"   BD-rate vs the {ideal['label']}, {IDEAL_POINTS} points even in PSNR: "
                  + ("n/a" if vs_ideal is None else f"{vs_ideal:+.1f} %"))
        for name, res in classic.items():
            vs = bd_rate(res["bpp"], res["psnr-rgb"], c["bpp"], c["psnr_per_image"])
            c[f"bd_rate_vs_{name}"] = vs
            print(f"   BD-rate vs {name} (mean per-image PSNR, same images): "
                  + ("n/a" if vs is None else f"{vs:+.1f} %"))
        print("   t   " + " ".join(f"{t:>7}" for t in c["t"]))
        print("   bpp " + " ".join(f"{b:7.3f}" for b in c["bpp"]))
        print("   dB  " + " ".join(f"{p:7.2f}" for p in c["psnr"]))
        for key, label, fmt in (("ms_ssim_mean", "ssim", "7.4f"), ("psnr_flow", "flow", "7.2f"),
                                ("ms_ssim_flow", "fssm", "7.4f")):
            if all(v is not None for v in c[key]):
                print(f"   {label}" + " ".join(f"{v:{fmt}}" for v in c[key]))
        print("   zvar" + " ".join(f"{z['z_var']:7.3f}" for z in c["z"]))
        print("   zks " + " ".join(f"{z['z_ks']:7.3f}" for z in c["z"]))
    if args.json:
        args.json.write_text(json.dumps({"curves": curves, "ideal": ideal, "classic": classic, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
