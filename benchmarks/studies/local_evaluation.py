"""The bound of a model evaluated whole against evaluated in tiles (``diffcodec.tiling``), paired.

Every tiling sees the same images, the same sampled timesteps (``benchmarks.studies.sampled_bound``'s
stratified plan) and the same x_t draws (one generator seed per image), so the difference of
two tilings' bounds is estimated far more precisely than either bound: its standard error comes
from the timestep sampling of the differences alone. The tiling with the lower bound is the
better function for the codec to evaluate; the window sizes say what each costs.

Usage:
  python -m benchmarks.studies.local_evaluation --crop 256 --limit 6 --tilings 0:0 128:32 128:16
  python -m benchmarks.studies.local_evaluation --crop 0 --limit 2 --tilings 0:0 384:16   # whole images
  python -m benchmarks.studies.local_evaluation --quick                                     # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import numpy as np
import torch

from diffcodec.bound import evaluate_bound
from diffcodec.checkpoint import load_model
from diffcodec.nll import OPTIMAL
from diffcodec.tiling import Tiling, tiled, window_pixels

from ..common import datasets, report
from .sampled_bound import estimate_sum, make_plan

VARIANCE = OPTIMAL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--crop", type=int, default=256, help="centre crop side (0: whole images)")
    ap.add_argument("--limit", type=int, default=6, help="first N Kodak images")
    ap.add_argument("--tilings", nargs="+", default=["0:0", "128:32"], help="TILE:HALO in pixels (0:0 = whole)")
    ap.add_argument("--exact-up-to", type=int, default=4)
    ap.add_argument("--width-fraction", type=float, default=0.25)
    ap.add_argument("--max-stratum", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--quick", action="store_true", help="one 32×32 crop, whole against one tile and 16:8, 15 t")
    args = ap.parse_args(argv)
    if args.quick:
        args.crop, args.limit, args.tilings = 32, 1, ["0:0", "64:0", "16:8"]
        args.exact_up_to, args.width_fraction, args.max_stratum = 1, 2.0, 400
    torch.set_grad_enabled(False)
    model = load_model(args.model)
    tilings = [Tiling.parse(t) for t in args.tilings]
    diffusion = model.diffusion()
    T = diffusion.num_steps
    plan = make_plan(T, args.exact_up_to, args.width_fraction, args.max_stratum, args.seed)
    extra = {OPTIMAL: model.error_table.variances(diffusion.schedule)} if model.error_table else {}
    variance = VARIANCE if extra else "fixedlarge"
    factor = model.unet_config.downsampling_factor
    sources = datasets.load("kodak", args.limit)
    print(f"{len(sources)} images, {len(plan.steps)} of {T} timesteps, tilings {[t.describe() for t in tilings]}",
          flush=True)
    terms = {t: [] for t in tilings}  # per image: (T,) bits per dim, NaN where not planned
    seconds = {t: 0.0 for t in tilings}
    names = []
    for i, im in enumerate(sources):
        rgb = datasets.centre_crop(im.rgb, args.crop) if args.crop else im.rgb
        h, w = rgb.shape[:2]
        rgb = rgb[: h - h % factor, : w - w % factor]
        names.append(f"{im.name}-{rgb.shape[1]}x{rgb.shape[0]}")
        x0 = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].double() / 127.5 - 1
        for tiling in tilings:
            generator = torch.Generator().manual_seed(args.seed * 1000 + i)  # the same x_t for every tiling
            start = time.perf_counter()
            bound = evaluate_bound(diffusion, tiled(model.eps_fn, tiling, factor), x0, generator=generator,
                                   steps=plan.steps, variances=extra)
            seconds[tiling] += time.perf_counter() - start
            terms[tiling].append(bound.step_bits[variance][0] / bound.dims)
            total, se = estimate_sum(terms[tiling][-1], plan)
            print(f"  {names[-1]} {tiling.describe():>24}: steps {total:.4f} ± {se:.4f} bits/dim "
                  f"({seconds[tiling]:.0f} s so far)", flush=True)
    base = tilings[0]
    rows, doc_rows = [], []
    for tiling in tilings:
        mean_terms = np.mean(terms[tiling], axis=0)
        total, se = estimate_sum(mean_terms, plan)
        diff, diff_se = estimate_sum(mean_terms - np.mean(terms[base], axis=0), plan)
        per_image = [estimate_sum(a - b, plan)[0] for a, b in zip(terms[tiling], terms[base])]
        work = np.mean([window_pixels(*_size(n), tiling, factor)[0] / np.prod(_size(n)) for n in names])
        peak = max(window_pixels(*_size(n), tiling, factor)[1] for n in names)
        rows.append([tiling.describe(), f"{total:.4f} ± {se:.4f}", f"{diff:+.4f} ± {diff_se:.4f}",
                     f"{100 * diff / total:+.2f} %", f"{min(per_image):+.4f} … {max(per_image):+.4f}",
                     f"{work:.2f} ×", f"{peak:,}", f"{seconds[tiling] / len(names) / len(plan.steps):.2f} s"])
        doc_rows.append({"tiling": asdict(tiling), "steps_bits_per_dim": total, "standard_error": se,
                         "difference": diff, "difference_se": diff_se, "per_image_difference": per_image,
                         "work_ratio": work, "largest_window_pixels": peak,
                         "seconds_per_step": seconds[tiling] / len(names) / len(plan.steps)})
        print(f"{tiling.describe():>24}: steps {total:.4f} ± {se:.4f}, vs {base.describe()} {diff:+.4f} ± "
              f"{diff_se:.4f} bits/dim ({100 * diff / total:+.2f} %), work {work:.2f} ×", flush=True)
    crop = f"c{args.crop}" if args.crop else "whole"
    tag = args.tag or f"local_evaluation-{model.name}-{crop}"
    folder = report.results_dir("kodak", args.quick)
    prov = report.Provenance(data=f"Kodak PhotoCD, the first {len(sources)} of 24 images from ../shared/data/kodak"
                                  f"{f', centre crops {args.crop}×{args.crop}' if args.crop else ', whole'}",
                             model=f"{model.name} (weights sha256 {model.weights_sha256[:12]}…)",
                             device=report.device_description(), bits="the T = 1000 bound, estimated (no files)")
    doc = {"names": names, "model": model.name, "variance": variance, "plan": {
        "exact_up_to": args.exact_up_to, "width_fraction": args.width_fraction, "max_stratum": args.max_stratum,
        "seed": args.seed, "timesteps": plan.steps}, "rows": doc_rows, "provenance": asdict(prov)}
    (folder / f"{tag}.json").write_text(json.dumps(doc, indent=1) + "\n")
    body = [f"The bound's step terms L_1 … L_{T - 1} plus L_0 under {variance} variances (bits/dim), estimated from "
            f"{len(plan.steps)} of the {T} timesteps (every t ≤ {args.exact_up_to}, then two t in each of "
            f"{len(plan.strata)} strata about {args.width_fraction:g} × t wide, seed {args.seed}), with the same "
            f"x_t draws for every tiling. ± is the standard error of the timestep sampling; the difference's "
            f"comes from the paired differences. `work` is the pixels the network sees ÷ the image's.\n",
            report.table(["evaluation", "steps (bits/dim)", f"− {base.describe()}", "relative",
                          "per image", "work", "largest window (px)", "time a step"], rows),
            f"\n`{report.command_line()}`"]
    report.write_markdown(folder / f"{tag}.md", f"`{model.name}` whole against tiled, on {len(names)} Kodak images "
                          f"({crop})", "\n".join(body), prov)
    print(f"wrote {folder}/{tag}.{{json,md}}")
    return 0


def _size(name: str) -> tuple[int, int]:
    w, h = name.rsplit("-", 1)[1].split("x")
    return int(h), int(w)


if __name__ == "__main__":
    raise SystemExit(main())
