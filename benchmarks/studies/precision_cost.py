"""What the float64 reference chain costs: the lossless record is predicted from the channel
records replayed with the network in float64 (format v3), where a float32 chain would be cheaper
but not the same on every machine.

For each case, side by side in one process and alternating (medians of ``--repeats``):
  net32, net64   one network evaluation at the image's size, float32 / float64
  chain32        the coded steps replayed with the network in float32 (what a lossy decode does)
  chain64        the same in float64 (what a lossless decode and the encoder's replay do)
  decode         a full lossless decode (reference chain + lossless record)

Usage:
  python -m benchmarks.studies.precision_cost                 # CIFAR 32×32, Kodak crops 64 and 256
  python -m benchmarks.studies.precision_cost --cases default-32 cifar10-32 photo-64
  python -m benchmarks.studies.precision_cost --quick         # one small case, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ..common import datasets, report

CASES = {"default-32": ("default", "cifar10", None), "cifar10-32": ("cifar10", "cifar10", None),
         "photo-64": ("photo", "kodak", 64), "photo-256": ("photo", "kodak", 256)}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(model_name: str, dataset: str, crop: int | None, repeats: int) -> dict:
    from bitstream.container import ImageMode, unpack
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import CodecConfig, Stop, compress, decompress
    from diffcodec.codec.chain import Chain, pad_to_factor
    from diffcodec.codec.encoder import replay
    from diffcodec.images import CodecImage
    from diffcodec.codec.plan import make_plan

    model = load_model(model_name)
    rgb = datasets.load(dataset, 1, crop)[0].rgb
    image = CodecImage(rgb, ImageMode.RGB)
    data = compress(image, model, CodecConfig(log2_candidates=6, chunk_bits=2.0), Stop()).data
    header = unpack(data).header
    plan = make_plan(1000, header.t_stop, header.groups, header.layout)
    padded = pad_to_factor(rgb, model.unet_config.downsampling_factor).shape[:2]
    chains = {dtype: Chain(model, header, plan, padded, reference=dtype == "float64") for dtype in ("float32", "float64")}
    # the coded steps of the file, as the encoder logged them: decode once to read them back
    decoded = decompress(data, model)
    assert decoded.exact
    steps = _coded_steps(data, model, chains["float32"])
    x = torch.randn((1, 3, *padded), dtype=torch.float64)
    out = {"case": f"{model_name}, {rgb.shape[1]}×{rgb.shape[0]}", "coded_steps": len(steps)}
    timings = {k: [] for k in ("net32", "net64", "chain32", "chain64", "decode")}
    with torch.no_grad():
        for _ in range(repeats):  # alternate so that load changes hit every column alike
            for dtype, key in (("float32", "net32"), ("float64", "net64")):
                timings[key].append(_median_time(lambda: chains[dtype].eps(x, plan.boundaries[1]), 1))
            for dtype, key in (("float32", "chain32"), ("float64", "chain64")):
                timings[key].append(_median_time(lambda: replay(chains[dtype], steps), 1))
            timings["decode"].append(_median_time(lambda: decompress(data, model), 1))
    out.update({k: statistics.median(v) for k, v in timings.items()})
    return out


def _coded_steps(data: bytes, model, chain) -> list:
    """(step, t, s, level, indices) of every coded step of a complete file."""
    from bitstream.container import unpack
    from diffcodec.codec.records import read_steps

    u = unpack(data)
    steps, level = [], 0
    for r, payload in enumerate(u.records[: len(chain.plan.record_steps())]):
        coded, level = read_steps(payload, r, chain.plan.record_steps()[r], chain, level)
        steps += coded
    return steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                    help="model-size cases (photo-256 encodes a 256×256 crop losslessly first: minutes)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    cases = [CASES["default-32"]] if args.quick else [CASES[c] for c in args.cases]
    if args.quick:
        args.repeats = 1
    rows = [measure(*c, args.repeats) for c in cases]
    out = report.results_dir("speed", args.quick)
    prov = report.Provenance(data="CIFAR-10 test image 0; centre crops of kodim01", model="default, cifar10, photo",
                             device=report.device_description())
    header = ["case", "coded steps", "net float32 s", "net float64 s", "×", "chain float32 s", "chain float64 s", "×",
              "lossless decode s"]
    table_rows = [[r["case"], r["coded_steps"], f"{r['net32']:.3f}", f"{r['net64']:.3f}", f"{r['net64'] / r['net32']:.2f}",
                   f"{r['chain32']:.2f}", f"{r['chain64']:.2f}", f"{r['chain64'] / r['chain32']:.2f}",
                   f"{r['decode']:.2f}"] for r in rows]
    body = (f"Medians of {args.repeats} alternating runs in one process, every core of {prov.device}, "
            f"torch {torch.__version__}. A lossy decode runs the chain in float32; a lossless decode, and the "
            f"encoder once it writes the lossless record, run it in float64.\n\n" + report.table(header, table_rows))
    report.write_markdown(out / "precision_cost.md", "What the float64 reference chain costs", body, prov)
    print(report.table(header, table_rows))
    print(f"wrote {out}/precision_cost.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
