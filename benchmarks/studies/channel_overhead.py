"""Overhead and fidelity of truncated-PFR channel simulation (bitstream.channel), no network.

For each (KL target per call, dimension d, log2 N): q and p are set so KL(q||p) equals the
target exactly (p = N(0, 1); q_std = rho * p_std with rho^2 = 0.99, about beta~_t/beta_t at
moderate t; the mean shift delta = q_mean - p_mean, of random signs, carries the rest).
Each call uses a fresh stream key.  Reported per row:

  calls      number of simulate() calls (capped by --max-calls and by --budget candidate
             elements per row; rows that would get fewer than --min-calls are skipped)
  bits/call  mean ideal code length -log2 P(index) under IndexModel(k, KL); the real
             constriction stream is within its fixed cost of this (next column)
  stream     real RangeEncoder stream length (bits) of all indices of the row / calls
  fixed      real stream bits minus the summed ideal bits: the per-stream fixed cost
  ratio      bits/call / KL
  m_delta    mean of the standardised residual along the shift direction,
             e_delta . (sample - q_mean) / sigma_q  (0 under q), with its standard error
  v_delta    mean of the squared residual along the shift direction (1 under q), with s.e.
  E[r^2]     mean squared standardised residual over all dims (1 under q), with s.e.
  ks_p       KS p-value of the per-call residuals along e_delta against N(0,1)
  enc_s      median seconds per simulate() call; dec_s: median per reconstruct()

Usage: python -m benchmarks.studies.channel_overhead [--max-calls 1000] [--budget 1.5e8] [--json F]
       python -m benchmarks.studies.channel_overhead --device-sizes --device cuda   (10–16 bits a call,
                                                                     2^16–2^20 candidates)
``--device`` picks the scorer: ``numba`` (the CPU encoder's compiled loop) or a torch device
(``cpu``, ``cuda``): the same indices, so the same bias; only the time differs.
Only --json writes a file; the table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from bitstream.channel import gaussian_kl_bits, reconstruct, simulate
from bitstream.index_law import IndexModel, encode_indices
from bitstream.noise import SharedNoise

RHO2 = 0.99


def ks_pvalue_normal(x):
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    cdf = 0.5 * np.array([math.erfc(-v / math.sqrt(2.0)) for v in x])
    i = np.arange(1, n + 1)
    d = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2.0 * sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return min(1.0, max(0.0, p))


def make_q(kl_bits, d, rng):
    p_mean = np.zeros(d)
    p_std = 1.0
    q_std = math.sqrt(RHO2)
    var_nats = 0.5 * d * (RHO2 - 1.0 - math.log(RHO2))
    rest = kl_bits * math.log(2) - var_nats
    if rest < 0:
        raise ValueError("variance mismatch alone exceeds the KL target")
    step = math.sqrt(2.0 * rest / d)  # sum delta^2 / 2 = rest
    delta = step * rng.choice([-1.0, 1.0], size=d)
    return p_mean + delta, q_std, p_mean, p_std, delta / np.linalg.norm(delta)


def make_scorer(device: str):
    """The candidate scorer of ``simulate`` for ``--device``."""
    if device == "numba":
        from bitstream.kernels import CompiledScorer

        return CompiledScorer()
    from bitstream.torch_scoring import TorchScorer

    return TorchScorer(device)


def run_row(kl, d, k, calls, seed, scorer=None):
    rng = np.random.default_rng(seed)
    noise = SharedNoise(seed)
    model = IndexModel(k, kl)
    idx, along, sq, enc_t, dec_t = [], [], [], [], []
    for c in range(calls):
        q_mean, q_std, p_mean, p_std, e = make_q(kl, d, rng)
        if c == 0:
            assert abs(gaussian_kl_bits(q_mean, q_std, p_mean, p_std) - kl) < 1e-9
        t0 = time.perf_counter()
        i, s = simulate(q_mean, q_std, p_mean, p_std, noise, (c, d), k, scorer=scorer)
        t1 = time.perf_counter()
        s2 = reconstruct(i, p_mean, p_std, noise, (c, d))
        t2 = time.perf_counter()
        assert np.array_equal(s, s2)
        r = (s - q_mean) / q_std
        idx.append(i)
        along.append(float(r @ e))
        sq.append(float(np.mean(r * r)))
        enc_t.append(t1 - t0)
        dec_t.append(t2 - t1)
    ideal = float(sum(model.ideal_bits(i) for i in idx))
    stream_bits = 8 * len(encode_indices(idx, model))
    along, sq = np.array(along), np.array(sq)
    return {
        "kl_bits": kl,
        "d": d,
        "log2_n": k,
        "calls": calls,
        "bits_per_call": ideal / calls,
        "stream_bits_per_call": stream_bits / calls,
        "fixed_bits": stream_bits - ideal,
        "ratio": ideal / calls / kl,
        "m_delta": float(along.mean()),
        "m_delta_se": float(along.std(ddof=1) / math.sqrt(calls)),
        "v_delta": float(np.mean(along**2)),
        "v_delta_se": float(np.std(along**2, ddof=1) / math.sqrt(calls)),
        "r2": float(sq.mean()),
        "r2_se": float(sq.std(ddof=1) / math.sqrt(calls)),
        "ks_p": ks_pvalue_normal(along),
        "frac_last_half": float(np.mean(np.array(idx) >= (1 << k) // 2)),
        "enc_s": float(np.median(enc_t)),
        "dec_s": float(np.median(dec_t)),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kl", type=float, nargs="+", default=[1, 2, 4, 8, 12])
    ap.add_argument("--dims", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--log2n", type=int, nargs="+", default=[10, 12, 14, 16])
    ap.add_argument("--max-calls", type=int, default=1000)
    ap.add_argument("--min-calls", type=int, default=100)
    ap.add_argument("--budget", type=float, default=1.5e8, help="candidate elements per row")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="numba", help="numba, cpu, cuda or cuda:N (the scorer)")
    ap.add_argument("--device-sizes", action="store_true",
                    help="the calls a GPU encoder makes: KL 10, 12, 14, 16 bits, d 64 and 1024, 2^16..2^20 candidates")
    args = ap.parse_args(argv)
    if args.device_sizes:
        args.kl, args.dims, args.log2n = [10, 12, 14, 16], [64, 1024], [16, 18, 20]
    scorer = make_scorer(args.device)

    rows, skipped = [], []
    t_start = time.perf_counter()
    for kl in args.kl:
        for d in args.dims:
            for k in args.log2n:
                if k < kl:
                    skipped.append((kl, d, k, "N < 2^KL"))
                    continue
                per_call = (1 << k) * 4 * SharedNoise.blocks_per_row(d)
                calls = int(min(args.max_calls, args.budget // per_call))
                if calls < args.min_calls:
                    skipped.append((kl, d, k, f"only {calls} calls in budget"))
                    continue
                t0 = time.perf_counter()
                row = run_row(kl, d, k, calls, args.seed + 7919 * k + 31 * d + int(kl * 1000), scorer)
                rows.append(row)
                print(f"  KL={kl:g} d={d} k={k} calls={calls} {time.perf_counter() - t0:.1f}s",
                      file=sys.stderr, flush=True)

    hdr = (f"{'KL':>4} {'d':>5} {'log2N':>5} {'calls':>5} {'bits/call':>9} {'stream':>7} {'fixed':>6}"
           f" {'ratio':>5} {'m_delta±se':>14} {'v_delta±se':>14} {'E[r^2]±se':>14} {'ks_p':>6} {'idx>=N/2':>8}"
           f" {'enc_s':>8} {'dec_s':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['kl_bits']:>4g} {r['d']:>5} {r['log2_n']:>5} {r['calls']:>5} {r['bits_per_call']:>9.2f}"
              f" {r['stream_bits_per_call']:>7.2f} {r['fixed_bits']:>6.1f} {r['ratio']:>5.2f}"
              f" {r['m_delta']:>+7.3f}±{r['m_delta_se']:<6.3f}"
              f" {r['v_delta']:>7.3f}±{r['v_delta_se']:<6.3f} {r['r2']:>7.3f}±{r['r2_se']:<6.3f}"
              f" {r['ks_p']:>6.3f} {r['frac_last_half']:>8.3f} {r['enc_s']:>8.4f} {r['dec_s']:>8.5f}")
    for kl, d, k, why in skipped:
        print(f"skipped KL={kl:g} d={d} log2N={k}: {why}")
    print(f"total {time.perf_counter() - t_start:.0f} s; rho^2={RHO2}; budget={args.budget:g} elements/row; "
          f"scorer {args.device}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "skipped": skipped, "rho2": RHO2, "budget": args.budget, "scorer": args.device},
                      f, indent=1)


if __name__ == "__main__":
    main()
