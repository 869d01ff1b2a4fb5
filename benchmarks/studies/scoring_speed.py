"""Candidates scored per second by the two channel-simulation scorers: the compiled CPU loop
(``bitstream.kernels.CompiledScorer``, numba) and the torch one (``bitstream.torch_scoring.
TorchScorer``) on ``--device``.  Medians of ``--repeats`` runs after one warm-up run.

Rows ``call``: one ``best_index`` call of d dimensions and 2**k candidates.
Rows ``step``: one coded step of D dimensions in chunks of about d (streams (1, j+1)):
numba chunk by chunk, torch in one ``best_indices`` call.  ``same`` says whether both
selected the same indices.

Table 2 sets format version 4's scorer (``bitstream.kernels32``: Philox4x32 words and float32
normals, the SIMD lane the candidate) against version 3's compiled loop on the same steps, whole
selections included (arrival times and argmin for PFR, argmax for greedy): candidate-dimensions
a second and the ratio, measured side by side in one process.

Usage:
  python -m benchmarks.studies.scoring_speed                  # CPU, all cases
  python -m benchmarks.studies.scoring_speed --only-v4        # table 2 alone
  python -m benchmarks.studies.scoring_speed --device cuda    # torch on a GPU
  python -m benchmarks.studies.scoring_speed --quick          # small cases, seconds
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import torch

from bitstream.kernels import CompiledScorer
from bitstream.torch_scoring import TorchScorer

CALLS = [(16, 10), (16, 14), (64, 14), (256, 14), (64, 18), (16, 20)]
STEPS = [(3072, 16, 10), (3072, 64, 12), (3072, 16, 14)]
QUICK_CALLS = [(16, 8), (16, 12), (64, 12)]
QUICK_STEPS = [(768, 16, 8)]
SEED = 20261123


def coefficients(d: int, rng) -> tuple:
    """A call of about 5 bits of KL on d dimensions (q_std = 0.95 p_std, a mean shift)."""
    a = np.full(d, 0.5 - 0.5 / 0.95**2)
    b = rng.choice([-1.0, 1.0], size=d) * np.sqrt(7.0 / d) / 0.95**2
    return a, b, float(d * np.log(0.95) - 3.5 / 0.95**2)


def median_seconds(fn, repeats: int):
    result = fn()  # warm-up: compilation, device start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device of the torch scorer (cpu, cuda, cuda:1, ...)")
    ap.add_argument("--quick", action="store_true", help="small cases, 3 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of torch and numba (default: theirs)")
    ap.add_argument("--only-v4", action="store_true", help="only table 2 (version 4 against version 3)")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    if args.only_v4:
        return version_4_table(args.device, repeats, args.quick)
    calls, steps = (QUICK_CALLS, QUICK_STEPS) if args.quick else (CALLS, STEPS)
    numba_scorer, torch_scorer = CompiledScorer(), TorchScorer(args.device)
    rng = np.random.default_rng(SEED)

    print(f"torch {torch.__version__} on {args.device}; CPU threads: torch {torch.get_num_threads()}; "
          f"medians of {repeats}")
    hdr = f"{'case':<5} {'D':>5} {'d':>4} {'k':>3} {'calls':>5} {'numba cand/s':>13} {'torch cand/s':>13} {'torch/numba':>11} same"
    print(hdr)
    print("-" * len(hdr))

    def row(kind, dims, d, k, n_calls, t_numba, t_torch, same):
        n = n_calls << k
        print(f"{kind:<5} {dims:>5} {d:>4} {k:>3} {n_calls:>5} {n / t_numba:>13.3e} {n / t_torch:>13.3e}"
              f" {t_numba / t_torch:>11.2f} {'yes' if same else 'NO'}")

    for d, k in calls:
        a, b, c = coefficients(d, rng)
        t_numba, i_numba = median_seconds(lambda: numba_scorer.best_index(SEED, (1, 1), a, b, c, k), repeats)
        t_torch, i_torch = median_seconds(lambda: torch_scorer.best_index(SEED, (1, 1), a, b, c, k), repeats)
        row("call", d, d, k, 1, t_numba, t_torch, i_numba == i_torch)
    for dims, d, k in steps:
        parts = np.array_split(np.arange(dims), dims // d)
        streams = [(1, j + 1) for j in range(len(parts))]
        coefs = [coefficients(p.size, rng) for p in parts]
        t_numba, i_numba = median_seconds(lambda: numba_scorer.best_indices(SEED, streams, coefs, k), repeats)
        t_torch, i_torch = median_seconds(lambda: torch_scorer.best_indices(SEED, streams, coefs, k), repeats)
        row("step", dims, d, k, len(parts), t_numba, t_torch, i_numba == i_torch)
    print()
    version_4_table(args.device, repeats, args.quick)


# (dimensions of the step, chunks, k): one call of 4096 dims; a 64×64 step in ~10-bit chunks; many
# small chunks; one big chunk (a 256×256 image's first step)
V4_STEPS = [(4096, 1, 12), (12288, 64, 12), (100_000, 2000, 10), (196_608, 1, 8)]
V4_QUICK = [(4096, 1, 10), (3072, 16, 10)]


def version_4_table(device: str, repeats: int, quick: bool) -> None:
    from bitstream import kernels32, torch_noise32
    from bitstream.selection import EXACT, GREEDY, select_step

    rng = np.random.default_rng(SEED)
    v3 = CompiledScorer()
    print("format version 4 against version 3, whole selections, candidate-dims/s (medians)")
    hdr = (f"{'D':>7} {'chunks':>6} {'k':>3} {'v3 PFR':>10} {'v4 PFR':>10} {'v4 greedy':>10} {'v4 torch':>10}"
           f" {'v4 PFR/v3':>9} {'greedy/v3':>9}")
    print(hdr)
    print("-" * len(hdr))
    for dims, chunks, k in (V4_QUICK if quick else V4_STEPS):
        sizes = np.full(chunks, dims // chunks)
        sizes[:dims % chunks] += 1
        a, b64, _ = coefficients(dims, rng)
        b32 = b64.astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        coefs = [(a[lo:hi], b64[lo:hi], 0.0) for lo, hi in zip(offsets[:-1], offsets[1:])]
        streams = [(1, j + 1) for j in range(chunks)]
        t3, _ = median_seconds(lambda: v3.best_indices(SEED, streams, coefs, k), repeats)
        tp, _ = median_seconds(lambda: select_step(SEED, 1, a[0], b32, sizes, k, EXACT, kernels32.log_weights_step),
                               repeats)
        tg, _ = median_seconds(lambda: select_step(SEED, 1, a[0], b32, sizes, k, GREEDY, kernels32.log_weights_step),
                               repeats)
        torch_lw = functools.partial(torch_noise32.log_weights_step, device=device)
        tt, _ = median_seconds(lambda: select_step(SEED, 1, a[0], b32, sizes, k, GREEDY, torch_lw), max(1, repeats // 2))
        n = dims << k
        print(f"{dims:>7} {chunks:>6} {k:>3} {n / t3:>10.3e} {n / tp:>10.3e} {n / tg:>10.3e} {n / tt:>10.3e}"
              f" {t3 / tp:>9.1f} {t3 / tg:>9.1f}")


if __name__ == "__main__":
    main()
