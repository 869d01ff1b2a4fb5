"""BD-rate between two runs of the same codec: how many more (or fewer) bits a change costs at
equal PSNR and at equal MS-SSIM, from two CompressAI results files of the same images.

``--minus-bytes N --pixels P`` also prints the figure with N bytes taken off every point of the
second run: what a change costs apart from a fixed number of header bytes.

Usage:
  python -m benchmarks.bd_between benchmarks/results/cifar10/compare-default-diffcodec-mean.json \\
      benchmarks/results/cifar10/v2-to-v3-first100/compare-v3-diffcodec-mean.json --minus-bytes 4 --pixels 1024
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import report
from .common.bjontegaard import bd_rate, overlap

QUALITIES = {"psnr-rgb": "PSNR", "ms-ssim-rgb": "MS-SSIM"}


def bd_rates(before: dict, after: dict, minus_bpp: float = 0.0,
             keys=tuple(QUALITIES)) -> dict[str, tuple[float | None, tuple | None]]:
    """BD-rate (%) of ``after`` against ``before`` and the quality range they share, by quality."""
    rates = [b - minus_bpp for b in after["bpp"]]
    return {key: (bd_rate(before["bpp"], before[key], rates, after[key]), overlap(before[key], after[key]))
            for key in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--minus-bytes", type=float, default=0.0, help="bytes to take off every point of AFTER")
    ap.add_argument("--pixels", type=int, default=None, help="pixels per image (needed with --minus-bytes)")
    args = ap.parse_args(argv)
    if args.minus_bytes and not args.pixels:
        ap.error("--minus-bytes needs --pixels")
    before = report.read_compressai(args.before)["results"]
    after = report.read_compressai(args.after)["results"]
    cases = [(0.0, "as measured")]
    if args.minus_bytes:
        cases.append((8 * args.minus_bytes / args.pixels, f"{args.minus_bytes:g} bytes off every point"))
    for minus, label in cases:
        for key, (value, shared) in bd_rates(before, after, minus).items():
            span = "no overlap" if shared is None else f"{shared[0]:.3f}–{shared[1]:.3f}"
            figure = "–" if value is None else f"{value:+.2f} %"
            print(f"{label:>28}: BD-rate ({QUALITIES[key]}) {figure} over {span}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
