"""Classic codecs through Pillow: rate–distortion sweeps from real file bytes (headers counted).

For each codec of :mod:`benchmarks.common.pillow_codecs` (JPEG 4:2:0 and 4:4:4, WebP, AVIF, JPEG XL,
JPEG 2000, and HEVC if pillow-heif is importable) and each setting of its quality sweep, every
image is encoded to bytes in memory and decoded again; the operating point is the data-set
mean of bpp (file bytes·8 / pixels), PSNR-RGB, MS-SSIM-RGB (:mod:`diffcodec.quality`) and the
encoding/decoding seconds per image (one thread). The reports compare the measured curves
with the reference figures (measured with Pillow 13 from real file bytes): PSNR at the anchor rates is interpolated linearly in log(bpp)
between the two neighbouring operating points (no extrapolation).

Usage:
  python -m benchmarks.classic --dataset kodak                 # all 24 images
  python -m benchmarks.classic --dataset cifar10 [--limit 200]
  python -m benchmarks.classic --dataset cifar10 --quick       # 3 images, 3 qualities: seconds
  python -m benchmarks.classic --dataset kodak --codecs webp avif
  python -m benchmarks.classic --dataset cifar10 --replot      # classic.png again from the JSON files

Writes into ``benchmarks/results/<dataset>/`` (``results/quick/<dataset>/`` with ``--quick``):
``classic-<codec>.json`` (CompressAI format, one per codec), ``classic.png`` and ``classic.md``.

As a library (``benchmarks.compare``): ``sweep(Codec.WEBP, images)`` gives the CompressAI
``results`` dict; ``measure`` keeps the per-image values.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from .common import datasets, report
from diffcodec.quality import ms_ssim_convention, ms_ssim_rgb, pooled_psnr, psnr_rgb
from .common.pillow_codecs import LOSSY, Codec, roundtrip

PSNR_CAP = 100.0  # dB, for an image decoded exactly (never reached by the default sweeps)
SMALL_SIDE = 128  # images whose smaller side is below this use the "small" sweeps
QUICK_IMAGES = {"cifar10": 3, "kodak": 2}

# Reference figures: Kodak PSNR-RGB (dB) at these rates, Pillow 13, real file bytes.
ANCHOR_BPPS = (0.25, 0.5, 0.75, 1.0, 2.0)
KODAK_ANCHORS: dict[Codec, tuple[float, ...]] = {
    Codec.JPEG_420: (24.6, 29.1, 31.2, 32.7, 36.9),
    Codec.WEBP: (28.5, 31.3, 33.5, 35.1, 39.5),
    Codec.AVIF: (29.6, 32.5, 34.5, 36.1, 40.5),
    Codec.JXL: (27.0, 31.1, 33.1, 34.7, 39.1),
    Codec.HEVC: (29.5, 32.5, 34.6, 36.3, 40.7),
}
# Reference figures: CIFAR-10 test, first 200 images: PSNR (dB) at bpp; JPEG's smallest file in bpp.
CIFAR_ANCHOR_IMAGES = 200
CIFAR_ANCHORS: dict[Codec, dict[float, float]] = {
    Codec.WEBP: {2.0: 29.4, 4.0: 34.9},
    Codec.JXL: {2.0: 28.3, 4.0: 34.5},
    Codec.AVIF: {4.0: 31.3},
}
CIFAR_JPEG_SMALLEST_BPP = 5.2


@dataclass
class Measurements:
    """Per-image values of one codec's sweep; arrays are (qualities, images)."""

    codec: Codec
    qualities: tuple
    names: list[str]
    bpp: np.ndarray
    psnr: np.ndarray
    ms_ssim: np.ndarray
    encode_s: np.ndarray
    decode_s: np.ndarray
    exact: np.ndarray  # bool: decoded == source (PSNR capped at PSNR_CAP)

    def results(self, count: int | None = None) -> dict[str, list]:
        """CompressAI ``results``: means over the first ``count`` images (all by default), and the
        PSNR of their mean MSE (``psnr-rgb-pooled``, the convention of the model's ideal curve)."""
        s = slice(None, count)
        mean = lambda a: [float(v) for v in a[:, s].mean(axis=1)]  # noqa: E731
        return {"quality": [float(q) for q in self.qualities], "bpp": mean(self.bpp), "psnr-rgb": mean(self.psnr),
                "ms-ssim-rgb": mean(self.ms_ssim), "encoding_time": mean(self.encode_s),
                "decoding_time": mean(self.decode_s),
                "psnr-rgb-pooled": [float(v) for v in pooled_psnr(self.psnr[:, s], axis=1)]}


def is_small(images: list[datasets.EvalImage]) -> bool:
    return min(min(im.rgb.shape[:2]) for im in images) < SMALL_SIDE


def measure(codec: Codec, images: list[datasets.EvalImage], qualities=None, progress: bool = False,
            quick: bool = False) -> Measurements:
    """Encode and decode every image at every quality (default: the codec's sweep for this
    image size, or its short ``quick`` sweep)."""
    spec = codec.spec
    if qualities is None:
        qualities = spec.default_qualities(small=is_small(images), quick=quick)
    qualities = tuple(qualities)
    shape = (len(qualities), len(images))
    m = Measurements(codec, qualities, [im.name for im in images], *(np.zeros(shape) for _ in range(5)),
                     np.zeros(shape, dtype=bool))
    roundtrip(spec, images[0].rgb, qualities[0])  # warm-up: first-call set-up would skew the times
    bar = _progress(len(qualities) * len(images), codec.value, progress)
    for i, q in enumerate(qualities):
        for j, im in enumerate(images):
            coded = roundtrip(spec, im.rgb, q)
            m.bpp[i, j] = coded.bpp()
            m.psnr[i, j] = min(psnr_rgb(im.rgb, coded.decoded), PSNR_CAP)
            m.exact[i, j] = m.psnr[i, j] == PSNR_CAP
            m.ms_ssim[i, j] = ms_ssim_rgb(im.rgb, coded.decoded)
            m.encode_s[i, j], m.decode_s[i, j] = coded.encode_s, coded.decode_s
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return m


def sweep(codec: Codec, images: list[datasets.EvalImage], qualities=None, progress: bool = False) -> dict:
    """The CompressAI ``results`` dict of one codec on ``images`` (data-set means per quality)."""
    return measure(codec, images, qualities, progress).results()


def interpolate_psnr(results: dict, bpp: float, key: str = "psnr-rgb") -> float | None:
    """``key`` at ``bpp``, linear in log(bpp) between neighbouring points; None outside the range."""
    rates = np.asarray(results["bpp"], dtype=float)
    values = np.asarray(results[key], dtype=float)
    order = np.argsort(rates)
    rates, values = rates[order], values[order]
    if not rates[0] <= bpp <= rates[-1]:
        return None
    return float(np.interp(math.log(bpp), np.log(rates), values))


def _progress(total: int, label: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="img", file=sys.stderr, leave=False)


# ----------------------------------------------------------------------------- reports

def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def codec_table(m: Measurements, results: dict) -> str:
    rows = [[f"{q:g}", f"{b:.3f}", f"{p:.2f}", f"{s:.4f}", f"{e * 1e3:.1f}", f"{d * 1e3:.1f}"]
            for q, b, p, s, e, d in zip(results["quality"], results["bpp"], results["psnr-rgb"],
                                        results["ms-ssim-rgb"], results["encoding_time"], results["decoding_time"])]
    return report.table(["quality", "bpp", "PSNR-RGB (dB)", "MS-SSIM-RGB", "encode (ms/img)", "decode (ms/img)"], rows)


def kodak_anchor_section(all_results: dict[Codec, dict]) -> str:
    rows = []
    for codec, anchors in KODAK_ANCHORS.items():
        if codec not in all_results:
            rows.append([codec.spec.label, "not run" + ("" if codec.available() else " (not available here)")]
                        + [""] * (len(ANCHOR_BPPS) - 1))
            continue
        cells = []
        for bpp, anchor in zip(ANCHOR_BPPS, anchors):
            got = interpolate_psnr(all_results[codec], bpp)
            cells.append("outside measured range" if got is None else f"{got:.2f} vs {anchor:.1f} ({got - anchor:+.2f})")
        rows.append([codec.spec.label] + cells)
    settings = "\n".join(f"- **{c.spec.label}**: {c.spec.reference_match}" for c in KODAK_ANCHORS)
    return ("## Check against reference figures (Kodak)\n\n"
            "Measured PSNR-RGB (dB) at the anchor rates, interpolated **linearly in log(bpp)** between the two "
            "neighbouring operating points of the sweep, next to the reference figure and the difference "
            "(measured − reference). Target: within 0.3 dB where the settings match.\n\n"
            + report.table(["codec"] + [f"{b:g} bpp" for b in ANCHOR_BPPS], rows)
            + "\n\nSettings compared with those of the reference figures:\n\n" + settings + "\n")


def cifar_anchor_section(measured: dict[Codec, Measurements]) -> str:
    n = min(CIFAR_ANCHOR_IMAGES, min(len(m.names) for m in measured.values()))
    rows = []
    for codec, anchors in CIFAR_ANCHORS.items():
        if codec not in measured:
            continue
        subset, full = measured[codec].results(n), measured[codec].results()
        for bpp, anchor in anchors.items():
            got = interpolate_psnr(subset, bpp)
            rows.append([codec.spec.label, f"PSNR at {bpp:g} bpp", _fmt(got), f"{anchor:.1f}",
                         "—" if got is None else f"{got - anchor:+.2f}", _fmt(interpolate_psnr(full, bpp))])
    if Codec.JPEG_420 in measured:
        m = measured[Codec.JPEG_420]
        lowest = int(np.argmin(m.qualities))
        smallest = m.results(n)["bpp"][lowest]
        rows.append([f"JPEG 4:2:0 (quality {m.qualities[lowest]:g})", "smallest file (bpp)", f"{smallest:.2f}",
                     f"{CIFAR_JPEG_SMALLEST_BPP:.1f}", f"{smallest - CIFAR_JPEG_SMALLEST_BPP:+.2f}",
                     f"{m.results()['bpp'][lowest]:.2f}"])
    note = "" if n == CIFAR_ANCHOR_IMAGES else f" (only {n} images were measured, not {CIFAR_ANCHOR_IMAGES})"
    return ("## Check against reference figures (CIFAR-10)\n\n"
            f"Reference figures are means over the first {CIFAR_ANCHOR_IMAGES} test images; the 'measured' column uses "
            f"the same first {n} images{note}, the last column all images of this run. PSNR interpolated linearly "
            "in log(bpp); — = outside the measured range.\n\n"
            + report.table(["codec", "figure", f"measured (first {n})", "reference", "difference",
                            f"measured (all {len(next(iter(measured.values())).names)})"], rows) + "\n")


def plot(all_results: dict[Codec, dict], dataset: str, n: int, path):
    fig, axes = report.figure(1, 2)
    for codec, res in all_results.items():
        line, = axes[0, 0].plot(res["bpp"], res["psnr-rgb"], ".-", label=codec.spec.label)
        axes[0, 1].plot(res["bpp"], res["ms-ssim-rgb"], ".-", color=line.get_color(), label=codec.spec.label)
        if dataset == "kodak" and codec in KODAK_ANCHORS:
            axes[0, 0].plot(ANCHOR_BPPS, KODAK_ANCHORS[codec], "x", color=line.get_color(), ms=7)
        if dataset == "cifar10" and codec in CIFAR_ANCHORS:
            anchors = CIFAR_ANCHORS[codec]
            axes[0, 0].plot(list(anchors), list(anchors.values()), "x", color=line.get_color(), ms=7)
    axes[0, 0].set(xlabel="bits per pixel (file bytes, headers included)", ylabel="PSNR-RGB (dB)",
                   title=f"{dataset}, {n} images (× = reference figures)")
    axes[0, 1].set(xlabel="bits per pixel (file bytes, headers included)", ylabel="MS-SSIM-RGB", title=f"{dataset}, {n} images")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return report.save_figure(fig, path)


def replot(dataset: str, quick: bool = False):
    """Redraw ``classic.png`` from the ``classic-<codec>.json`` files a run wrote (no codec runs)."""
    import json

    out = report.results_dir(dataset, quick)
    docs = {codec: json.loads(path.read_text()) for codec in Codec
            if (path := out / f"classic-{codec.value}.json").exists()}
    if not docs:
        raise SystemExit(f"no classic-*.json files in {out}")
    n = min(doc["images"] for doc in docs.values())
    return plot({codec: doc["results"] for codec, doc in docs.items()}, dataset, n, out / "classic.png")


def write_reports(dataset: str, images, measured: dict[Codec, Measurements], skipped: list[str], quick: bool,
                  elapsed_s: float, load_avg: tuple) -> list:
    out = report.results_dir(dataset, quick)
    n = len(images)
    data = datasets.describe(dataset, n)
    conventions = sorted({ms_ssim_convention(*im.rgb.shape[:2]) for im in images}, key=lambda c: c.scales)
    ms_text = "; ".join(c.describe() for c in conventions)
    device = (f"{report.device_description()}; every codec single-threaded; load average "
              f"{load_avg[0]:.1f} on {os.cpu_count()} cores when the run started (times are wall clock per image)")
    prov = report.Provenance(data=data, model="none (classic codecs through Pillow)", device=device)
    all_results = {codec: m.results() for codec, m in measured.items()}
    written = []
    for codec, res in all_results.items():
        spec = codec.spec
        written.append(report.write_compressai(
            out / f"classic-{codec.value}.json", spec.label,
            f"{spec.label} ({spec.settings}) through Pillow on {data}; control: {spec.control}; "
            f"bpp from real file bytes, headers included; means over images per setting.",
            res, prov, codec=codec.value, settings=spec.settings, control=spec.control, dataset=dataset,
            images=n, ms_ssim=ms_text, exact_decodes=int(measured[codec].exact.sum())))
    written.append(plot(all_results, dataset, n, out / "classic.png"))

    body = [f"Data: {data}. {len(measured)} codecs, {sum(len(m.qualities) for m in measured.values())} settings, "
            f"{sum(m.bpp.size for m in measured.values())} encodes+decodes in {_duration(elapsed_s)}.",
            "", "- **bpp** = file bytes·8 / pixels, headers included (a whole file in memory, decoded again from it).",
            "- **PSNR-RGB** = 10·log10(255²/MSE) over all pixels and channels, per image, then averaged.",
            f"- **MS-SSIM-RGB**: {ms_text}; per image, then averaged.",
            "- **Times** are seconds per image, shown here in ms; encoding = Pillow `save`, decoding = open + "
            "decode + conversion to an RGB array; one thread per codec.",
            "- Each row is one codec setting; figures are means over all images.",
            "", "![rate–distortion](classic.png)", ""]
    if skipped:
        body += ["Not run: " + "; ".join(skipped) + ".", ""]
    if dataset == "kodak":
        body += [kodak_anchor_section(all_results), ""]
    elif dataset == "cifar10":
        body += [cifar_anchor_section(measured), ""]
    for codec, m in measured.items():
        spec = codec.spec
        body += [f"## {spec.label}", "", f"Settings: {spec.settings}. Control (`quality`): {spec.control}. "
                 f"File: `classic-{codec.value}.json`.", "", codec_table(m, all_results[codec]), ""]
    title = f"Classic codecs on {dataset}" + (" (quick smoke test)" if quick else "")
    written.append(report.write_markdown(out / "classic.md", title, "\n".join(body), prov))
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, choices=["cifar10", "kodak"])
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--codecs", nargs="+", choices=[c.value for c in Codec], default=None,
                    help="default: every codec available here")
    ap.add_argument("--quick", action="store_true", help="2–3 images, 3 qualities per codec (a smoke test)")
    ap.add_argument("--replot", action="store_true", help="redraw classic.png from the classic-*.json files only")
    args = ap.parse_args(argv)
    if args.replot:
        print(f"wrote {replot(args.dataset, args.quick).relative_to(report.ROOT)}")
        return 0

    import time

    import torch

    torch.set_num_threads(1)  # MS-SSIM; the machine is shared and the codecs are single-threaded
    load_avg = os.getloadavg()
    t0 = time.perf_counter()
    quick_n = QUICK_IMAGES[args.dataset]
    limit = min(args.limit or quick_n, quick_n) if args.quick else args.limit
    images = datasets.load(args.dataset, limit=limit)
    wanted = [Codec(c) for c in args.codecs] if args.codecs else list(LOSSY)
    codecs, skipped = [], []
    for codec in wanted:
        if codec.available():
            codecs.append(codec)
        else:
            skipped.append(f"{codec.spec.label} ({codec.spec.plugin or codec.spec.feature} not available)")
    measured = {}
    for codec in codecs:
        measured[codec] = measure(codec, images, progress=not args.quick, quick=args.quick)
        res = measured[codec].results()
        print(f"{codec.value:9s} {len(res['bpp'])} settings, bpp {min(res['bpp']):.3f}–{max(res['bpp']):.3f}, "
              f"PSNR {min(res['psnr-rgb']):.2f}–{max(res['psnr-rgb']):.2f} dB", flush=True)
    written = write_reports(args.dataset, images, measured, skipped, args.quick, time.perf_counter() - t0, load_avg)
    for path in written:
        print(f"wrote {path.relative_to(report.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
