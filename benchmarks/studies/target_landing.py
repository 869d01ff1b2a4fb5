"""Where --psnr and --bpp targets land: version 6's end_t (the last step ends where the target is
met) against version 4 (the file ends at the record past it), same images, same settings.

For each image and target both files are encoded with the CLI's defaults (only the format version
differs) and the table gives what the file reached (PSNR of the decoded image, bpp of its real
bytes, header included), its bytes and the encode time.  A PSNR target counts as landed within
0.3 dB above it, a bpp target within 3 % below it.

Usage:
  python -m benchmarks.studies.target_landing --dataset cifar10 --limit 6 --psnr 25 30 --bpp 1 2
  python -m benchmarks.studies.target_landing --dataset kodak --crop 64 --limit 4 --model photo --psnr 30 --bpp 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from diffcodec.checkpoint import load_model
from diffcodec.codec import CodecConfig, Stop, compress
from diffcodec.images import from_pil
from diffcodec.models import resolve_model_name

from ..common import datasets, report


def run(image: datasets.EvalImage, model, stop: Stop, version: int | None) -> dict:
    start = time.perf_counter()
    out = compress(from_pil(Image.fromarray(image.rgb)), model, CodecConfig(version=version), stop, max_pixels=None)
    seconds = time.perf_counter() - start
    last = out.stats.last_record
    return {"bytes": len(out.data), "bpp": out.stats.bpp, "psnr": last.psnr_mean, "t": last.t,
            "version": out.stats.config.version, "seconds": seconds}


def landed(stop: Stop, r: dict) -> bool:
    if stop.psnr is not None:
        return r["psnr"] is not None and stop.psnr <= r["psnr"] <= stop.psnr + 0.3
    return 0.97 * stop.bpp <= r["bpp"] <= stop.bpp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar10", choices=("cifar10", "kodak"))
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--model", default="auto")
    ap.add_argument("--psnr", type=float, nargs="*", default=[])
    ap.add_argument("--bpp", type=float, nargs="*", default=[])
    args = ap.parse_args(argv)
    images = datasets.load(args.dataset, args.limit, args.crop)
    h, w = images[0].rgb.shape[:2]
    name = resolve_model_name(args.model, w, h)
    model = load_model(name)
    stops = [Stop(psnr=p) for p in args.psnr] + [Stop(bpp=b) for b in args.bpp]
    rows, summary = [], []
    for stop in stops:
        label = f"--psnr {stop.psnr:g}" if stop.psnr is not None else f"--bpp {stop.bpp:g}"
        got = {4: [], None: []}
        for im in images:
            for version in (4, None):
                r = run(im, model, stop, version)
                got[version].append(r)
                rows.append([label, im.name, f"v{r['version']}", r["t"], r["bytes"], f"{r['bpp']:.3f}",
                             "—" if r["psnr"] is None else f"{r['psnr']:.2f}", "yes" if landed(stop, r) else "no",
                             f"{r['seconds']:.1f}"])
            print(rows[-2], rows[-1], flush=True)
        old, new = got[4], got[None]
        summary.append([label, len(images), sum(landed(stop, r) for r in old), sum(landed(stop, r) for r in new),
                        f"{np.mean([r['bpp'] for r in old]):.3f}", f"{np.mean([r['bpp'] for r in new]):.3f}",
                        f"{np.mean([r['psnr'] or np.nan for r in old]):.2f}",
                        f"{np.mean([r['psnr'] or np.nan for r in new]):.2f}",
                        f"{np.median([r['seconds'] for r in old]):.1f}", f"{np.median([r['seconds'] for r in new]):.1f}"])
    body = "\n".join([
        "Version 4 ends a file at the record past the target; version 6 ends its last step where the target "
        "is met (`end_t`). Landed: PSNR within 0.3 dB above the target, bpp within 3 % below it.", "",
        report.table(["target", "images", "landed v4", "landed v6", "mean bpp v4", "mean bpp v6", "mean PSNR v4",
                      "mean PSNR v6", "median encode s v4", "median encode s v6"], summary), "",
        "Per image:", "",
        report.table(["target", "image", "version", "t reached", "bytes", "bpp", "PSNR dB", "landed", "encode s"], rows)])
    tag = report.model_tag(name)
    crop = f"-c{args.crop}" if args.crop else ""
    out = report.results_dir(args.dataset) / f"target_landing{tag}{crop}.md"
    report.write_markdown(out, f"Targets landing: version 6 against version 4 ({args.dataset}{crop}, `{name}`)", body,
                          report.Provenance(datasets.describe(args.dataset, len(images), args.crop), name,
                                            report.device_description()))
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
