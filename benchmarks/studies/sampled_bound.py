"""The T = 1000 bound of a model on many images from a stratified sample of its timesteps, for
models and image sizes where the exact bound (every t, ``diffcodec nll``) takes hours on a CPU.

Every t ≤ ``--exact-up-to`` is evaluated (there the terms are large and change fast: L_0 alone
is half the bound). The other t are split into strata of consecutive steps, each about
``--width-fraction`` × its first t wide (at most ``--max-stratum``), and two t are drawn at
random in each (without replacement, seeded). A stratum's sum is its
width × the mean of its two terms, so the estimate of the data set's mean bound is unbiased;
its standard error comes from the pairs' differences, which also carry the x_t draws' own noise
in those strata. β, β̃ and the optimal variances σ*² are read off the same network calls.

Checked on exact terms: a stored exact bound of the same model and crop size (``nll_photo-c64.json``:
the 24 Kodak 64×64 centre crops, on an H200) has its per-t terms re-estimated under many seeds of
the plan, and the report gives the spread of those estimates beside the mean reported standard
error; the centre crops among the sampled ones are set beside that exact bound.

Usage:
  python -m benchmarks.studies.sampled_bound --model photo --crop 64 --per-image 5   # 120 Kodak crops
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from diffcodec.checkpoint import load_model
from diffcodec.nll import OPTIMAL, auto_steps_per_call, evaluate_dataset

from ..common import datasets, report

VARIANCES = ("fixedlarge", "fixedsmall", OPTIMAL)
LABELS = {"fixedlarge": "σ² = β", "fixedsmall": "σ² = β̃", OPTIMAL: "σ*² (optimal)"}


@dataclass(frozen=True)
class TimestepPlan:
    """Which t to evaluate: ``exact`` (every t up to a bound) and two draws in each stratum."""

    exact: tuple[int, ...]
    strata: tuple[tuple[int, int], ...]  # (first t, last t) of each stratum, inclusive
    draws: tuple[tuple[int, int], ...]  # the two t drawn in each stratum

    @property
    def steps(self) -> list[int]:
        return sorted(set(self.exact) | {t for pair in self.draws for t in pair})


def make_plan(num_steps: int, exact_up_to: int, width_fraction: float, max_width: int, seed: int) -> TimestepPlan:
    """Every t ≤ ``exact_up_to``; above, strata that start at t and are about ``width_fraction`` · t
    wide (at least 2, at most ``max_width``): the terms fall roughly geometrically in t, so each
    stratum holds terms of similar size."""
    rng = np.random.default_rng(seed)
    strata, draws = [], []
    first = exact_up_to + 1
    while first <= num_steps:
        last = min(num_steps, first + int(min(max_width, max(2, round(width_fraction * first)))) - 1)
        if num_steps - last < 2:  # no stratum of one step at the end
            last = num_steps
        strata.append((first, last))
        draws.append(tuple(int(t) for t in sorted(rng.choice(np.arange(first, last + 1), 2, replace=False))))
        first = last + 1
    return TimestepPlan(tuple(range(1, exact_up_to + 1)), tuple(strata), tuple(draws))


def estimate_sum(terms: np.ndarray, plan: TimestepPlan) -> tuple[float, float]:
    """Σ_t terms[t−1] estimated from the planned t only, and its standard error.

    ``terms`` holds one value per t (index t−1; the unplanned ones are not read): for the data
    set's mean bound, the image-mean of each step's bits."""
    total = float(sum(terms[t - 1] for t in plan.exact))
    variance = 0.0
    for (first, last), (a, b) in zip(plan.strata, plan.draws):
        width = last - first + 1
        total += width * (terms[a - 1] + terms[b - 1]) / 2
        variance += width ** 2 * (terms[a - 1] - terms[b - 1]) ** 2 / 4
    return total, math.sqrt(variance)


def check_on_exact_terms(doc: dict, plan_args: tuple[int, float, int], seeds: int = 2000) -> dict:
    """The plan applied to a stored exact bound's per-t mean terms under many seeds: the spread
    of its estimates (t-sampling alone) against the mean standard error it reports."""
    out = {}
    for v in VARIANCES:
        if v not in doc["by_variance"]:
            continue
        terms = np.asarray(doc["by_variance"][v]["step_bits_per_dim"])
        exact = float(terms.sum())
        runs = [estimate_sum(terms, make_plan(len(terms), *plan_args, seed)) for seed in range(seeds)]
        est, se = np.array(runs).T
        out[v] = {"exact_steps_bits_per_dim": exact, "mean_error": float(est.mean() - exact),
                  "sd_of_estimates": float(est.std()), "mean_reported_se": float(se.mean()),
                  "within_2se": float(np.mean(np.abs(est - exact) <= 2 * se)), "seeds": seeds}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--per-image", type=int, choices=[1, 5], default=5, help="crops per Kodak image")
    ap.add_argument("--limit", type=int, default=None, help="first N Kodak images")
    ap.add_argument("--exact-up-to", type=int, default=20)
    ap.add_argument("--width-fraction", type=float, default=0.1)
    ap.add_argument("--max-stratum", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="the plan's and the x_t draws' seed")
    ap.add_argument("--batch-size", type=int, default=24)
    args = ap.parse_args(argv)
    model = load_model(args.model)
    if model.error_table is None:
        sys.exit(f"error: model {model.name} has no error table (run `diffcodec variances`)")
    sources = datasets.load("kodak", args.limit)
    images, names = [], []
    for im in sources:
        crops = datasets.five_crops(im.rgb, args.crop)[: args.per_image]
        images += crops
        names += [f"{im.name}-c{args.crop}-{i}" for i in range(len(crops))]
    stack = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    T = model.diffusion().num_steps
    plan_args = (args.exact_up_to, args.width_fraction, args.max_stratum)
    plan = make_plan(T, *plan_args, args.seed)
    steps = plan.steps
    print(f"{len(images)} crops of {args.crop}×{args.crop}, {len(steps)} of {T} timesteps", flush=True)
    bound = evaluate_dataset(model, stack, batch_size=args.batch_size, seed=args.seed, error_table=model.error_table,
                             steps=steps, steps_per_call=auto_steps_per_call(args.batch_size, args.crop, args.crop))
    dims = bound.dims
    centre = np.array([n.endswith("-0") for n in names])
    prior = bound.prior_bits / dims

    def split(rows: np.ndarray, v: str) -> dict:
        terms = bound.step_bits[v][rows].mean(0) / dims
        distortion = float(terms[0])
        steps_sum, se = estimate_sum(terms, plan)
        rate = float(prior[rows].mean()) + steps_sum - distortion
        return {"rate_bits_per_dim": rate, "distortion_bits_per_dim": distortion,
                "total_bits_per_dim": rate + distortion, "standard_error": se}

    result = {v: split(np.ones(len(names), bool), v) for v in VARIANCES}
    centre_result = {v: split(centre, v) for v in VARIANCES} if args.per_image > 1 else None
    folder = report.results_dir("kodak")
    h200 = folder / f"nll_{model.name}-c{args.crop}.json"
    stored = json.loads(h200.read_text()) if h200.exists() else None
    check = check_on_exact_terms(stored, plan_args) if stored else None
    data = (f"Kodak PhotoCD, {len(sources)} of 24 images from ../shared/data/kodak, {args.per_image} crops "
            f"{args.crop}×{args.crop} each (centre{', and centred on each quadrant' if args.per_image > 1 else ''})")
    prov = report.Provenance(data=data, model=f"{model.name} (weights sha256 {model.weights_sha256[:12]}…, "
                                              f"error table {model.error_table.sha256[:8]})",
                             device=report.device_description(), bits="the T = 1000 bound, estimated (no files)")
    tag = f"sampled_bound-{model.name}-c{args.crop}"
    doc = {"images": len(names), "names": names, "dims": dims, "model": model.name,
           "model_sha256": model.weights_sha256, "plan": {"exact_up_to": args.exact_up_to, "width_fraction": args.width_fraction,
                                                          "max_stratum": args.max_stratum, "seed": args.seed,
                                                          "timesteps": steps},
           "by_variance": result, "centre_crops": centre_result, "check_on_exact_terms": check,
           "provenance": asdict(prov)}
    (folder / f"{tag}.json").write_text(json.dumps(doc, indent=1) + "\n")
    rows = [[LABELS[v], f"{r['rate_bits_per_dim']:.3f}", f"{r['distortion_bits_per_dim']:.3f}",
             f"**{r['total_bits_per_dim']:.3f}** ± {r['standard_error']:.3f}"] for v, r in result.items()]
    body = [f"The bound of `{model.name}` on {len(names)} crops, from {len(steps)} of the {T} timesteps: every "
            f"t ≤ {args.exact_up_to}, then two t drawn in each of {len(plan.strata)} strata, each about "
            f"{args.width_fraction:g} × its first t wide, at most {args.max_stratum} (seed {args.seed}); ± is one standard error of the "
            f"stratified estimate.\n",
            report.table(["variance", "rate", "distortion", "total (bits/dim)"], rows)]
    if centre_result:
        n_centre = int(centre.sum())
        comparable = bool(stored) and stored.get("images") == n_centre  # the stored bound is of these crops
        exact = {v: stored["by_variance"][v]["total_bits_per_dim"] for v in VARIANCES
                 if comparable and v in stored["by_variance"]}
        added = comparable and bool(stored.get("optimal_table", {}).get("added_to_a_stored_bound"))
        beside = (f", beside their exact bound (all {T} t, `{h200.name}`, computed on {stored.get('device', 'another run')}"
                  f"{'; its σ*² row has the exact rate terms from the per-t errors and L_0 drawn on a CPU' if added else ''})"
                  if comparable else "")
        body += [f"\nThe {n_centre} centre crops alone{beside}:\n",
                 report.table(["variance", "estimate here", "exact"],
                              [[LABELS[v], f"{r['total_bits_per_dim']:.3f} ± {r['standard_error']:.3f}",
                                f"{exact[v]:.3f}" if v in exact else "–"] for v, r in centre_result.items()])]
    if check:
        body += [f"\nThe plan on exact terms (the per-t means of the {stored['images']} images in `{h200.name}`, under "
                 f"{check['fixedlarge']['seeds']:,} seeds; the spread comes from the choice of t alone):\n",
                 report.table(["variance", "mean error", "sd of estimates", "mean reported s.e.", "within 2 s.e."],
                              [[LABELS[v], f"{c['mean_error']:+.4f}", f"{c['sd_of_estimates']:.4f}",
                                f"{c['mean_reported_se']:.4f}", f"{100 * c['within_2se']:.0f} %"]
                               for v, c in check.items()])]
    report.write_markdown(folder / f"{tag}.md", f"The bound of `{model.name}` on {len(names)} Kodak crops "
                          f"(stratified timesteps)", "\n".join(body), prov)
    for v, r in result.items():
        print(f"{LABELS[v]:>14}: {r['rate_bits_per_dim']:.3f} + {r['distortion_bits_per_dim']:.3f} = "
              f"{r['total_bits_per_dim']:.3f} ± {r['standard_error']:.3f} bits/dim")
    print(f"wrote {folder}/{tag}.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
