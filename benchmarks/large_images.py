"""Whole photos through the command line: encode and decode seconds, peak memory and the file,
for whole Kodak images and for photos of 1 to 12 megapixels.

Each `diffcodec encode` and `diffcodec decode` runs in a fresh process (as a user runs it), which
reports its own peak resident memory (``ru_maxrss``), so the figures include the libraries and
the model. Photos of a given size are a Kodak image resized with Lanczos to that many megapixels
at 4:3 (a stand-in for a camera's photo: smoother than one, so its file is smaller). The load
average is printed beside every timing, since the machine may be shared.

Usage:
  python -m benchmarks.large_images --kodak kodim01 kodim23 --bpp 0.5
  python -m benchmarks.large_images --megapixels 1 3 12 --model default --upto-t 500
  python -m benchmarks.large_images --quick                                 # a minute
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from .common import datasets, report
from diffcodec.quality import psnr_rgb

CHILD = ("import resource, runpy, sys\n"
         "sys.argv = ['diffcodec'] + sys.argv[1:]\n"
         "try:\n"
         "    runpy.run_module('diffcodec', run_name='__main__')\n"
         "    code = 0\n"
         "except SystemExit as e:\n"
         "    code = e.code or 0\n"
         "print(f'PEAK_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
         "sys.exit(code)\n")


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak GB, the last line it printed) of one `diffcodec` command in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"diffcodec {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    peak = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB ")][-1]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("wrote")]
    return seconds, peak / 2**20, lines[-1] if lines else ""


def photo_of(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    """``rgb`` resized to about ``megapixels`` at 4:3 (landscape), sides multiples of 8."""
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5 / 8)) * 8
    height = int(round(width * 3 / 4 / 8)) * 8
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kodak", nargs="*", default=[], help="whole Kodak images by name (kodim01 …)")
    ap.add_argument("--megapixels", nargs="*", type=float, default=[], help="kodim01 resized to these sizes")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--bpp", type=float, default=None)
    ap.add_argument("--upto-t", type=int, default=None)
    ap.add_argument("--extra", nargs="*", default=[], help="more encode options, e.g. --tile=0")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--keep", type=Path, default=None, help="copy the .ddc files into this folder")
    ap.add_argument("--quick", action="store_true", help="a 0.02 MP photo, the default model, to t = 900")
    args = ap.parse_args(argv)
    if args.quick:
        args.kodak, args.megapixels, args.model, args.bpp, args.upto_t = [], [0.02], "default", None, 900
    stop = ["--bpp", str(args.bpp)] if args.bpp is not None else (["--upto-t", str(args.upto_t)] if args.upto_t else [])
    sources = {im.name: im.rgb for im in datasets.load("kodak")}
    cases = [(name, sources[name]) for name in args.kodak]
    cases += [(f"kodim01-{mp:g}MP", photo_of(sources["kodim01"], mp)) for mp in args.megapixels]
    rows, doc = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rgb in cases:
            png, ddc, out = (Path(tmp) / f"{name}.{ext}" for ext in ("png", "ddc", "out.png"))
            Image.fromarray(rgb).save(png)
            h, w = rgb.shape[:2]
            load_before = os.getloadavg()[0]
            enc_s, enc_gb, said = run_cli(["encode", str(png), "-o", str(ddc), "--model", args.model, *stop,
                                           "--max-pixels", "0", *args.extra])
            load_mid = os.getloadavg()[0]
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / ddc.name).write_bytes(ddc.read_bytes())
            model = [] if args.model == "auto" else ["--model", args.model]  # decode finds a file's model itself
            dec_s, dec_gb, _ = run_cli(["decode", str(ddc), "-o", str(out), "--max-pixels", "0", *model])
            load_after = os.getloadavg()[0]
            size = ddc.stat().st_size
            with Image.open(out) as im:
                decoded = np.asarray(im.convert("RGB"))
            psnr = psnr_rgb(rgb, decoded)
            mp = w * h / 1e6
            row = {"image": name, "width": w, "height": h, "bytes": size, "bpp": size * 8 / (w * h), "psnr": psnr,
                   "encode_s": enc_s, "encode_peak_gb": enc_gb, "decode_s": dec_s, "decode_peak_gb": dec_gb,
                   "load_average_1min": [load_before, load_mid, load_after], "encoder_said": said}
            doc.append(row)
            rows.append([name, f"{w}×{h} ({mp:.2f} MP)", f"{size:,}", f"{row['bpp']:.3f}", f"{psnr:.2f}",
                         f"{enc_s:.0f} s", f"{enc_gb:.2f} GB ({enc_gb / mp:.2f}/MP)", f"{dec_s:.0f} s",
                         f"{dec_gb:.2f} GB ({dec_gb / mp:.2f}/MP)", f"{load_before:.1f} / {load_mid:.1f} / {load_after:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    tag = args.tag or "large_images"
    folder = report.results_dir("kodak", args.quick)
    prov = report.Provenance(data="Kodak PhotoCD (../shared/data/kodak), whole images or kodim01 resized (Lanczos)",
                             model=args.model, device=report.device_description(),
                             bits="real files written by `diffcodec encode`, headers included")
    (folder / f"{tag}.json").write_text(json.dumps({"rows": doc, "stop": stop, "extra": args.extra,
                                                    "provenance": asdict(prov)}, indent=1) + "\n")
    body = [f"`diffcodec encode IMAGE -o F.ddc --model {args.model} {' '.join(stop)} --max-pixels 0 "
            f"{' '.join(args.extra)}` and `diffcodec decode F.ddc -o OUT.png --max-pixels 0` (its model found from the file), each in a fresh "
            f"process; peak = the process's peak resident memory (libraries and model included); load = the "
            f"1-minute load average before the encode / before the decode / after it.\n",
            report.table(["image", "size", "bytes", "bpp", "PSNR (dB)", "encode", "encode peak", "decode",
                          "decode peak", "load"], rows),
            f"\n`{report.command_line()}`"]
    report.write_markdown(folder / f"{tag}.md", "Whole photos through the command line", "\n".join(body), prov)
    print(f"wrote {folder}/{tag}.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
