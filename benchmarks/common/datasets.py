"""The evaluation images of the reports, as uint8 (H, W, 3) arrays with a name each.

cifar10: CIFAR-10 test, first 1,017 images (all the subset holds), in file order.
kodak:   the 24 Kodak PhotoCD images (768×512 or 512×768).
``crop`` gives centre crops (same pixels for every codec in a comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .report import ROOT

SHARED_DATA = ROOT.parent / "shared" / "data"
DESCRIPTIONS = {
    "cifar10": "CIFAR-10 test, first {n} images ({of}) from ../shared/data/cifar-10-subset",
    "kodak": "Kodak PhotoCD, {n} of 24 images from ../shared/data/kodak",
}


@dataclass(frozen=True)
class EvalImage:
    name: str
    rgb: np.ndarray  # uint8 (H, W, 3)


def load(dataset: str, limit: int | None = None, crop: int | None = None,
         data_root: Path = SHARED_DATA) -> list[EvalImage]:
    if dataset == "cifar10":
        from diffcodec.data import load_cifar10

        arrays = load_cifar10(data_root / "cifar-10-subset", "test")[:limit].permute(0, 2, 3, 1).numpy()
        images = [EvalImage(f"cifar10-test-{i:04d}", np.ascontiguousarray(a)) for i, a in enumerate(arrays)]
    elif dataset == "kodak":
        from PIL import Image

        files = sorted((data_root / "kodak").glob("kodim*.png"))[:limit]
        if not files:
            raise FileNotFoundError(f"no Kodak images in {data_root / 'kodak'}")
        images = [EvalImage(f.stem, np.asarray(Image.open(f).convert("RGB"))) for f in files]
    else:
        raise ValueError(f"unknown dataset {dataset!r} (cifar10, kodak)")
    if crop is not None:
        images = [EvalImage(f"{im.name}-c{crop}", centre_crop(im.rgb, crop)) for im in images]
    return images


def centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop {size} larger than the image ({w}×{h})")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def five_crops(rgb: np.ndarray, size: int) -> list[np.ndarray]:
    """The centre crop, then the crops centred on each quadrant's centre (same pixels every run)."""
    h, w = rgb.shape[:2]
    crops = [centre_crop(rgb, size)]
    for cy in (h // 4, 3 * h // 4):
        for cx in (w // 4, 3 * w // 4):
            top, left = max(0, cy - size // 2), max(0, cx - size // 2)
            crops.append(np.ascontiguousarray(rgb[top:top + size, left:left + size]))
    return crops


def describe(dataset: str, n: int, crop: int | None = None) -> str:
    of = "all the subset holds; the paper used the full 10,000" if n >= 1017 else "of the subset's 1,017"
    text = DESCRIPTIONS[dataset].format(n=f"{n:,}", of=of)
    return text + (f", centre crops {crop}×{crop}" if crop else "")
