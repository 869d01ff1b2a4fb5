"""The paper's §4.3 split of a model on a data set: rate (L_T + Σ KL), distortion (L_0), total
and RMSE of x̂_0(x_1), for both fixed reverse variances and the model's optimal ones (when it has
an error table, ``diffcodec.variances``), next to the paper's 1.78 / 1.97 / 3.75 / 0.95.

Usage:
  python -m benchmarks.split --dataset cifar10                  # all 1,017 test images
  python -m benchmarks.split --dataset kodak --crop 64          # Kodak centre crops
  python -m benchmarks.split --dataset kodak --crop 64 --model photo   # split-photo-c64.*
  python -m benchmarks.split --quick                            # 2 CIFAR images, a minute or two

The bound is the one ``diffcodec nll`` computes (exact, T = 1000 terms per image); its JSON is
kept as ``nll_<model>.json`` beside the report and reused when model and image count match (a
published GPU run of ``nll`` copied there is used as it is, and the report names its device).
For any other model than ``default``, default's stored bound on the same images (if any) is shown
beside it.
"""

from __future__ import annotations

import argparse
import sys

from diffcodec.checkpoint import load_model

from .common import datasets, paper, report
from diffcodec.quality import psnr_from_rmse
from .common.theory import bound_document, cache_path, load_document

VARIANCES = {"fixedlarge": "σ² = β (the paper's)", "fixedsmall": "σ² = β̃",
             "optimal": "σ² = σ*² (optimal, from training data)"}


def optimal_note(doc: dict) -> str:
    """How the optimal variances were obtained, for the report."""
    if "optimal" not in doc["by_variance"]:
        return ""
    o = doc["optimal_table"]
    m = o.get("meta", {})
    note = (f"\nσ*² = β̃ + c²·e_t (Analytic-DPM's optimum, with the network's error e_t measured against the "
            f"true x_0) from error table `{o['sha256'][:12]}`, estimated on {m.get('images', '?')} training "
            f"images (never these), median relative standard error of e_t {m.get('relative_stderr_median', 0):.3f}.")
    if "rate_change_at_minus_1se" in o:
        note += (f" Moving every e_t by one standard error changes the rate by "
                 f"{o['rate_change_at_minus_1se']:+.5f} / {o['rate_change_at_plus_1se']:+.5f} bits/dim.")
    elif "total_bits_per_dim_at_minus_1se" in o:
        opt = doc["by_variance"]["optimal"]["total_bits_per_dim"]
        note += (f" Moving every e_t by one standard error changes the total by "
                 f"{o['total_bits_per_dim_at_minus_1se'] - opt:+.5f} / {o['total_bits_per_dim_at_plus_1se'] - opt:+.5f} "
                 f"bits/dim.")
    if o.get("added_to_a_stored_bound"):
        note += (" Its rate terms are computed exactly from the stored bound's per-t mean squared errors; "
                 + doc["by_variance"]["optimal"]["distortion_note"] + ".")
    return note + "\n"


def table_lines(name: str, doc: dict) -> list[list[str]]:
    """The report's rows of one model's bound: rate, distortion, total and RMSE per variance."""
    return [[f"{name}, {VARIANCES[v]}", f"{b['rate_bits_per_dim']:.3f}", f"{b['distortion_bits_per_dim']:.3f}",
             f"{b['total_bits_per_dim']:.3f}", f"{doc['rmse_0_255']:.3f}"]
            for v, b in doc["by_variance"].items() if v in VARIANCES]


def bound_device(doc: dict) -> str:
    """Where the bound was computed: a stored ``nll`` JSON names its device (e.g. a published GPU
    run); the report itself, and any optimal-variance terms added to it, run here."""
    here = report.device_description()
    stored = doc.get("device", "")
    if not stored or stored.startswith("cpu"):
        return here
    return f"bound computed on {stored} (torch {doc.get('torch', '?')}) by `diffcodec nll`; report on {here}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["cifar10", "kodak"], default="cifar10")
    ap.add_argument("--model", default="default")
    ap.add_argument("--limit", type=int, default=None, help="first N images (default: all)")
    ap.add_argument("--crop", type=int, default=None, help="centre crops of this size (Kodak)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="2 images, results under results/quick/")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 2
    images = datasets.load(args.dataset, args.limit, args.crop)
    model = load_model(args.model)
    out = report.results_dir(args.dataset, args.quick)
    suffix = report.model_tag(model.name) + (f"-c{args.crop}" if args.crop else "")
    complete = args.limit is None or args.limit >= {"cifar10": 1017, "kodak": 24}[args.dataset]
    cache = cache_path(out, model, len(images), complete, args.crop)
    doc = bound_document(model, [im.rgb for im in images], cache, args.batch_size)
    beside = {}  # default's stored bound on the same images, beside another model's
    if model.name != "default":
        base = load_model("default")
        base_cache = cache_path(out, base, len(images), complete, args.crop)
        if load_document(base_cache, base) is not None:
            beside = bound_document(base, [im.rgb for im in images], base_cache, args.batch_size)
    data = datasets.describe(args.dataset, len(images), args.crop)
    prov = report.Provenance(data=data, model=f"{model.name} (weights sha256 {model.weights_sha256[:12]}…)",
                             device=bound_device(doc), bits="ideal code lengths of the bound, no files")

    shown = [v for v in VARIANCES if v in doc["by_variance"]]
    rows = {v: doc["by_variance"][v] for v in shown}
    results = {
        "variance": shown,
        "rate_bits_per_dim": [rows[v]["rate_bits_per_dim"] for v in shown],
        "distortion_bits_per_dim": [rows[v]["distortion_bits_per_dim"] for v in shown],
        "total_bits_per_dim": [rows[v]["total_bits_per_dim"] for v in shown],
        "bpp": [3 * rows[v]["total_bits_per_dim"] for v in shown],
        "rmse_0_255": [doc["rmse_0_255"]] * len(shown),
    }
    report.write_compressai(out / f"split{suffix}.json", f"diffcodec-bound-{model.name}",
                            f"The variational bound of model {model.name} on {data} (theory: ideal code "
                            f"lengths, no files), split into rate and distortion",
                            results, prov, paper=paper.SPLIT, images=len(images))

    header = ["", "rate", "distortion", "total (bits/dim)", "RMSE of x̂_0(x_1)"]
    table_rows = table_lines(model.name, doc) + (table_lines("default", beside) if beside else [])
    p = paper.SPLIT
    table_rows.append(["the paper (35.7M parameters, CIFAR-10 test, σ² = β)", p["rate_bits_per_dim"],
                       p["distortion_bits_per_dim"], p["total_bits_per_dim"], p["rmse_0_255"]])
    body = (f"The exact bound of `{model.name}` on {data}: rate = L_T + Σ_{{t≥2}} KL_t, "
            f"distortion = L_0 (discretised Gaussian, exact normal CDF), T = 1000 terms per image, "
            f"a fresh x_t ~ q(x_t|x_0) per t as the paper's code. These are ideal code lengths; "
            f"real files are in `rd_curve-<model>.md` and `lossless-<model>.md`.\n\n"
            + report.table(header, table_rows)
            + f"\n\nPSNR of x̂_0(x_1): {psnr_from_rmse(doc['rmse_0_255']):.2f} dB. Prior term L_T: "
            f"{doc['prior_bits_per_dim']:.2e} bits/dim.\n" + optimal_note(doc))
    report.write_markdown(out / f"split{suffix}.md", f"Rate/distortion split: {data}", body, prov)

    fig, axes = report.figure()
    ax = axes[0, 0]
    labels = [f"{model.name}\n{VARIANCES[v].split(' (')[0]}" for v in shown] + ["paper\nσ² = β"]
    rate = results["rate_bits_per_dim"] + [p["rate_bits_per_dim"]]
    dist = results["distortion_bits_per_dim"] + [p["distortion_bits_per_dim"]]
    ax.bar(labels, rate, label="rate (L_T + Σ KL)")
    ax.bar(labels, dist, bottom=rate, label="distortion (L_0)")
    for i, (r, d) in enumerate(zip(rate, dist)):
        ax.text(i, r + d, f"{r + d:.2f}", ha="center", va="bottom")
    ax.set_ylabel("bits/dim")
    ax.set_title(f"Bound split, {data}", fontsize=8)
    ax.legend()
    report.save_figure(fig, out / f"split{suffix}.png")
    for v in shown:
        r = rows[v]
        print(f"{VARIANCES[v]:>22}: rate {r['rate_bits_per_dim']:.3f} + distortion "
              f"{r['distortion_bits_per_dim']:.3f} = {r['total_bits_per_dim']:.3f} bits/dim")
    print(f"{'paper':>22}: rate 1.78 + distortion 1.97 = 3.75 bits/dim;  RMSE {doc['rmse_0_255']:.3f} (paper 0.95)")
    print(f"wrote {out}/split{suffix}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
