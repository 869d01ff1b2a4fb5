"""Would a per-image (or per-region) reverse variance, sent as side information, pay?

The encoder knows, at every coded step t → s, this image's own optimal σ² = β̃' + c'²·‖x_0 −
x̂_0‖²/d, while the decoder uses the table's σ*² = β̃' + c'²·e_t (``diffcodec.variances``).
This measures, on the codec's own chain (40 log-spaced steps down to t_stop = 20) with x_t drawn
from q(x_t|x_0), the expected KL in bits/dim under: β̃ (``posterior``), the table (``table``),
each image's optimum per step (``image``: one side-information symbol per step) and each
region's (``region``: one per region per step), and the gains over the table in bits per image.
A side-information symbol costs at least about 1–3 bits (a quantised log-scale); a gain below
that count of bits does not pay.

Usage:
  python -m benchmarks.studies.variance_side_info --dataset cifar10 --model default --limit 50
  python -m benchmarks.studies.variance_side_info --dataset kodak --crop 128 --limit 6 --regions 4
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from ..common import datasets


def measure(model, images: list[np.ndarray], regions: int, seed: int = 0) -> dict:
    from bitstream.container import RecordLayout
    from diffcodec.diffusion import GaussianDiffusion
    from diffcodec.codec.plan import make_plan

    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 127.5 - 1
    n, _, h, w = x.shape
    plan = make_plan(model.schedule_config.num_timesteps, 20, 40, RecordLayout.COARSE)
    schedule = model.schedule_config.build().respace(plan.boundaries)
    diffusion = GaussianDiffusion(schedule)
    table = model.error_table.variances(schedule)
    post, coef = schedule.posterior_variance, schedule.posterior_mean_coef_x0
    generator = torch.Generator().manual_seed(seed)
    dims = x[0].numel()
    region_dims = dims // (regions * regions)
    bits = {"posterior": 0.0, "table": 0.0, "image": 0.0, "region": 0.0}

    def kl(var, shifted, d, b):  # expected KL in bits of d dimensions, mean error ``shifted`` per dimension
        return d / 2 * (np.log(var / b) + (b + shifted) / var - 1) / math.log(2)

    with torch.no_grad():
        for t in plan.boundaries[:-1]:
            k = int(np.flatnonzero(schedule.timesteps == t)[0]) + 1
            steps = torch.full((n,), k)
            x_t = diffusion.q_sample(x, steps, torch.randn(x.shape, generator=generator, dtype=torch.float64))
            eps = diffusion.predict_eps(model.eps_fn, x_t.float(), steps).double()
            err2 = (diffusion.x0_from_eps(x_t, steps, eps).clamp(-1, 1) - x) ** 2
            b, c2 = post[k - 1], coef[k - 1] ** 2
            per_image = c2 * err2.flatten(1).mean(1).numpy()
            side = h // regions
            per_region = c2 * err2.mean(1).unfold(1, side, side).unfold(2, side, side).mean((-1, -2)).flatten(1).numpy()
            bits["posterior"] += kl(b, per_image, dims, b).sum()
            bits["table"] += kl(table[k - 1], per_image, dims, b).sum()
            bits["image"] += kl(b + per_image, per_image, dims, b).sum()
            bits["region"] += kl(b + per_region, per_region, region_dims, b).sum()
    steps = plan.num_steps
    return {"images": n, "size": f"{w}x{h}", "steps": steps, "regions": regions * regions,
            "bits_per_dim": {k: v / n / dims for k, v in bits.items()},
            "image_gain_bits": (bits["table"] - bits["image"]) / n, "image_symbols": steps,
            "region_gain_bits": (bits["table"] - bits["region"]) / n, "region_symbols": steps * regions * regions}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["cifar10", "kodak"], default="cifar10")
    ap.add_argument("--model", default=None, help="default: cifar10 for CIFAR-10, photo for Kodak")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--regions", type=int, default=2, help="regions per side")
    args = ap.parse_args(argv)
    from diffcodec.checkpoint import load_model

    torch.set_num_threads(1)
    model = load_model(args.model or ("cifar10" if args.dataset == "cifar10" else "photo"))
    if model.error_table is None:
        ap.error(f"model {model.name} has no error table")
    images = [im.rgb for im in datasets.load(args.dataset, args.limit, args.crop)]
    r = measure(model, images, args.regions)
    b = r["bits_per_dim"]
    print(f"{model.name}, {r['images']} {args.dataset} images {r['size']}, {r['steps']} steps to t = 20; KL bits/dim: "
          f"β̃ {b['posterior']:.4f}, table {b['table']:.4f}, per image {b['image']:.4f}, per region {b['region']:.4f}")
    print(f"gain over the table: per image and step {r['image_gain_bits']:.1f} bits/image for {r['image_symbols']} "
          f"symbols; per region ({r['regions']} a step) {r['region_gain_bits']:.1f} bits/image for "
          f"{r['region_symbols']} symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main())
