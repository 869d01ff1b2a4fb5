"""Data loading: the CIFAR-10 python format (real subset, a synthetic full batch, corrupt and
malicious files), image files, and the random batch sources used for training."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffcodec.data import (
    ArraySource,
    CropSource,
    DataConfig,
    MixedSource,
    load_cifar10,
    load_eval_images,
    read_cifar_batch,
    read_image,
)
from diffcodec.errors import DataError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_ROOT = DATA / "cifar-10-subset"
CIFAR_DIR = CIFAR_ROOT / "cifar-10-batches-py"
PHOTOS = DATA / "photos"

needs_cifar = pytest.mark.skipif(not (CIFAR_DIR / "test_batch").is_file(),
                                 reason=f"CIFAR-10 subset not found at {CIFAR_DIR} (needs ../shared/data beside the checkout)")
needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(),
                                  reason=f"photos not found at {PHOTOS} (needs ../shared/data beside the checkout)")


def _raw_batch(path: Path) -> dict:
    """The trusted way to read a batch (plain pickle), as a reference for the loader."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


# ---- CIFAR-10: the real subset -------------------------------------------------------------
@needs_cifar
def test_cifar_subset_test_split_shape_and_dtype():
    images = load_cifar10(CIFAR_ROOT, "test")  # root or root/cifar-10-batches-py both work
    assert images.shape == (1017, 3, 32, 32)
    assert images.dtype == torch.uint8
    assert torch.equal(load_cifar10(CIFAR_DIR, "test"), images)
    assert torch.equal(load_eval_images(CIFAR_ROOT), images)


@needs_cifar
def test_cifar_pixel_layout_is_rgb_planes():
    raw = _raw_batch(CIFAR_DIR / "test_batch")
    images, labels = read_cifar_batch(CIFAR_DIR / "test_batch")
    # The first ten labels of the official test batch: cat, ship, ship, airplane, frog, frog,
    # automobile, frog, cat, automobile.
    assert labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert labels.dtype == np.int64 and labels.shape == (1017,)
    row = raw[b"data"][0]
    # Row layout: 1024 red values, then 1024 green, then 1024 blue, each row-major.
    assert torch.equal(torch.from_numpy(images[0]), torch.from_numpy(row.reshape(3, 32, 32)))
    assert images[0, 0, 0, :4].tolist() == row[0:4].tolist() == [158, 159, 165, 166]  # R, first pixels
    assert images[0, 1, 0, :4].tolist() == row[1024:1028].tolist() == [112, 111, 116, 118]  # G
    assert images[0, 2, 0, :4].tolist() == row[2048:2052].tolist() == [49, 47, 51, 53]  # B
    assert images[0, 0, 1, 0] == row[32]  # second row starts 32 values in
    np.testing.assert_array_equal(images.reshape(len(images), -1), raw[b"data"])


@needs_cifar
def test_cifar_subset_train_split():
    images = load_cifar10(CIFAR_ROOT, "train")
    assert images.shape == (5 * 1017, 3, 32, 32) and images.dtype == torch.uint8
    first = read_cifar_batch(CIFAR_DIR / "data_batch_1")[0]
    assert torch.equal(images[:1017], torch.from_numpy(first))
    source = DataConfig(cifar=[str(CIFAR_ROOT)]).build()
    assert isinstance(source, ArraySource) and source.images.shape[0] == 5085


# ---- CIFAR-10: synthetic files -------------------------------------------------------------
def _official_batch(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
    }


def test_cifar_full_size_official_format(tmp_path):
    batch = _official_batch(10_000)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    images, labels = read_cifar_batch(path)
    assert images.shape == (10_000, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(10_000, 3072), batch[b"data"])
    assert labels.tolist() == batch[b"labels"]
    loaded = load_cifar10(tmp_path, "test")
    assert loaded.shape == (10_000, 3, 32, 32)
    assert torch.equal(loaded, torch.from_numpy(images))


class _Evil:
    """Unpickling this runs ``os.system`` (what an unsafe loader would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _EvilEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def _corrupt_cases(tmp_path: Path) -> dict[str, bytes]:
    good = pickle.dumps(_official_batch(8), protocol=2)
    rng = np.random.default_rng(1)
    bad_shape = _official_batch(8)
    bad_shape[b"data"] = bad_shape[b"data"][:, :3000]
    bad_dtype = _official_batch(8)
    bad_dtype[b"data"] = bad_dtype[b"data"].astype(np.float32)
    bad_count = _official_batch(8)
    bad_count[b"labels"] = bad_count[b"labels"][:5]
    bad_labels = _official_batch(8)
    bad_labels[b"labels"] = 7
    bad_labels2 = _official_batch(8)
    bad_labels2[b"labels"] = [b"cat"] * 8
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "random bytes": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "random bytes after PROTO": b"\x80\x02" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "a list": pickle.dumps([1, 2, 3], protocol=2),
        "a dict without data": pickle.dumps({b"labels": [1]}, protocol=2),
        "str keys": pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, protocol=2),
        "wrong shape": pickle.dumps(bad_shape, protocol=2),
        "wrong dtype": pickle.dumps(bad_dtype, protocol=2),
        "3-d data": pickle.dumps({b"data": np.zeros((2, 3, 1024), np.uint8), b"labels": [0, 1]}, protocol=2),
        "label count": pickle.dumps(bad_count, protocol=2),
        "labels not a list": pickle.dumps(bad_labels, protocol=2),
        "labels not integers": pickle.dumps(bad_labels2, protocol=2),
        "os.system": pickle.dumps(_Evil(tmp_path / "pwned_system"), protocol=2),
        "os.system inside the dict": pickle.dumps({b"data": _Evil(tmp_path / "pwned_nested"), b"labels": []}, protocol=2),
        "builtins.eval": pickle.dumps(_EvilEval(tmp_path / "pwned_eval"), protocol=2),
        "os.system, protocol 5": pickle.dumps(_Evil(tmp_path / "pwned_p5"), protocol=5),
    }


CORRUPT = list(_corrupt_cases(Path("/nonexistent")))


@pytest.mark.parametrize("case", CORRUPT)
def test_cifar_corrupt_batch_raises_data_error_naming_file(tmp_path, case):
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir()
    path.write_bytes(_corrupt_cases(tmp_path)[case])
    with pytest.raises(DataError) as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(tmp_path, "test")
    # No pickle payload ran: nothing was created next to the batch.
    assert not list(tmp_path.glob("pwned*"))


def test_malicious_pickle_would_have_run(tmp_path):
    """Control for the test above: the payload is live under a plain pickle.load."""
    marker = tmp_path / "pwned_control"
    pickle.loads(pickle.dumps(_EvilEval(marker), protocol=2))
    assert marker.exists()


def test_cifar_missing_files(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10"):
        load_cifar10(tmp_path, "train")
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(_official_batch(2), protocol=2))
    with pytest.raises(DataError, match="data_batch_2"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(DataError, match="cannot read"):
        read_cifar_batch(tmp_path / "absent")
    with pytest.raises(ValueError):
        load_cifar10(tmp_path, "validation")


# ---- image files ---------------------------------------------------------------------------
def test_read_png_rgb_gray_rgba(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # H=12, W=20
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    out = read_image(tmp_path / "rgb.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 12, 20)
    assert torch.equal(out, torch.from_numpy(rgb).permute(2, 0, 1))

    gray = rng.integers(0, 256, (12, 20), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 12, 20)
    for c in range(3):
        assert torch.equal(out[c], torch.from_numpy(gray))

    rgba = np.concatenate([rgb, rng.integers(0, 256, (12, 20, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 12, 20)
    assert torch.equal(out, torch.from_numpy(rgb).permute(2, 0, 1))  # alpha dropped, colour kept

    Image.fromarray(rgb[:, :, 0], "L").convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png").shape == (3, 12, 20)


def test_read_16bit_grayscale_png_scales_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # really stored as 16 bits
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 1, 4)
    assert out[0, 0].tolist() == [0, 1, 128, 255]
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_read_image_errors(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(DataError, match="notes.png"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError):
        read_image(tmp_path)  # a folder
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated.png"):
        read_image(tmp_path / "truncated.png")


def test_load_eval_images_folder(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
    images = load_eval_images(tmp_path, limit=2)
    assert images.shape == (2, 3, 8, 8) and images[1].max() == 1
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(DataError, match="differ in size"):
        load_eval_images(tmp_path)
    with pytest.raises(DataError, match="no such"):
        load_eval_images(tmp_path / "absent")


# ---- batch sources -------------------------------------------------------------------------
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ramp_images(n: int, size: int) -> torch.Tensor:
    """n images whose columns increase left to right (so a horizontal flip is visible)."""
    ramp = torch.arange(size, dtype=torch.uint8) * (255 // size)
    return (ramp.expand(n, 3, size, size) + torch.arange(n, dtype=torch.uint8)[:, None, None, None]).contiguous()


def _flipped(batch: torch.Tensor) -> torch.Tensor:
    """Whether each image decreases left to right."""
    return batch[:, 0, 0, 0].int() > batch[:, 0, 0, -1].int()


def test_array_source_shapes_reproducible_and_flips():
    images = _ramp_images(5, 8)
    source = ArraySource(images)
    a = source.sample(400, _gen(3))
    assert a.shape == (400, 3, 8, 8) and a.dtype == torch.uint8
    assert torch.equal(a, source.sample(400, _gen(3)))
    assert not torch.equal(a, source.sample(400, _gen(4)))
    flips = _flipped(a).float().mean().item()
    assert 0.4 < flips < 0.6  # binomial(400, 1/2): sd 0.025
    # Every sample is one of the images, as is or mirrored; every image is drawn.
    pool = torch.cat([images, images.flip(-1)])
    assert all(any(torch.equal(x, p) for p in pool) for x in a[:50])
    assert set(a[:, 0, 0, :].min(dim=1).values.tolist()) == set(range(5))
    with pytest.raises(ValueError):
        ArraySource(images.float())
    with pytest.raises(ValueError):
        ArraySource(images[:, :, :, :4])


def test_crop_source_shapes_reproducible_and_flips():
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=gen) for _ in range(2)]
    images.append(_ramp_images(1, 48)[0])
    source = CropSource(images, 16)
    a = source.sample(64, _gen(5))
    assert a.shape == (64, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a, source.sample(64, _gen(5)))
    assert not torch.equal(a, source.sample(64, _gen(6)))
    # Unscaled crops are exact sub-images (possibly mirrored).
    ramp_only = CropSource([_ramp_images(1, 48)[0]], 16)
    b = ramp_only.sample(400, _gen(7))
    assert 0.4 < _flipped(b).float().mean().item() < 0.6
    span = (b[:, 0, 0, 0].int() - b[:, 0, 0, -1].int()).abs()
    assert (span == 15 * (255 // 48)).all()  # exactly 16 columns of the ramp, no resampling


def test_crop_source_min_scale_downscales():
    size = 16
    gradient = (torch.arange(256, dtype=torch.uint8)).expand(3, 256, 256).contiguous()  # value = column
    plain = CropSource([gradient], size, min_scale=1.0).sample(64, _gen(0))
    scaled = CropSource([gradient], size, min_scale=0.25).sample(64, _gen(0))
    assert scaled.shape == (64, 3, size, size) and scaled.dtype == torch.uint8

    def ranges(batch):
        row = batch[:, 0, size // 2].int()
        return (row.max(dim=1).values - row.min(dim=1).values).float()

    assert (ranges(plain) == size - 1).all()
    r = ranges(scaled)
    # A crop of size/scale columns, resized to size, spans about size/scale − scale grey levels:
    # between 15 (scale 1) and 63 (scale 1/4); log-uniform scale puts the median near 31.
    assert r.min() >= size - 2 and r.max() <= size / 0.25
    assert r.median() > 1.4 * (size - 1)
    assert r.max() > 2.5 * (size - 1)
    # Downscaled crops stay monotone ramps (an antialiased resize of a linear ramp).
    row = scaled[:, 0, size // 2].int()
    diffs = row[:, 1:] - row[:, :-1]
    assert ((diffs >= 0).all(dim=1) | (diffs <= 0).all(dim=1)).all()


def test_crop_source_rejects_small_images():
    with pytest.raises(DataError, match="smaller than the 32-pixel crop"):
        CropSource([torch.zeros(3, 64, 64, dtype=torch.uint8), torch.zeros(3, 31, 100, dtype=torch.uint8)], 32)
    with pytest.raises(ValueError):
        CropSource([torch.zeros(3, 64, 64, dtype=torch.uint8)], 32, min_scale=0.0)
    with pytest.raises(ValueError):
        CropSource([], 32)


def test_crop_source_folder_too_small(tmp_path):
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="smaller"):
        DataConfig(folders=[str(tmp_path)], crop_size=32).build()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        DataConfig(folders=[str(tmp_path / "empty")], crop_size=32).build()
    with pytest.raises(DataError, match="no such folder"):
        DataConfig(folders=[str(tmp_path / "absent")], crop_size=32).build()
    with pytest.raises(DataError, match="no training data"):
        DataConfig().build()


def test_mixed_source_proportions_and_reproducibility():
    dark = ArraySource(torch.zeros(4, 3, 16, 16, dtype=torch.uint8))
    bright = CropSource([torch.full((3, 40, 40), 255, dtype=torch.uint8)], 16, min_scale=0.5)
    mixed = MixedSource([dark, bright], [0.25, 0.75])
    a = mixed.sample(400, _gen(0))
    assert a.shape == (400, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a, mixed.sample(400, _gen(0)))
    assert not torch.equal(a, mixed.sample(400, _gen(1)))
    share_bright = (a[:, 0, 0, 0] == 255).float().mean().item()
    assert 0.68 < share_bright < 0.82  # binomial(400, 3/4): sd ≈ 0.022
    means = a.float().mean(dim=(1, 2, 3))
    assert set(means.tolist()) <= {0.0, 255.0}
    # Shuffled: the two kinds are interleaved, not in blocks.
    assert (a[1:, 0, 0, 0] != a[:-1, 0, 0, 0]).sum() > 50
    with pytest.raises(ValueError):
        MixedSource([dark, ArraySource(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))], [1, 1])
    with pytest.raises(ValueError):
        MixedSource([dark, bright], [1.0, 0.0])


@needs_photos
def test_crop_source_on_a_real_photo():
    photo = read_image(min(PHOTOS.glob("*.png")))
    assert photo.dtype == torch.uint8 and photo.shape[0] == 3 and min(photo.shape[1:]) >= 256
    source = CropSource([photo], 32, min_scale=0.25)
    batch = source.sample(8, _gen(0))
    assert batch.shape == (8, 3, 32, 32) and batch.dtype == torch.uint8
    assert torch.equal(batch, source.sample(8, _gen(0)))
