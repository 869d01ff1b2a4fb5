"""Lossless CIFAR-10: diffcodec at full rate against PNG, WebP lossless and JPEG XL lossless.

Bits per dimension = file bytes·8 / (3·H·W), headers included, averaged over images.

  classic    PNG (zlib 9, optimize), WebP lossless (method 6) and JPEG XL lossless (effort 9)
             on the first ``--limit`` CIFAR-10 test images (default all 1,017) and on the
             images diffcodec covers; every file is decoded again and must equal the source
             (the run stops otherwise). ``--kodak`` adds the 24 Kodak images (classic only).
  diffcodec  the ``.ddc`` files of ``--ddc-dir`` (``cifar10-test-NNNN.ddc``, NNNN = test index),
             each decoded with the model and compared with the source pixels; the report counts
             the exact ones. With ``--quick`` two images are first encoded into a temporary
             folder with a fast setting (2^4 candidates, 2-bit chunks, full rate).
  bound      the model's T = 1000 negative log-likelihood bound from ``--bound``
             (``benchmarks/results/cifar10/nll_default.json``) if that file exists, on all its
             images and on the images diffcodec covers.

Usage:
  python -m benchmarks.lossless                      # files of benchmarks/results/cifar10/ddc-default/
  python -m benchmarks.lossless --quick              # 2 diffcodec encodes, 3 images: a smoke test
  python -m benchmarks.lossless --ddc-dir DIR --kodak

Writes ``lossless-<model>.json`` (one entry per codec and image set, as parallel lists),
``lossless-<model>.png`` and ``lossless-<model>.md`` into ``benchmarks/results/cifar10/`` (``results/quick/cifar10/`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import datasets, report
from .common.pillow_codecs import LosslessCodec, roundtrip
from .common.practice import encode_missing

DDC_NAME = re.compile(r"cifar10-test-(\d{4})\.ddc$")
REFERENCE_CIFAR = {LosslessCodec.PNG: 5.87, LosslessCodec.WEBP: 4.71, LosslessCodec.JXL: 4.08}  # 1,017 images
PAPER_BOUND = 3.75  # the DDPM paper's CIFAR-10 test bound
QUICK_CLASSIC_IMAGES = 3
QUICK_DDC_IMAGES = 2
DIFFCODEC = "diffcodec"


@dataclass
class Row:
    """One codec on one image set."""

    codec: str
    label: str
    dataset: str
    image_set: str
    indices: list[int]
    bits_per_dim: list[float]  # per image
    encode_s: list[float | None]
    decode_s: list[float]
    exact: list[bool]
    settings: str = ""

    def mean(self, values) -> float | None:
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    def subset(self, indices: list[int], image_set: str) -> "Row":
        pos = {i: k for k, i in enumerate(self.indices)}
        pick = lambda a: [a[pos[i]] for i in indices]  # noqa: E731
        return Row(self.codec, self.label, self.dataset, image_set, list(indices), pick(self.bits_per_dim),
                   pick(self.encode_s), pick(self.decode_s), pick(self.exact), self.settings)


def bits_per_dim(nbytes: int, rgb: np.ndarray) -> float:
    h, w = rgb.shape[:2]
    return nbytes * 8 / (3 * h * w)


def classic_row(codec: LosslessCodec, images: list[datasets.EvalImage], indices: list[int], dataset: str,
                image_set: str, progress: bool) -> Row:
    """Encode and decode every image; raise if one does not come back exactly."""
    spec = codec.spec
    roundtrip(spec, images[0].rgb)  # warm-up
    row = Row(codec.value, spec.label, dataset, image_set, list(indices), [], [], [], [], spec.settings)
    for im in _bar(images, codec.value, progress):
        coded = roundtrip(spec, im.rgb)
        if not np.array_equal(coded.decoded, im.rgb):
            raise RuntimeError(f"{spec.label} did not decode {im.name} exactly")
        row.bits_per_dim.append(bits_per_dim(coded.nbytes, im.rgb))
        row.encode_s.append(coded.encode_s)
        row.decode_s.append(coded.decode_s)
        row.exact.append(True)
    return row


@dataclass
class DdcFiles:
    paths: dict[int, Path]  # test index -> file
    encode_s: dict[int, float] = field(default_factory=dict)  # only when encoded here


def find_ddc(folder: Path) -> DdcFiles:
    paths = {}
    for p in sorted(Path(folder).glob("cifar10-test-*.ddc")):
        m = DDC_NAME.search(p.name)
        if m:
            paths[int(m.group(1))] = p
    return DdcFiles(paths)


def quick_encode(images: list[datasets.EvalImage], model, folder: Path) -> DdcFiles:
    """Encode the first images at full rate with a fast setting (for ``--quick``)."""
    from diffcodec.codec import CodecConfig

    seconds = encode_missing(images, folder, model.name, CodecConfig(log2_candidates=4, chunk_bits=2.0), workers=1)
    files = find_ddc(folder)
    files.encode_s.update({index: seconds[images[index].name] for index in files.paths})
    return files


def diffcodec_row(files: DdcFiles, images: list[datasets.EvalImage], model, progress: bool) -> tuple[Row, list]:
    """Decode every file, compare with the source; also return the distinct header settings."""
    from diffcodec.codec import decompress, describe

    indices = [i for i in sorted(files.paths) if i < len(images)]
    if len(indices) < len(files.paths):
        print(f"ignored {len(files.paths) - len(indices)} files whose index is beyond the {len(images)} images",
              file=sys.stderr)
    row = Row(DIFFCODEC, "diffcodec (full rate)", "cifar10", "diffcodec", indices, [], [], [], [])
    settings = []
    for index in _bar(indices, DIFFCODEC, progress):
        data = files.paths[index].read_bytes()
        rgb = images[index].rgb
        header = describe(data)["header"]
        setting = {k: header[k] for k in ("variance", "layout", "t_stop", "groups", "log2_candidates", "chunk_bits")}
        if setting not in settings:
            settings.append(setting)
        t0 = time.perf_counter()
        dec = decompress(data, model)
        row.decode_s.append(time.perf_counter() - t0)
        row.encode_s.append(files.encode_s.get(index))
        row.bits_per_dim.append(bits_per_dim(len(data), rgb))
        row.exact.append(bool(dec.image.rgb.shape == rgb.shape and np.array_equal(dec.image.rgb, rgb)))
    row.settings = "; ".join(", ".join(f"{k} {v}" for k, v in s.items()) for s in settings)
    return row, settings


def read_bound(path: Path, indices: list[int] | None) -> dict[str, dict]:
    """The model's bound per reverse variance: on all its images and on ``indices``."""
    doc = json.loads(Path(path).read_text())
    out = {}
    for variance, b in doc.get("by_variance", {}).items():
        if "per_image_rate_bits_per_dim" not in b:  # a bound added to a stored one holds means only
            out[variance] = {"all": float(b["total_bits_per_dim"]), "images": doc.get("images")}
            continue
        per_image = np.add(b["per_image_rate_bits_per_dim"], b["per_image_distortion_bits_per_dim"])
        entry = {"all": float(b["total_bits_per_dim"]), "images": len(per_image), "device": doc.get("device")}
        if indices and max(indices) < len(per_image):
            entry["subset"] = float(per_image[indices].mean())
        out[variance] = entry
    if not out and "total_bits_per_dim" in doc:
        out[doc.get("variance", "?")] = {"all": float(doc["total_bits_per_dim"]), "images": doc.get("images")}
    return out


def _bar(items, label: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="img", file=sys.stderr, leave=False)


# ----------------------------------------------------------------------------- reports

def _f(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def results_lists(rows: list[Row]) -> dict[str, list]:
    return {"codec": [r.codec for r in rows], "label": [r.label for r in rows],
            "dataset": [r.dataset for r in rows], "image_set": [r.image_set for r in rows],
            "images": [len(r.indices) for r in rows],
            "bits_per_dim": [r.mean(r.bits_per_dim) for r in rows],
            "bpp": [3 * r.mean(r.bits_per_dim) for r in rows],
            "encoding_time": [r.mean(r.encode_s) for r in rows], "decoding_time": [r.mean(r.decode_s) for r in rows],
            "exact": [int(sum(r.exact)) for r in rows]}


def plot(rows: list[Row], bound: dict, path: Path) -> Path:
    fig, axes = report.figure(1, 1, size=(7.5, 4.4))
    ax = axes[0, 0]
    sets = [s for s in ("all", "diffcodec") if any(r.image_set == s and r.dataset == "cifar10" for r in rows)]
    labels = list(dict.fromkeys(r.label for r in rows if r.dataset == "cifar10"))
    width = 0.8 / len(sets)
    for k, s in enumerate(sets):
        by_label = {r.label: r for r in rows if r.dataset == "cifar10" and r.image_set == s}
        xs = [i + (k - (len(sets) - 1) / 2) * width for i, lab in enumerate(labels) if lab in by_label]
        ys = [by_label[lab].mean(by_label[lab].bits_per_dim) for lab in labels if lab in by_label]
        n = len(next(iter(by_label.values())).indices)
        bars = ax.bar(xs, ys, width, label=f"{'first' if s == 'all' else 'diffcodec subset,'} {n} images")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    for codec, value in REFERENCE_CIFAR.items():
        if codec.spec.label in labels:
            ax.plot(labels.index(codec.spec.label), value, "kx", ms=8)
    ax.plot([], [], "kx", label="reference (1,017 images)")
    for variance, b in bound.items():
        ax.axhline(b.get("subset", b["all"]), ls="--", lw=1, color="grey" if variance == "fixedlarge" else "tab:red",
                   label=f"model bound, {variance} ({'subset' if 'subset' in b else 'all images'})")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set(ylabel="bits per dimension (file bytes, headers included)", title="Lossless CIFAR-10")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return report.save_figure(fig, path)


def markdown_body(rows: list[Row], bound: dict, ddc_settings: list, ddc_source: str, n_all: int, tag: str = "") -> str:
    cifar_all = {r.codec: r for r in rows if r.dataset == "cifar10" and r.image_set == "all"}
    cifar_sub = {r.codec: r for r in rows if r.dataset == "cifar10" and r.image_set == "diffcodec"}
    n_sub = len(next(iter(cifar_sub.values())).indices) if cifar_sub else 0
    table_rows = []
    for codec in [c.value for c in LosslessCodec] + [DIFFCODEC]:
        a, s = cifar_all.get(codec), cifar_sub.get(codec)
        r = a or s
        if r is None:
            continue
        notes = next((v for c, v in REFERENCE_CIFAR.items() if c.value == codec), None)
        mean_all = a.mean(a.bits_per_dim) if a else None
        table_rows.append([
            r.label, r.settings, _f(mean_all), _f(notes, 2),
            "—" if mean_all is None or notes is None else f"{mean_all - notes:+.3f}",
            _f(s.mean(s.bits_per_dim)) if s else "—",
            f"{sum(r.exact)}/{len(r.exact)}",
            _f(_ms(r.mean(r.encode_s)), 1), _f(_ms(r.mean(r.decode_s)), 1)])
    for variance, b in bound.items():
        name = {"fixedlarge": "σ² = β", "fixedsmall": "σ² = β̃", "optimal": "σ² = σ*²"}.get(variance, variance)
        table_rows.append([f"model bound ({variance}, {name})", f"T = 1000 NLL, {b['images']} images",
                           _f(b["all"]) if b["images"] == n_all else f"{_f(b['all'])} ({b['images']} images)",
                           f"{PAPER_BOUND:.2f} (paper's model)", "—", _f(b.get("subset")), "—", "—", "—"])
    header = ["codec", "settings", f"bits/dim, first {n_all}", "reference (1,017)", "Δ vs reference",
              f"bits/dim, diffcodec subset ({n_sub})", "exact", "encode ms/img", "decode ms/img"]
    lines = [
        "Bits per dimension = file bytes·8 / (3·H·W), headers included, mean over images. Every classic file "
        "was decoded again and equals its source bit for bit (the benchmark stops otherwise); each diffcodec "
        "file was decoded with the model and compared with the source pixels ('exact' counts those equal).",
        "", f"diffcodec files: {ddc_source}.", "", report.table(header, table_rows), ""]
    if cifar_sub:
        dc = cifar_sub.get(DIFFCODEC)
        if dc is not None:
            idx = dc.indices
            lines += [f"diffcodec subset: test indices {_ranges(idx)} ({len(idx)} images); exact decodes "
                      f"{sum(dc.exact)}/{len(dc.exact)}. Header settings: "
                      + ("; ".join(json.dumps(s) for s in ddc_settings) or "—") + ".", ""]
    if bound:
        device = next((b["device"] for b in bound.values() if b.get("device")), None)
        lines += ["Model bound: from the NLL evaluation file (per-image rate + distortion"
                  + (f"; computed on {device}" if device else "") + "); the codec's files "
                  "use the reverse variance named in their header (posterior = β̃ = fixedsmall, beta = β = "
                  "fixedlarge, optimal = the model's σ*², whose bound is stored as a mean over all images only) "
                  "and a respaced chain, so the bound is a reference, not the codec's own ideal.", ""]
        dc, beta = cifar_sub.get(DIFFCODEC), bound.get("fixedlarge", {})
        if dc is not None and beta.get("subset"):
            files = dc.mean(dc.bits_per_dim)
            lines += [f"On the diffcodec subset the files take {files:.3f} bits/dim = {files / beta['subset']:.3f} × "
                      f"the bound of the same images (σ² = β, {beta['subset']:.3f}).", ""]
    kodak = [r for r in rows if r.dataset == "kodak"]
    if kodak:
        lines += ["## Kodak (classic codecs only)", "",
                  report.table(["codec", "settings", f"bits/dim ({len(kodak[0].indices)} images)", "exact",
                                "encode ms/img", "decode ms/img"],
                               [[r.label, r.settings, _f(r.mean(r.bits_per_dim)), f"{sum(r.exact)}/{len(r.exact)}",
                                 _f(_ms(r.mean(r.encode_s)), 1), _f(_ms(r.mean(r.decode_s)), 1)] for r in kodak]), ""]
    lines += [f"![lossless](lossless{tag}.png)", ""]
    return "\n".join(lines)


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


def _ranges(indices: list[int]) -> str:
    parts, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            parts.append(f"{start}" if start == i else f"{start}–{i}")
            start = None
    return ", ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ddc-dir", type=Path, default=None, help="the model's full-rate files (default: "
                    "results/cifar10/ddc-<model>, as rd_curve writes them)")
    ap.add_argument("--limit", type=int, default=None, help="classic codecs on the first N images (default all)")
    ap.add_argument("--kodak", action="store_true", help="also the classic codecs on Kodak")
    ap.add_argument("--bound", type=Path, default=None, help="the model's bound (default: results/cifar10/"
                    "nll_<model>.json, else nll_<model>_first100.json)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--quick", action="store_true", help="encode 2 images fast, classic on 3: a smoke test")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from diffcodec.checkpoint import load_model

    tag = report.model_tag(args.model)
    if args.ddc_dir is None:
        args.ddc_dir = report.RESULTS / "cifar10" / f"ddc{tag}"
    if args.bound is None:
        whole = report.RESULTS / "cifar10" / f"nll_{args.model}.json"
        args.bound = whole if whole.is_file() else report.RESULTS / "cifar10" / f"nll_{args.model}_first100.json"
    load_avg = os.getloadavg()
    progress = not args.quick
    images = datasets.load("cifar10")
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            files = quick_encode(images[:QUICK_DDC_IMAGES], model, Path(tmp))
            ddc_source = (f"{QUICK_DDC_IMAGES} images encoded by this run (CodecConfig(log2_candidates=4, "
                          "chunk_bits=2.0), Stop() = full rate)")
        else:
            files = find_ddc(args.ddc_dir)
            ddc_source = f"{len(files.paths)} files in `{_rel(args.ddc_dir)}`"
        dc_row, ddc_settings = diffcodec_row(files, images, model, progress) if files.paths else (None, [])

    n_all = min(args.limit or len(images), QUICK_CLASSIC_IMAGES if args.quick else len(images))
    sub_idx = dc_row.indices if dc_row else []
    union = sorted(set(range(n_all)) | set(sub_idx))
    rows = []
    for codec in LosslessCodec:
        if not codec.available():
            print(f"{codec.spec.label}: not available here, skipped", file=sys.stderr)
            continue
        full = classic_row(codec, [images[i] for i in union], union, "cifar10", "union", progress)
        rows.append(full.subset(list(range(n_all)), "all"))
        if sub_idx:
            rows.append(full.subset(sub_idx, "diffcodec"))
    if dc_row:
        rows.append(dc_row)
    if args.kodak:
        kodak = datasets.load("kodak", limit=2 if args.quick else None)
        rows += [classic_row(c, kodak, list(range(len(kodak))), "kodak", "all", progress)
                 for c in LosslessCodec if c.available()]
    bound = read_bound(args.bound, sub_idx) if args.bound.is_file() else {}

    out = report.results_dir("cifar10", args.quick)
    model_text = (f"diffcodec model '{model.name}' (weights sha256 {model.weights_sha256[:12]}…); "
                  f"classic codecs through Pillow")
    data = datasets.describe("cifar10", n_all) + (f"; diffcodec subset {len(sub_idx)} images" if sub_idx else "")
    if args.kodak:
        data += "; " + datasets.describe("kodak", len([r for r in rows if r.dataset == "kodak"][0].indices))
    device = (f"{report.device_description()}; one thread; load average {load_avg[0]:.1f} on "
              f"{os.cpu_count()} cores when the run started")
    prov = report.Provenance(data=data, model=model_text, device=device)
    written = [
        report.write_compressai(
            out / f"lossless{tag}.json", "lossless",
            "Lossless coding of CIFAR-10 test images: diffcodec at full rate vs PNG, WebP lossless, JPEG XL "
            "lossless; bits/dim from real file bytes, headers included; one entry per (codec, image set).",
            results_lists(rows), prov, reference_figures={c.value: v for c, v in REFERENCE_CIFAR.items()},
            bound=bound, diffcodec_settings=ddc_settings,
            diffcodec_indices=sub_idx),
        plot(rows, bound, out / f"lossless{tag}.png")]
    written.append(report.write_markdown(out / f"lossless{tag}.md", "Lossless CIFAR-10" + (" (quick smoke test)" if args.quick else ""),
                                         markdown_body(rows, bound, ddc_settings, ddc_source, n_all, tag), prov))
    for r in rows:
        print(f"{r.label:24s} {r.dataset:8s} {r.image_set:10s} n={len(r.indices):5d} "
              f"{r.mean(r.bits_per_dim):.3f} bits/dim, exact {sum(r.exact)}/{len(r.exact)}")
    for path in written:
        print(f"wrote {path.relative_to(report.ROOT)}")
    return 0


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(report.ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
