"""Table 4 and Fig. 5 of the paper for a model: cumulative rate and RMSE of x̂_0 at every reverse
step by the paper's method (theory), and from real ``.ddc`` files at the records' prefixes
(practice), on one plot with the paper's Table 4 points.

Usage:
  python -m benchmarks.rd_curve --dataset cifar10 --limit 100   # files in results/cifar10/ddc-default/
  python -m benchmarks.rd_curve --dataset kodak --crop 64        # 24 centre crops, results/kodak/ddc-default-c64/
  python -m benchmarks.rd_curve --quick                         # 2 images, fast encoder, minutes

Files missing from the folder are encoded first (at full rate, with the encoder's defaults
unless ``--candidates``/``--chunk-bits`` say otherwise). Theory is the exact T = 1000 bound of
the same images (σ² = β, the paper's), and, when present, of the whole data set
(``nll_<model>[-c<crop>].json`` from ``python -m benchmarks.split``).  Beside the files, the
model's ideal curve (the same images' bound under σ*², the variances the files are coded with:
``theory.ideal_curve``) and the BD-rate of the files' mean reconstructions against it, both by
the PSNR of the pooled MSE.  Outputs are named ``rd_curve-<model>[-c<crop>].{json,md,png}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from diffcodec.checkpoint import load_model
from bitstream.selection import SelectionRule
from diffcodec.codec import CodecConfig, Stop, call_size, resolve_t_stop
from diffcodec.nll import OPTIMAL

from .common import datasets, paper, report
from .common.bjontegaard import bd_rate
from diffcodec.quality import psnr_from_rmse
from .common.practice import decode_prefixes, encode_missing, header_bytes, lossless_point, operating_points
from .common.theory import cache_path, describe_ideal, ideal_curve, load_document, rate_after, report_bound, rmse_at

NEAREST_WITHIN = 60  # steps: a record further from a Table 4 row is not shown on it
RMSE_TOLERANCE = 0.03  # practice RMSE vs the same images' bound: coded x_t follow q(x_t|x_0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["cifar10", "kodak"], default="cifar10")
    ap.add_argument("--model", default="default")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--crop", type=int, default=None, help="centre crops of this size (Kodak)")
    ap.add_argument("--ddc-dir", type=Path, default=None, help="full-rate files (default: results/<dataset>/ddc)")
    ap.add_argument("--candidates", type=int, default=None, help="log2 of candidates per call, for new files "
                    "(default: the codec's)")
    ap.add_argument("--chunk-bits", type=float, default=None, help="KL per call, for new files (default: the codec's)")
    ap.add_argument("--selection", default="greedy", help="selection rule of new files: greedy, pfr, tempered:λ")
    ap.add_argument("--flow-steps", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 images, 2^8 candidates; results under results/quick/")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit, args.candidates, args.flow_steps = 2, 8, 10
    out = report.results_dir(args.dataset, args.quick)
    suffix = report.model_tag(args.model) + (f"-c{args.crop}" if args.crop else "")
    folder = args.ddc_dir or out / f"ddc{suffix}"
    images = datasets.load(args.dataset, args.limit, args.crop)
    model = load_model(args.model)
    rule = SelectionRule.parse(args.selection)
    settings = CodecConfig(log2_candidates=args.candidates, chunk_bits=args.chunk_bits, selection=rule)
    calls = call_size(settings, model)
    encode_s = encode_missing(images, folder, model.name, settings, None, args.workers)
    per_image = decode_prefixes(images, folder, model.name, ("mean", "flow"), args.flow_steps, args.workers)
    images = [im for im in images if im.name in per_image]
    h, w = images[0].rgb.shape[:2]
    pixels = h * w
    full_path = cache_path(report.results_dir(args.dataset), model, 0, True, args.crop)
    theory = report_bound(model, images, args.dataset, args.crop, args.quick)
    full = load_document(full_path, model)
    mean_pts = operating_points(per_image, "mean", pixels)
    flow_pts = operating_points(per_image, "flow", pixels)
    lossless = lossless_point(per_image, pixels)
    pooled = [float(psnr_from_rmse(p["rmse_0_255"])) for p in mean_pts]  # the ideal curve's PSNR convention
    ideal = ideal_curve(theory, span=[pooled])
    vs_ideal = bd_rate(ideal["bpp"], ideal["psnr"], [p["bpp"] for p in mean_pts], pooled)
    T = len(theory["rmse_0_255_by_t"])
    optimal = OPTIMAL in theory["by_variance"]  # the variances the codec codes with (format version 3)
    for p, f in zip(mean_pts, flow_pts):
        p["bits_per_dim"] = p["bpp"] / 3
        p["theory_rate_bits_per_dim"] = rate_after(theory, p["t"])
        p["optimal_rate_bits_per_dim"] = rate_after(theory, p["t"], OPTIMAL) if optimal else None
        p["rate_ratio"] = p["bits_per_dim"] / p["theory_rate_bits_per_dim"]
        p["theory_rmse_0_255"] = rmse_at(theory, p["t"])
        p["rmse_rel_diff"] = p["rmse_0_255"] / p["theory_rmse_0_255"] - 1
        p["flow_psnr"], p["flow_rmse_0_255"] = f["psnr"], f["rmse_0_255"]
    full_bits = lossless["bpp"] / 3 if lossless["bpp"] else None
    within = sum(abs(p["rmse_rel_diff"]) <= RMSE_TOLERANCE for p in mean_pts)
    worst = max((p["rmse_rel_diff"] for p in mean_pts), key=abs, default=0.0)
    header_bpd = header_bytes(folder, images[0]) * 8 / (3 * pixels)
    data = datasets.describe(args.dataset, len(images), args.crop)
    prov = report.Provenance(data=data, model=f"{model.name} (weights sha256 {model.weights_sha256[:12]}…)",
                             device=report.device_description())
    enc_med = float(np.median(list(encode_s.values()))) if encode_s else None
    results = {
        "bpp": [p["bpp"] for p in mean_pts],
        "psnr-rgb": [p["psnr"] for p in mean_pts],
        "ms-ssim-rgb": [p["ms_ssim"] for p in mean_pts],
        "encoding_time": [enc_med] * len(mean_pts),
        "decoding_time": [p["decode_s"] for p in mean_pts],
        "t": [p["t"] for p in mean_pts],
        "bits_per_dim": [p["bits_per_dim"] for p in mean_pts],
        "rmse_0_255": [p["rmse_0_255"] for p in mean_pts],
        "theory_rate_bits_per_dim": [p["theory_rate_bits_per_dim"] for p in mean_pts],
        "theory_rmse_0_255": [p["theory_rmse_0_255"] for p in mean_pts],
        "flow_psnr-rgb": [p["flow_psnr"] for p in mean_pts],
        "theory_optimal_rate_bits_per_dim": [p["optimal_rate_bits_per_dim"] for p in mean_pts],
        "psnr-rgb-pooled": pooled,
    }
    theory_total = theory["total_bits_per_dim"]
    optimal_total = theory["by_variance"][OPTIMAL]["total_bits_per_dim"] if optimal else None
    report.write_compressai(
        out / f"rd_curve{suffix}.json", f"diffcodec-{model.name}",
        f"Prefixes of full-rate .ddc files of {data}; mean reconstruction x̂_0 (eq. 15); "
        f"encoding_time is the full-rate encode (null when the files were already there)", results, prov,
        settings={k: str(v) for k, v in settings.__dict__.items()}, rmse_tolerance=RMSE_TOLERANCE,
        lossless={**lossless, "bits_per_dim": full_bits, "theory_total_bits_per_dim": theory_total,
                  "ratio": full_bits / theory_total if full_bits else None,
                  "theory_optimal_total_bits_per_dim": optimal_total},
        theory_same_images={"cumulative_rate_bits_per_dim": theory["by_variance"]["fixedlarge"]["cumulative_rate_bits_per_dim"],
                            "rmse_0_255_by_t": theory["rmse_0_255_by_t"], "images": theory["images"]},
        theory_all_images=None if full is None else {"images": full["images"], "source": full_path.name},
        ideal_curve=ideal | {"bd_rate_files_vs_ideal": vs_ideal})

    # ---- the paper's rows, theory and the nearest prefix
    rows = []
    for steps, p_rate, p_rmse in paper.TABLE4:
        t = T - steps + 1
        near = min(mean_pts, key=lambda p: abs(p["t"] - t)) if mean_pts else None
        if near is not None and abs(near["t"] - t) > NEAREST_WITHIN:
            near = None
        rows.append([steps, f"{p_rate:.5f}", f"{p_rmse:.2f}",
                     f"{rate_after(full, t):.5f}" if full else "–", f"{rmse_at(full, t):.2f}" if full else "–",
                     f"{rate_after(theory, t):.5f}", f"{rmse_at(theory, t):.2f}",
                     f"t = {near['t']} ({T - near['t'] + 1} steps): {near['bits_per_dim']:.4f}, {near['rmse_0_255']:.2f}"
                     if near else "–"])
    n_full = full["images"] if full else 0
    body = [f"Model `{model.name}` on {data}. Rates are cumulative bits/dim, RMSE of x̂_0 on [0, 255]. "
            f"Theory is the exact bound by the paper's method (σ² = β; the last two columns of the records' table: "
            f"under the model's optimal variances σ*², which format version 3 codes with); practice is the prefix of real "
            f"full-rate `.ddc` files ending with each record, header and framing included, decoded by "
            f"`decompress`. The paper's figures are for its 35.7M-parameter network on the full CIFAR-10 test set.\n",
            "## Table 4 rows\n",
            report.table(["steps done", "paper rate", "paper RMSE", f"theory rate ({n_full} images)", "RMSE",
                          f"theory rate ({len(images)} images)", "RMSE", "practice at nearest record: bits/dim, RMSE"],
                         rows),
            "\n## Every record of the files (practice) against theory on the same images\n",
            report.table(["t", "steps done", "file bits/dim", "theory bits/dim", "ratio", "RMSE", "theory RMSE",
                          "diff", "PSNR mean", "PSNR flow", "MS-SSIM", "decode s"] + (["theory σ*²", "ratio σ*²"] if optimal else []),
                         [[p["t"], T - p["t"] + 1, f"{p['bits_per_dim']:.4f}", f"{p['theory_rate_bits_per_dim']:.4f}",
                           f"{p['rate_ratio']:.2f}", f"{p['rmse_0_255']:.2f}", f"{p['theory_rmse_0_255']:.2f}",
                           f"{p['rmse_rel_diff']:+.1%}", f"{p['psnr']:.2f}", f"{p['flow_psnr']:.2f}",
                           f"{p['ms_ssim']:.4f}", f"{p['decode_s']:.2f}"]
                          + ([f"{p['optimal_rate_bits_per_dim']:.4f}", f"{p['bits_per_dim'] / p['optimal_rate_bits_per_dim']:.2f}"]
                             if optimal else []) for p in mean_pts]),
            f"\nFull rate: {lossless['full_rate']} files, {lossless['exact']} decoded bit for bit, "
            + (f"{full_bits:.3f} bits/dim against the bound's {theory_total:.3f} (ratio {full_bits / theory_total:.3f})"
               + (f"; against the bound under the model's optimal variances σ*² (those the files are coded with), "
                  f"{optimal_total:.3f} (ratio {full_bits / optimal_total:.3f})." if optimal else ".")
               if full_bits else "none at full rate."),
            f"\nWith exact PFR the RMSE of practice matches theory within {RMSE_TOLERANCE:.0%} (the coded x_t "
            f"follow q(x_t|x_0) up to the channel simulation's truncation); greedy files ({rule.describe()} "
            f"here: {'yes' if rule.greedy else 'no'}) lie below it, their x_t nearer q's mean: {within} of "
            f"{len(mean_pts)} records are within (largest difference {worst:+.1%}). Early prefixes cost more "
            f"than theory through the fixed header ({header_bpd:.3f} bits/dim here), the per-record framing and "
            f"the channel simulation's per-call overhead (calls of 2^{calls[0]} candidates and {calls[1]:g} bits "
            f"of KL). "
            f"Encoder settings: {settings}; full-rate files use t_stop = {resolve_t_stop(settings, Stop())}.\n",
            "## The files against the model's ideal curve\n",
            describe_ideal(ideal, theory["images"], "the theory above") + " PSNR of the pooled MSE on both sides. "
            "**BD-rate (PSNR) of the files' mean reconstructions against it: "
            + ("n/a (no shared PSNR range)" if vs_ideal is None else f"{vs_ideal:+.1f} %") + "** "
            "(0 %: the files reach the model's curve; every change to the coder reads against it).\n"]
    report.write_markdown(out / f"rd_curve{suffix}.md", f"Rate–distortion curve (Table 4, Fig. 5): {data}", "\n".join(body), prov)

    curves = [(full, f"theory, {n_full} images", "-")]
    if full is None or full["images"] != theory["images"]:  # else the same images: one curve
        curves.append((theory, f"theory, {len(images)} images", "--"))
    fig, axes = report.figure(1, 3)
    ax = axes[0, 0]
    for doc, label, style in curves:
        if doc is None:
            continue
        cum = np.array(doc["by_variance"]["fixedlarge"]["cumulative_rate_bits_per_dim"])
        rmse = np.array(doc["rmse_0_255_by_t"])[::-1]  # index n−1: after n steps, x_{T−n+1}
        ax.plot(cum[1:], rmse[1:], style, label=label)
    ax.plot([r[1] for r in paper.TABLE4], [r[2] for r in paper.TABLE4], "ks", ms=4, label="paper, Table 4")
    ax.plot([p["bits_per_dim"] for p in mean_pts], [p["rmse_0_255"] for p in mean_pts], "o", label="practice: .ddc prefixes")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative rate (bits/dim)")
    ax.set_ylabel("RMSE of x̂_0 [0, 255]")
    ax.legend(fontsize=7)
    ax.set_title("Distortion against rate (Fig. 5)", fontsize=9)
    ax = axes[0, 1]
    for doc, label, style in curves:
        if doc is not None:
            ax.plot(np.arange(1, T + 1), doc["by_variance"]["fixedlarge"]["cumulative_rate_bits_per_dim"], style, label=label)
    if optimal:
        ax.plot(np.arange(1, T + 1), theory["by_variance"][OPTIMAL]["cumulative_rate_bits_per_dim"], ":",
                label=f"theory σ*², {len(images)} images")
    ax.plot([r[0] for r in paper.TABLE4], [r[1] for r in paper.TABLE4], "ks", ms=4, label="paper, Table 4")
    ax.plot([T - p["t"] + 1 for p in mean_pts], [p["bits_per_dim"] for p in mean_pts], "o", label="practice")
    ax.set_yscale("log")
    ax.set_xlabel("reverse steps done (T − t + 1)")
    ax.set_ylabel("cumulative rate (bits/dim)")
    ax.legend(fontsize=7)
    ax.set_title("Rate against reverse steps", fontsize=9)
    ax = axes[0, 2]
    ax.plot(ideal["bpp"], ideal["psnr"], "k-", label=ideal["label"])
    ax.plot([p["bpp"] for p in mean_pts], pooled, "o", label="practice: .ddc prefixes, x̂_0")
    ax.set_xscale("log")
    ax.set_xlabel("bpp (files: real bytes, headers included)")
    ax.set_ylabel("PSNR of the pooled MSE (dB)")
    ax.legend(fontsize=7)
    ax.set_title("Files against the model's ideal curve: BD-rate "
                 + ("n/a" if vs_ideal is None else f"{vs_ideal:+.1f} %"), fontsize=9)
    report.save_figure(fig, out / f"rd_curve{suffix}.png")

    for p in mean_pts:
        print(f"t={p['t']:>4}: file {p['bits_per_dim']:.4f} bits/dim (theory {p['theory_rate_bits_per_dim']:.4f}, "
              f"×{p['rate_ratio']:.2f}), RMSE {p['rmse_0_255']:.2f} (theory {p['theory_rmse_0_255']:.2f}, "
              f"{p['rmse_rel_diff']:+.1%}), PSNR mean {p['psnr']:.2f} flow {p['flow_psnr']:.2f} dB")
    if full_bits:
        print(f"full rate: {full_bits:.3f} bits/dim, bound {theory_total:.3f}, ratio {full_bits / theory_total:.3f}"
              + (f" (σ*²: {optimal_total:.3f}, ratio {full_bits / optimal_total:.3f})" if optimal else "") + "; "
              f"{lossless['exact']}/{lossless['full_rate']} bit-exact")
    print(f"BD-rate (PSNR of the pooled MSE) of the files' mean reconstructions against the {ideal['label']}: "
          + ("n/a" if vs_ideal is None else f"{vs_ideal:+.1f} %"))
    print(f"wrote {out}/rd_curve{suffix}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
