"""The constants of the encoder's cost model (``diffcodec.codec.cost``) measured on this machine,
and the model's estimate against real encodes.

Usage:
  python -m benchmarks.studies.encode_cost            # network passes up to 256×256, scoring, 3 encodes
  python -m benchmarks.studies.encode_cost --quick    # smaller sizes, one encode
  python -m benchmarks.studies.encode_cost --threads 1

Prints, for the shipped ``default`` model: seconds per pixel of one network pass in float32 and
float64 (the lossless record's reference chain) by image size, nanoseconds per candidate and
dimension of the channel simulation's scoring and its cost per call, then each encode's
measured seconds beside the estimate. Minimum of ``--repeats`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def network_passes(model, sides, repeats: int) -> None:
    print("network pass (one image):")
    for dtype in (torch.float32, torch.float64):
        net = model.in_dtype(dtype)
        for side in sides:
            x = torch.randn(1, 3, side, side, dtype=dtype)
            t = torch.tensor([500])
            with torch.no_grad():
                net.eps_fn(x, t)
                s = best_of(repeats, lambda: net.eps_fn(x, t))
            print(f"  {str(dtype)[6:]:8} {side:4}×{side:<4} {s:8.3f} s  {s / side**2 * 1e6:7.1f} µs/pixel")


def scoring(repeats: int) -> None:
    from bitstream.kernels import CompiledScorer

    scorer = CompiledScorer()
    rng = np.random.default_rng(0)
    print("channel simulation (one call):")
    for k, d in ((8, 30), (8, 3072), (12, 30), (12, 3072)):
        a, b = -0.005 * np.ones(d), 0.01 * rng.standard_normal(d)
        scorer.best_index(1, (1, 1), a, b, 0.0, k)
        s = best_of(repeats, lambda: scorer.best_index(1, (1, 1), a, b, 0.0, k))
        print(f"  2^{k:<2} candidates, {d:5} dims: {s * 1e3:8.2f} ms  {s / (2**k * d) * 1e9:6.1f} ns/candidate/dim")


def encodes(model, cases, scale: float) -> None:
    """Real encodes beside the estimate, which is for 2 cores: ``scale`` times it for fewer threads."""
    from bitstream.container import ImageMode
    from diffcodec.codec import CodecConfig, Stop, compress, estimate_encode
    from diffcodec.images import CodecImage

    from ..common import datasets

    print("encodes (kodim01 centre crops, full rate):")
    for side, k in cases:
        rgb = datasets.load("kodak", 1, side)[0].rgb
        image = CodecImage(rgb, ImageMode.RGB)
        config = CodecConfig(log2_candidates=k)
        estimate = estimate_encode(model, side, side, config, Stop()).seconds * scale
        start = time.perf_counter()
        compress(image, model, config, Stop())
        s = time.perf_counter() - start
        print(f"  {side}×{side}, 2^{k} candidates: {s:7.1f} s measured, {estimate:7.1f} s estimated "
              f"({estimate / s:.2f}×)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch and numba threads (default: theirs); 1 gives steady figures on a busy machine")
    args = p.parse_args(argv)
    from diffcodec.checkpoint import load_model

    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)

    model = load_model("default")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    network_passes(model, (32, 64) if args.quick else (32, 64, 128, 256), args.repeats)
    scoring(args.repeats)
    encodes(model, [(32, 8)] if args.quick else [(32, 12), (64, 8), (64, 10)],
            1.0 if args.threads is None else 2.0 / args.threads)


if __name__ == "__main__":
    main()
