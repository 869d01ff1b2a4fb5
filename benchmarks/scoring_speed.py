"""Candidates scored per second by the two channel-simulation scorers: the compiled CPU loop
(``bitstream.kernels.CompiledScorer``, numba) and the torch one (``bitstream.torch_scoring.
TorchScorer``) on ``--device``.  Medians of ``--repeats`` runs after one warm-up run.

Rows ``call``: one ``best_index`` call of d dimensions and 2**k candidates.
Rows ``step``: one coded step of D dimensions in chunks of about d (streams (1, j+1)):
numba chunk by chunk, torch in one ``best_indices`` call.  ``same`` says whether both
selected the same indices.

Usage:
  python -m benchmarks.scoring_speed                  # CPU, all cases
  python -m benchmarks.scoring_speed --device cuda    # torch on a GPU
  python -m benchmarks.scoring_speed --quick          # small cases, seconds
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
