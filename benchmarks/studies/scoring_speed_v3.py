"""Format version 3's two compiled scorers side by side in one process: the scalar reference loop
(``bitstream.kernels.log_weights_reference``, libm) against the vectorised kernel
(``bitstream.kernels.log_weights``, ``bitstream.kernels_exact``), candidate-dims/s of the
log-weights of N candidates of d dimensions, medians of ``--repeats`` runs after a warm-up, the
ratio, and the largest difference of the two relative to Σ|terms|.

Usage:
  python -m benchmarks.studies.scoring_speed_v3                # d = 4096 and 3072, N = 2**12
  python -m benchmarks.studies.scoring_speed_v3 --threads 1    # numba threads (default: numba's)
"""

from __future__ import annotations

import argparse
import platform

import numba
import numpy as np

from bitstream.kernels import log_weights, log_weights_reference
from bitstream.noise import LANE_NORMAL, SharedNoise

from .scoring_speed import coefficients, median_seconds

SEED, STREAM = 20261207, (1, 1)
CASES = [(4096, 1 << 12), (3072, 1 << 12)]


def cpu() -> str:
    """The processor's model name and its widest vector extension (Linux), else the machine."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = info.split()
    return f"{name}, {'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="numba threads (default: numba's)")
    args = ap.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    rng = np.random.default_rng(SEED)
    key = (STREAM[0] << 32) | STREAM[1]
    print(f"{cpu()}; numba {numba.__version__}, "
          f"{numba.get_num_threads()} threads; medians of {args.repeats}")
    hdr = f"{'d':>5} {'N':>5} {'reference':>11} {'fast':>11} {'fast/ref':>8} {'max err/Σ|terms|':>16}"
    print(hdr + "\n" + "-" * len(hdr))
    for d, n in CASES:
        a, b, c = coefficients(d, rng)
        t_ref, ref = median_seconds(lambda: log_weights_reference(SEED, key, LANE_NORMAL, 0, n, a, b, c), args.repeats)
        t_fast, got = median_seconds(lambda: log_weights(SEED, key, LANE_NORMAL, 0, n, a, b, c), args.repeats)
        z = SharedNoise(SEED).normals(STREAM, 0, 256, d)
        scale = abs(c) + (z * z) @ np.abs(a) + np.abs(z * b).sum(axis=1)
        err = float(np.max(np.abs(got[:256] - ref[:256]) / scale))
        print(f"{d:>5} {n:>5} {d * n / t_ref:>11.3e} {d * n / t_fast:>11.3e} {t_ref / t_fast:>8.2f} {err:>16.1e}")


if __name__ == "__main__":
    main()
