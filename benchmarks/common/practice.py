"""Real ``.ddc`` files of the report's images and what every prefix of them decodes to.

A full-rate file holds every operating point of the codec: the prefix that ends with record r
is itself a valid, smaller file. For each image and each record this decodes that prefix (the
bytes a receiver would hold) with each reconstruction and measures bytes, PSNR, MS-SSIM, RMSE
and decoding seconds. Files are read from a folder (``<image name>.ddc``) or encoded into it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffcodec.codec import CodecConfig

from .datasets import EvalImage
from diffcodec.quality import ms_ssim_rgb, psnr_rgb


def worker_setup():
    """Pool initializer: one thread per process for torch and numba (one process per core)."""
    import torch

    torch.set_num_threads(1)
    import numba

    numba.set_num_threads(1)  # one process per core: no nested threads


def _encode(job):
    image, model_name, config, upto_t, path = job
    from bitstream.container import ImageMode
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import Stop, compress
    from diffcodec.images import CodecImage

    model = load_model(model_name)
    t0 = time.perf_counter()
    enc = compress(CodecImage(image.rgb, ImageMode.RGB), model, config, Stop(upto_t=upto_t))
    seconds = time.perf_counter() - t0
    path.write_bytes(enc.data)
    return image.name, seconds


def encode_missing(images: list[EvalImage], folder: Path, model_name: str, config: CodecConfig,
                   upto_t: int | None = None, workers: int = 2) -> dict[str, float]:
    """Encode the images that have no file in ``folder`` yet (to ``upto_t``, default full
    rate); returns encode seconds by name."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(im, model_name, config, upto_t, folder / f"{im.name}.ddc") for im in images
            if not (folder / f"{im.name}.ddc").exists()]
    seconds = {}
    if not jobs:
        return seconds
    with mp.get_context("spawn").Pool(workers, initializer=worker_setup) as pool:
        for name, s in tqdm(pool.imap(_encode, jobs), total=len(jobs), desc="encode", unit="image"):
            seconds[name] = s
    return seconds


def _decode_prefixes(job):
    image, data, model_name, how_list, flow_steps = job
    from diffcodec.checkpoint import load_model
    from diffcodec.codec import decompress, describe
    from diffcodec.reconstruct import Reconstruction

    model = load_model(model_name)
    info = describe(data)
    end = info["header_bytes"]
    points = []
    for rec in info["records"]:
        end += rec["bytes"]
        prefix = data[:end]
        point = {"record": rec["record"], "bytes": end, "content": rec["content"]}
        for how in how_list:
            t0 = time.perf_counter()
            dec = decompress(prefix, model, None, Reconstruction(how), steps=flow_steps)
            seconds = time.perf_counter() - t0
            rgb = dec.image.rgb
            err = rgb.astype(np.float64) - image.rgb
            point["t"] = dec.t
            point[how] = {"psnr": psnr_rgb(image.rgb, rgb), "ms_ssim": ms_ssim_rgb(image.rgb, rgb),
                          "mse": float(np.mean(err**2)), "decode_s": seconds,
                          "exact": bool(not err.any())}
            if dec.t == 0:  # the lossless record: every reconstruction is the same pixels
                break
        points.append(point)
    return image.name, points


def decode_prefixes(images: list[EvalImage], folder: Path, model_name: str,
                    how: tuple[str, ...] = ("mean", "flow"), flow_steps: int = 50,
                    workers: int = 2) -> dict[str, list[dict]]:
    """For every image with a file in ``folder``: a list over records of the prefix ending
    there — its bytes, t, and per reconstruction PSNR, MS-SSIM, MSE and decode seconds.

    Results are kept in ``folder/decoded.json`` keyed by file content, model, reconstructions
    and flow steps, so reports that share files decode them once."""
    cache_file = folder / "decoded.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    found, jobs, keys = {}, [], {}
    for im in images:
        path = folder / f"{im.name}.ddc"
        if not path.exists():
            continue
        data = path.read_bytes()
        key = hashlib.sha256(data + f"|{model_name}|{','.join(how)}|{flow_steps}".encode()).hexdigest()
        keys[im.name] = key
        if cache.get(im.name, {}).get("key") == key:
            found[im.name] = cache[im.name]["points"]
        else:
            jobs.append((im, data, model_name, how, flow_steps))
    if not keys:
        raise FileNotFoundError(f"no .ddc files for these images in {folder}")
    if jobs:
        with mp.get_context("spawn").Pool(workers, initializer=worker_setup) as pool:
            for name, points in tqdm(pool.imap(_decode_prefixes, jobs), total=len(jobs), desc="decode prefixes",
                                     unit="image"):
                found[name] = points
                cache[name] = {"key": keys[name], "points": points}
        cache_file.write_text(json.dumps(cache) + "\n")
    return {im.name: found[im.name] for im in images if im.name in found}


def operating_points(per_image: dict[str, list[dict]], how: str, pixels: int) -> list[dict]:
    """Data-set means per record (lossy records only; all images must share the plan): bpp
    from real bytes, mean PSNR and MS-SSIM over images, RMSE as √(mean MSE), decode seconds."""
    lists = list(per_image.values())
    if len({len(p) for p in lists}) != 1 or len({tuple(q["t"] for q in p) for p in lists}) != 1:
        raise ValueError("the files do not share one record plan; encode them with the same settings")
    rows = []
    for r, first in enumerate(lists[0]):
        if first["t"] == 0:
            continue
        at = [p[r] for p in lists]
        rows.append({
            "t": first["t"], "record": first["record"],
            "bpp": float(np.mean([q["bytes"] * 8 / pixels for q in at])),
            "psnr": float(np.mean([q[how]["psnr"] for q in at])),
            "ms_ssim": float(np.mean([q[how]["ms_ssim"] for q in at])),
            "rmse_0_255": float(np.sqrt(np.mean([q[how]["mse"] for q in at]))),
            "decode_s": float(np.median([q[how]["decode_s"] for q in at])),
        })
    return rows


def lossless_point(per_image: dict[str, list[dict]], pixels: int) -> dict:
    """The full-rate files: mean bpp and how many decoded bit for bit."""
    last = [p[-1] for p in per_image.values()]
    full = [q for q in last if q["t"] == 0]
    return {"files": len(last), "full_rate": len(full),
            "exact": sum(q["mean"]["exact"] for q in full),
            "bpp": float(np.mean([q["bytes"] * 8 / pixels for q in full])) if full else None}


def header_bytes(folder: Path, image: EvalImage) -> int:
    """The container header's size in the image's file (it varies with the format version)."""
    from bitstream.container import unpack

    return unpack((folder / f"{image.name}.ddc").read_bytes()).header_bytes
