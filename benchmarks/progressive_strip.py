"""A progressive file as a picture: x̂_0 after several of its records, side by side, each labelled
with its t, the bytes read so far and its PSNR against the original.

With ``--classic``, the file's record prefixes (bytes read so far against the PSNR of x̂_0
there: the file's own rate–distortion curve, headers included) are set against Pillow's codecs
on the same image, as a BD-rate in the PSNR range both cover, into ``--json``.

Usage:
  python -m benchmarks.progressive_strip kodim01.ddc --original kodim01.png -o strip.png --count 5
  python -m benchmarks.progressive_strip kodim01.ddc --original kodim01.png -o strip.png --classic avif webp --json rd.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bitstream.container import unpack
from diffcodec.checkpoint import load_model
from diffcodec.codec import decompress
from diffcodec.models import shipped_model_for_hash

from .common import datasets
from .common.bjontegaard import bd_rate, overlap
from .classic import sweep
from diffcodec.quality import psnr_rgb
from .common.pillow_codecs import Codec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--original", type=Path, required=True)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--count", type=int, default=5, help="frames shown (the last record's always)")
    ap.add_argument("--width", type=int, default=384, help="width of each frame in the picture")
    ap.add_argument("--classic", nargs="*", default=[], help="Pillow codecs to set the file's curve against")
    ap.add_argument("--json", type=Path, default=None, help="write the curve (and BD-rates) here")
    args = ap.parse_args(argv)
    data = args.file.read_bytes()
    u = unpack(data)
    model = load_model(shipped_model_for_hash(u.header.model_hash))
    decoded = decompress(data, model, frames=True, max_pixels=None)
    frames = decoded.frames  # (t, image) after each record
    ends = np.cumsum([u.header_bytes] + u.record_bytes)[1:]
    with Image.open(args.original) as im:
        original = np.asarray(im.convert("RGB"))
    picks = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, args.count)})
    tiles = []
    for i in picks:
        t, image = frames[i]
        label = f"t = {t}: {ends[i]:,} bytes, {psnr_rgb(original, image.rgb):.1f} dB"
        tile = image.to_pil().convert("RGB")
        tile = tile.resize((args.width, round(tile.height * args.width / tile.width)), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
        canvas.paste(tile, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), label, fill="black")
        tiles.append(canvas)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 4
    strip.save(args.out)
    print(f"wrote {args.out}: records {[frames[i][0] for i in picks]}")
    pixels = original.shape[0] * original.shape[1]
    curve = {"t": [t for t, _ in frames], "bpp": [float(e) * 8 / pixels for e in ends[:len(frames)]],
             "psnr-rgb": [psnr_rgb(original, image.rgb) for _, image in frames]}
    doc = {"file": args.file.name, "diffcodec": curve, "classic": {}, "bd_rate_percent": {}}
    for name in args.classic:
        results = sweep(Codec(name), [datasets.EvalImage(args.original.stem, original)])
        doc["classic"][name] = results
        shared = overlap(curve["psnr-rgb"], results["psnr-rgb"])
        near = _near(curve["psnr-rgb"], min(results["psnr-rgb"]), max(results["psnr-rgb"]))  # fit where it counts
        rate = bd_rate(results["bpp"], results["psnr-rgb"], np.asarray(curve["bpp"])[near],
                       np.asarray(curve["psnr-rgb"])[near])
        doc["bd_rate_percent"][name] = {"bd_rate": rate, "psnr_range": shared}
        print(f"against {name}: BD-rate {rate if rate is None else f'{rate:+.1f} %'} over PSNR {shared}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def _near(psnr: list[float], low: float, high: float) -> np.ndarray:
    """Indices of the points within [low, high], with one more on each side where there is one
    (the prefixes far below the other curve's range take no part in the comparison)."""
    order = np.argsort(psnr)
    inside = [k for k, i in enumerate(order) if low <= psnr[i] <= high]
    if not inside:
        return order
    return order[max(0, inside[0] - 1):inside[-1] + 2]


if __name__ == "__main__":
    raise SystemExit(main())
