"""Real .ddc files against the same model's bound: file bits ÷ bound, at full rate and at the
records' prefixes; RMSE of x̂_0 at each prefix against the bound's; encoder/decoder seconds.

For the first ``--limit`` CIFAR-10 test images (after ``--offset``):
  theory    the T = 1000 bound of each image (``diffcodec.nll.evaluate_dataset``, σ² = β as the
            paper; the rate prefix uses the cumulative rate L_T + Σ_{t' > t} L_{t'-1})
  practice  ``compress`` at full rate with the given settings, in ``--workers`` processes;
            each record's end gives a prefix: its bytes (header included) and RMSE of x̂_0
Ratios are of dataset means (Σ bits / Σ bound), as bits/dim figures are reported.

Usage:
  python -m benchmarks.studies.codec_efficiency --limit 100 --workers 2 \\
      --out benchmarks/results/cifar10/codec_efficiency.json
  python -m benchmarks.studies.codec_efficiency --limit 4 --candidates 8 --chunk-bits 3   (quick look)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..common.datasets import SHARED_DATA

DEFAULT_DATA = SHARED_DATA / "cifar-10-subset"


def _encode_one(args):
    index, rgb, model_name, config, save_dir = args
    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import Stop, compress, decompress
    from diffcodec.images import CodecImage

    model = load_model(model_name)
    image = CodecImage(rgb, ImageMode.RGB)
    t0 = time.perf_counter()
    enc = compress(image, model, config, Stop())
    t1 = time.perf_counter()
    dec = decompress(enc.data, model)
    t2 = time.perf_counter()
    if save_dir is not None:
        (save_dir / f"cifar10-test-{index:04d}.ddc").write_bytes(enc.data)
    return {"index": index, "file_bytes": len(enc.data), "lossless": bool(np.array_equal(dec.image.rgb, rgb)),
            "encode_s": t1 - t0, "decode_s": t2 - t1, "records": [r.to_dict() for r in enc.stats.records],
            "header_bytes": enc.stats.header_bytes,
            "kl_bits": sum(s.kl_bits for s in enc.stats.steps),
            "ideal_coded_bits": sum(s.ideal_coded_bits for s in enc.stats.steps)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default="default")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=12, help="log2 of candidates per call")
    ap.add_argument("--chunk-bits", type=float, default=5.0)
    ap.add_argument("--t-stop", type=int, default=None, help="default: the codec's full-rate t_stop")
    ap.add_argument("--groups", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write")
    ap.add_argument("--save-dir", type=Path, default=None,
                    help="keep the full-rate files here (cifar10-test-NNNN.ddc), for the RD and lossless reports")
    args = ap.parse_args(argv)

    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig
    from diffcodec.data import load_eval_images
    from diffcodec.diffusion import ReverseVariance
    from diffcodec.nll import evaluate_dataset

    from ..common.practice import worker_setup

    images = load_eval_images(args.data)[args.offset:args.offset + args.limit]
    config = CodecConfig(t_stop=args.t_stop, groups=args.groups, log2_candidates=args.candidates,
                         chunk_bits=args.chunk_bits)
    model = load_model(args.model)
    if args.save_dir is not None:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(args.offset + i, images[i].permute(1, 2, 0).numpy().copy(), args.model, config, args.save_dir)
            for i in range(images.shape[0])]
    t0 = time.time()
    with mp.get_context("spawn").Pool(args.workers, initializer=worker_setup) as pool:
        results = []
        for r in pool.imap(_encode_one, jobs):
            results.append(r)
            print(f"image {r['index']}: {r['file_bytes']} bytes, lossless {r['lossless']}, "
                  f"encode {r['encode_s']:.1f}s", file=sys.stderr, flush=True)
    practice_s = time.time() - t0
    t0 = time.time()
    bound = evaluate_dataset(model, images, batch_size=64, seed=0)
    theory_s = time.time() - t0
    v = ReverseVariance.FIXED_LARGE
    dims = bound.dims
    split = bound.split(v)
    total_bound = split["total_bits_per_dim"]
    T = model.schedule_config.num_timesteps
    cum = bound.cumulative_rate(v)  # cum[n-1]: rate after n reverse steps, the receiver holds x_{T-n+1}
    rmse_t = bound.rmse_0_255()
    file_bpd = float(np.mean([r["file_bytes"] for r in results]) * 8 / dims)
    prefixes = []
    for j, rec in enumerate(results[0]["records"][:-1]):
        t = rec["t"]
        bits = float(np.mean([r["records"][j]["file_bytes"] for r in results]) * 8 / dims)
        rmse = float(np.sqrt(np.mean([r["records"][j]["rmse_0_255"] ** 2 for r in results])))
        theory = float(cum[T - t])  # n = T − t + 1 steps done
        z_mean = float(np.mean([r["records"][j]["z_mean"] for r in results]))
        z_var = float(np.mean([r["records"][j]["z_var"] for r in results]))
        ks = [r["records"][j]["z_ks"] for r in results]
        n_z = results[0]["records"][j]["z_n"]
        prefixes.append({"t": t, "reverse_steps_done": T - t + 1, "file_bits_per_dim": bits,
                         "z_mean": z_mean, "z_var": z_var, "z_ks_median": float(np.median(ks)),
                         "z_ks_null_median": 0.8276 / np.sqrt(n_z),  # median of D under N(0,1)

                         "bound_rate_bits_per_dim": theory, "ratio": bits / theory,
                         "rmse_0_255": rmse, "bound_rmse_0_255": float(rmse_t[t - 1]),
                         "rmse_rel_diff": rmse / float(rmse_t[t - 1]) - 1})
    doc = {
        "images": len(results), "offset": args.offset, "data": str(args.data), "model": model.name,
        "model_sha256": model.weights_sha256, "config": vars(args) | {"data": str(args.data), "out": str(args.out), "save_dir": str(args.save_dir)},
        "bound": split, "file_bits_per_dim": file_bpd, "full_rate_ratio": file_bpd / total_bound,
        "lossless_all": all(r["lossless"] for r in results),
        "channel_kl_bits_per_dim": float(np.mean([r["kl_bits"] for r in results]) / dims),
        "channel_ideal_coded_bits_per_dim": float(np.mean([r["ideal_coded_bits"] for r in results]) / dims),
        "header_bytes": results[0]["header_bytes"],
        "prefixes": prefixes,
        "encode_s_median": statistics.median(r["encode_s"] for r in results),
        "decode_s_median": statistics.median(r["decode_s"] for r in results),
        "wall_s": {"practice": practice_s, "theory": theory_s},
        "machine": f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores, torch {torch.__version__}",
        "per_image": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    print(f"{len(results)} images, model {model.name}: file {file_bpd:.3f} bits/dim, bound {total_bound:.3f} "
          f"(rate {split['rate_bits_per_dim']:.3f} + distortion {split['distortion_bits_per_dim']:.3f}), "
          f"ratio {doc['full_rate_ratio']:.3f}, lossless {doc['lossless_all']}")
    print(f"channel steps: KL {doc['channel_kl_bits_per_dim']:.3f} bits/dim coded as "
          f"{doc['channel_ideal_coded_bits_per_dim']:.3f} (ideal index code lengths)")
    print(f"{'t':>5} {'steps done':>10} {'file b/d':>9} {'bound b/d':>9} {'ratio':>7} {'RMSE':>7} {'bound':>7} "
          f"{'diff':>7} {'z mean':>8} {'z var':>7} {'KS D':>7} {'null':>7}")
    for p in prefixes:
        print(f"{p['t']:>5} {p['reverse_steps_done']:>10} {p['file_bits_per_dim']:>9.4f} {p['bound_rate_bits_per_dim']:>9.4f} "
              f"{p['ratio']:>7.3f} {p['rmse_0_255']:>7.3f} {p['bound_rmse_0_255']:>7.3f} {p['rmse_rel_diff']:>+7.1%} "
              f"{p['z_mean']:>+8.4f} {p['z_var']:>7.4f} {p['z_ks_median']:>7.4f} {p['z_ks_null_median']:>7.4f}")
    print(f"encode {doc['encode_s_median']:.1f} s, decode {doc['decode_s_median']:.2f} s per image (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
