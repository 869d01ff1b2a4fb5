"""Training and evaluation data: CIFAR-10 python batches and folders of images.

Images are uint8 tensors shaped (C, H, W) (or (N, C, H, W) for a stack); :func:`to_model_range`
maps {0..255} to [−1, 1] as the paper does. Batch sources draw random batches of a fixed
size from memory with a torch generator, so training is reproducible and needs no workers.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import DataError

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 {0..255} → float32 [−1, 1]."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → nearest of the 256 levels, uint8."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)


# ---- CIFAR-10 ------------------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batch format and refuses every other global (no code execution)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read CIFAR batch {path}: {e.strerror or e}") from None
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a corrupt or foreign file
        raise DataError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 python batch (missing b'data' or b'labels')")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {getattr(data, 'shape', type(data))}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: b'labels' must be a list of integers") from None
    if labels.ndim != 1 or len(labels) != data.shape[0]:
        raise DataError(f"{path}: {labels.size} labels of shape {labels.shape} for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def find_cifar_dir(root: Path) -> Path | None:
    """The folder holding the batch files: ``root`` itself or ``root/cifar-10-batches-py``."""
    root = Path(root)
    for cand in (root, root / CIFAR_DIR):
        if (cand / "test_batch").is_file() or (cand / "data_batch_1").is_file():
            return cand
    return None


def load_cifar10(root: Path, split: str = "train") -> torch.Tensor:
    """All images of a split ('train' or 'test') as uint8 (N, 3, 32, 32)."""
    names = {"train": CIFAR_TRAIN, "test": CIFAR_TEST}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = find_cifar_dir(root)
    if folder is None:
        raise DataError(f"no CIFAR-10 python batches in {root} (expected {CIFAR_DIR}/test_batch or data_batch_*)")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)}")
    return torch.from_numpy(np.concatenate([read_cifar_batch(folder / n)[0] for n in names]))


# ---- image files -----------------------------------------------------------------------------
def read_image(path: Path) -> torch.Tensor:
    """An image file → uint8 RGB (3, H, W)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such image file: {path}")
    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16"):  # 16-bit greyscale: convert("RGB") would clip, not scale
                grey = np.round(np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
                rgb = np.repeat(grey[:, :, None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable image ({e})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"no such folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def load_eval_images(source: Path, limit: int | None = None) -> torch.Tensor:
    """Evaluation images as uint8 (N, 3, H, W): a CIFAR folder (its test split), an image
    folder (all images must share one size) or a single image file."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"no such file or folder: {source}")
    if source.is_dir() and find_cifar_dir(source) is not None:
        images = load_cifar10(source, "test")
    elif source.is_dir():
        files = list_images(source)[:limit]  # read only the files that are used
        stack = [read_image(f) for f in files]
        if len({tuple(im.shape) for im in stack}) != 1:
            raise DataError(f"images in {source} differ in size; crop them to one size first")
        images = torch.stack(stack)
    else:
        images = read_image(source)[None]
    return images[:limit] if limit is not None else images


# ---- random batches for training -------------------------------------------------------------
def random_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ½ (draws on the batch's device)."""
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < 0.5
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


class ArraySource:
    """Whole images drawn uniformly from a stack (N, C, S, S), with random horizontal flips.

    Batches are drawn where the stack lives, with a generator on that device: a stack moved to
    a GPU with :meth:`to` yields batches there without a transfer or a wait. On the CPU the
    draws are those of a CPU generator; on another device they follow that device's generator.
    """

    def __init__(self, images: torch.Tensor):
        if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[2] != images.shape[3]:
            raise ValueError(f"expected square uint8 images (N, C, S, S), got {tuple(images.shape)} {images.dtype}")
        self.images = images
        self.size = images.shape[-1]

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()

    def to(self, device: torch.device) -> "ArraySource":
        """The same images on ``device``."""
        return ArraySource(self.images.to(device))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, self.images.shape[0], (n,), generator=generator, device=self.images.device)
        return random_flip(self.images[idx], generator)


class CropSource:
    """Random square crops of large images, downscaled by a random factor, randomly flipped.

    A crop covers ``size / scale`` source pixels with ``scale`` log-uniform in
    [min_scale, 1] and is resized to ``size`` with an antialiased filter.
    """

    def __init__(self, images: list[torch.Tensor], size: int, min_scale: float = 1.0):
        if not images:
            raise ValueError("CropSource needs at least one image")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        small = [tuple(im.shape[1:]) for im in images if min(im.shape[1:]) < size]
        if small:
            raise DataError(f"images smaller than the {size}-pixel crop: {small[:3]}")
        self.images, self.size, self.min_scale = images, size, min_scale

    def _crop(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = image.shape[1:]
        log_lo = float(np.log(max(self.min_scale, self.size / min(h, w))))
        scale = float(torch.exp(torch.empty(()).uniform_(log_lo, 0.0, generator=generator))) if log_lo < 0 else 1.0
        side = min(int(round(self.size / scale)), h, w)
        top = int(torch.randint(0, h - side + 1, (), generator=generator))
        left = int(torch.randint(0, w - side + 1, (), generator=generator))
        crop = image[:, top : top + side, left : left + side]
        if side == self.size:
            return crop
        resized = F.interpolate(crop[None].float(), size=(self.size, self.size), mode="bilinear", antialias=True)
        return resized[0].round().clamp(0, 255).to(torch.uint8)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(self.images), (n,), generator=generator)
        return random_flip(torch.stack([self._crop(self.images[int(i)], generator) for i in idx]), generator)


class MixedSource:
    """Each batch element comes from source i with probability weight_i / Σ weights."""

    def __init__(self, sources: list, weights: list[float]):
        if not sources or len(sources) != len(weights) or min(weights) <= 0:
            raise ValueError("need one positive weight per source")
        if len({s.size for s in sources}) != 1:
            raise ValueError("all sources must produce the same image size")
        self.sources, self.size = sources, sources[0].size
        self.probs = torch.tensor(weights, dtype=torch.float64) / sum(weights)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        which = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        counts = torch.bincount(which, minlength=len(self.sources)).tolist()
        batch = torch.cat([s.sample(c, generator) for s, c in zip(self.sources, counts) if c])
        return batch[torch.randperm(n, generator=generator)]


@dataclass
class DataConfig:
    """Where training images come from. Paths are stored as given, for the record."""

    cifar: list[str] = field(default_factory=list)  # folders with CIFAR-10 python batches (train split)
    folders: list[str] = field(default_factory=list)  # folders of images for random crops
    crop_size: int = 32
    min_scale: float = 1.0  # crops are downscaled by a factor in [min_scale, 1]
    folder_weight: float = 0.5  # share of folder crops in a batch when both kinds are given

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("cifar", "folders", "crop_size", "min_scale", "folder_weight")}

    def build(self):
        if not self.cifar and not self.folders:
            raise DataError("no training data: give at least one CIFAR-10 folder or image folder")
        sources, weights = [], []
        if self.cifar:
            images = torch.cat([load_cifar10(Path(c), "train") for c in self.cifar])
            if self.crop_size != 32:
                raise DataError("CIFAR-10 images are 32×32: use crop_size 32 with CIFAR data")
            sources.append(ArraySource(images))
            weights.append(1.0 - self.folder_weight if self.folders else 1.0)
        if self.folders:
            images = [read_image(p) for f in self.folders for p in list_images(Path(f))]
            sources.append(CropSource(images, self.crop_size, self.min_scale))
            weights.append(self.folder_weight if self.cifar else 1.0)
        return sources[0] if len(sources) == 1 else MixedSource(sources, weights)
