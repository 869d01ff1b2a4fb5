"""The shipped models: each loads by name with the weights its config names, has the documented
size, is the one ``auto`` picks for the documented image sizes, and codes an image bit for bit;
files of the earlier ``default`` model still decode without naming it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bitstream.container import unpack
from diffcodec import api
from diffcodec.checkpoint import load_model, sha256_file
from diffcodec.checkpoint_config import CONFIG_FILE, WEIGHTS_FILE
from diffcodec.codec import CodecConfig, decompress, model_hash
from diffcodec.models import (MODEL_USES, MODELS_DIR, auto_model, available_models, resolve_model_name,
                              shipped_model_for_hash, size_warning)

from helpers import CIFAR, needs_cifar, run

GOLDEN = Path(__file__).parent / "golden" / "cifar0_default_fast.ddc"
PARAMETERS = {"cifar10": 8_952_067, "photo": 8_952_067, "default": 1_113_955}
# Few steps, few candidates, and the channel stopping at t = 99, where little KL is left to code:
# seconds per image, and the lossless record must still be exact.
CHEAP = CodecConfig(t_stop=99, groups=4, log2_candidates=4, chunk_bits=2.0)
CHEAP_CLI = ["--t-stop", "99", "--groups", "4", "--candidates", "4", "--chunk-bits", "2"]


def image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth colour ramp with noise: image-like, and every pixel matters for exactness."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([x * 200 / width, y * 200 / height, (x + y) * 100 / (width + height)], axis=-1)
    return np.clip(ramp + rng.normal(0, 3, ramp.shape) + 20, 0, 255).astype(np.uint8)


def shipped_sha256(name: str) -> str:
    return json.loads((MODELS_DIR / name / CONFIG_FILE).read_text())["weights_sha256"]


def test_the_three_models_are_shipped_and_documented():
    assert available_models() == sorted(PARAMETERS)
    assert set(MODEL_USES) == set(PARAMETERS)
    for name in PARAMETERS:
        assert (MODELS_DIR / name / "MODEL_CARD.md").is_file()


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_model_loads_by_name_with_the_weights_its_config_names(name):
    config = json.loads((MODELS_DIR / name / CONFIG_FILE).read_text())
    assert config["name"] == name
    assert sha256_file(MODELS_DIR / name / WEIGHTS_FILE) == config["weights_sha256"]
    model = load_model(name)
    assert model.name == name and model.weights_sha256 == config["weights_sha256"]
    assert sum(p.numel() for p in model.net.parameters()) == PARAMETERS[name]
    stored = load_file(str(MODELS_DIR / name / WEIGHTS_FILE))
    assert sum(t.numel() for t in stored.values()) == PARAMETERS[name]
    assert {str(t.dtype).removeprefix("torch.") for t in stored.values()} == {config["weights_dtype"]}


def test_a_file_names_exactly_one_shipped_model():
    prefixes = {bytes.fromhex(shipped_sha256(name))[:4]: name for name in available_models()}
    assert len(prefixes) == len(available_models())
    for prefix, name in prefixes.items():
        assert shipped_model_for_hash(prefix) == name
    assert shipped_model_for_hash(b"\x00\x01\x02\x03") is None


def test_auto_picks_cifar10_up_to_64_and_photo_above():
    assert auto_model(32, 32) == "cifar10" and auto_model(64, 64) == "cifar10" and auto_model(64, 8) == "cifar10"
    assert auto_model(256, 256) == "photo" and auto_model(65, 64) == "photo" and auto_model(8, 65) == "photo"
    assert resolve_model_name("auto", 32, 32) == "cifar10" and resolve_model_name("auto", 256, 256) == "photo"
    assert resolve_model_name("default", 256, 256) == "default"  # a name given is kept


def test_cifar10_on_a_large_image_warns_and_only_then():
    cifar10, photo = shipped_sha256("cifar10"), shipped_sha256("photo")
    warning = size_warning(cifar10, 65, 64)
    assert warning is not None and "\n" not in warning and "--model photo" in warning and "65×64" in warning
    assert size_warning(cifar10, 64, 64) is None
    assert size_warning(photo, 256, 256) is None


def test_cifar10_round_trip_through_the_api_with_auto(one_thread):
    pixels = image(32, 32, seed=1)
    data = api.compress(pixels, lossless=True, config=CHEAP)
    assert unpack(data).header.model_hash == model_hash(load_model("cifar10"))
    assert np.array_equal(np.asarray(api.decompress(data)), pixels)  # the model found by the file's hash


def test_photo_round_trip_through_the_api(one_thread):
    pixels = image(16, 16, seed=2)
    data = api.compress(pixels, "photo", lossless=True, config=CHEAP)
    assert unpack(data).header.model_hash == model_hash(load_model("photo"))
    assert np.array_equal(np.asarray(api.decompress(data)), pixels)


def test_the_command_line_picks_photo_above_64_and_warns_for_cifar10_there(tmp_path, one_thread):
    png = tmp_path / "wide.png"
    Image.fromarray(image(72, 8, seed=3)).save(png)
    auto = run("encode", png, "-o", tmp_path / "auto.ddc", "--upto-t", 1000, *CHEAP_CLI)
    assert auto.exit_code == 0, auto.output
    assert "warning" not in auto.stderr
    assert unpack((tmp_path / "auto.ddc").read_bytes()).header.model_hash == model_hash(load_model("photo"))
    forced = run("encode", png, "-o", tmp_path / "forced.ddc", "--upto-t", 1000, "--model", "cifar10", *CHEAP_CLI)
    assert forced.exit_code == 0, forced.output
    warnings = [line for line in forced.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--model photo" in warnings[0], forced.stderr
    assert unpack((tmp_path / "forced.ddc").read_bytes()).header.model_hash == model_hash(load_model("cifar10"))


@needs_cifar
def test_an_old_default_file_decodes_without_naming_its_model(tmp_path, one_thread):
    from diffcodec.data import load_cifar10

    out = tmp_path / "cifar0.png"
    result = run("decode", GOLDEN, "-o", out)
    assert result.exit_code == 0, result.output
    expected = load_cifar10(CIFAR, "test")[0].permute(1, 2, 0).numpy()
    with Image.open(io.BytesIO(out.read_bytes())) as im:
        assert np.array_equal(np.asarray(im), expected)


GOLDEN_DIR = Path(__file__).parent / "golden"
# (file, model, source image): lossless files written with FAST settings (t_stop 10, 12 groups,
# 2^6 candidates, 2 bits a call) from images kept in the repository
NEW_MODEL_GOLDEN = [("cifar0_cifar10_fast.ddc", "cifar10", Path(__file__).parents[1] / "examples" / "cifar10-test-0.png"),
                    ("kodim23c48_photo_fast.ddc", "photo", GOLDEN_DIR / "kodim23_centre48.png")]


@pytest.mark.parametrize("name, model_name, source", NEW_MODEL_GOLDEN)
def test_golden_files_of_the_new_models_decode_bit_for_bit(name, model_name, source, one_thread):
    """Pinned files of each GPU-trained model: the decoder finds the model by the hash in the
    header and reproduces the source exactly, also with every layer's output perturbed by 1000
    machine epsilons of its dtype (what another machine's arithmetic does)."""
    from helpers import perturbed

    data = (GOLDEN_DIR / name).read_bytes()
    rgb = np.asarray(Image.open(source).convert("RGB"))
    assert unpack(data).header.version == 3
    assert shipped_model_for_hash(unpack(data).header.model_hash) == model_name
    model = load_model(shipped_model_for_hash(unpack(data).header.model_hash))
    out = decompress(data, model)
    assert out.exact and out.t == 0 and np.array_equal(out.image.rgb, rgb)
    model.in_dtype(torch.float64)  # the reference chain's twin, so that the hooks reach it too
    with perturbed(model) as calls:
        again = decompress(data, model)
    assert calls[0] > 0 and again.exact and np.array_equal(again.image.rgb, rgb)
