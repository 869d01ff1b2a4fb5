"""Checkpoint folders: round trip, integrity (hash), architecture mismatches, name resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffcodec.checkpoint import load_model, save_checkpoint, sha256_file
from diffcodec.checkpoint_config import CONFIG_FILE, WEIGHTS_FILE
from diffcodec.models import available_models, resolve_model_path
from diffcodec.errors import CheckpointError
from diffcodec.schedule import ScheduleConfig
from diffcodec.unet import CONFIGS, UNet

MICRO = CONFIGS["micro"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _micro_net(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(MICRO).eval()
    # Non-zero everywhere (fresh nets can have zero-initialised output layers), so a
    # mismatched or dropped tensor would change the output.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net


def _fixed_input():
    g = torch.Generator().manual_seed(123)
    return torch.randn(3, 3, 16, 16, generator=g), torch.tensor([0, 499, 999])


@pytest.fixture
def saved(tmp_path):
    net = _micro_net()
    path = save_checkpoint(tmp_path / "ckpt", net.state_dict(), MICRO, ScheduleConfig(), name="micro-test",
                           meta={"note": "unit test"})
    return net, path


def _write_config(path: Path, config: dict) -> None:
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def test_round_trip_gives_bitwise_identical_outputs(saved):
    net, path = saved
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temporary files left
    model = load_model(path)
    assert model.name == "micro-test" and model.meta == {"note": "unit test"}
    assert model.unet_config == MICRO and model.schedule_config == ScheduleConfig()
    assert model.weights_sha256 == sha256_file(path / WEIGHTS_FILE)
    assert not model.net.training
    x, t = _fixed_input()
    with torch.no_grad():  # the loaded model computes in channels-last layout: compare in the same layout
        layout = torch.channels_last
        expected = net.eval().to(memory_format=layout)(x.contiguous(memory_format=layout), t)
        got = model.eps_fn(x, t)
    assert torch.equal(got, expected)
    for (k, a), (k2, b) in zip(net.state_dict().items(), model.net.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # Saving the same weights again reproduces the same content hash.
    again = save_checkpoint(path.parent / "again", net.state_dict(), MICRO, ScheduleConfig(), name="x")
    assert sha256_file(again / WEIGHTS_FILE) == model.weights_sha256


def test_hash_mismatch_is_refused(saved):
    _, path = saved
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # a bit of the last tensor's data: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_model(path)


def test_unreadable_weights_with_matching_hash(saved):
    _, path = saved
    (path / WEIGHTS_FILE).write_bytes(b"\xff" * 64)
    config = json.loads((path / CONFIG_FILE).read_text())
    config["weights_sha256"] = sha256_file(path / WEIGHTS_FILE)
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(path)


def test_config_of_another_architecture_is_refused(saved):
    _, path = saved
    config = json.loads((path / CONFIG_FILE).read_text())
    config["unet"]["base_channels"] = 32
    config["weights_sha256"] = sha256_file(path / WEIGHTS_FILE)  # hash still valid: weights untouched
    _write_config(path, config)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert str(path) in msg and "do not fit" in msg and "wrong shape" in msg
    assert "(32," in msg and "(16," in msg  # names the shapes that disagree


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.manual_seed(0)
    tiny = UNet(CONFIGS["tiny"])
    path = save_checkpoint(tmp_path / "ckpt", tiny.state_dict(), MICRO, ScheduleConfig(), name="wrong")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)
    # Missing and unexpected tensors are named too.
    net = _micro_net()
    state = dict(net.state_dict())
    state.pop("conv_out.bias")
    state["extra.weight"] = torch.zeros(2)
    path = save_checkpoint(tmp_path / "ckpt2", state, MICRO, ScheduleConfig(), name="partial")
    with pytest.raises(CheckpointError, match=r"1 missing \(e\.g\. conv_out\.bias\).*1 unexpected \(e\.g\. extra\.weight\)"):
        load_model(path)


def test_missing_and_malformed_folders(tmp_path, saved):
    with pytest.raises(CheckpointError, match="no model named or at"):
        load_model(tmp_path / "does-not-exist")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_model(tmp_path / "ckpt" / WEIGHTS_FILE)  # a file, not a folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_model(tmp_path / "empty")
    _, path = saved
    (path / WEIGHTS_FILE).rename(path / "moved.safetensors")
    with pytest.raises(CheckpointError, match=f"lacks {WEIGHTS_FILE}"):
        load_model(path)
    (path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)
    _write_config(path, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a diffcodec checkpoint"):
        load_model(path)


def test_bad_config_values(saved):
    _, path = saved
    config = json.loads((path / CONFIG_FILE).read_text())
    config["format_version"] = 99
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(path)
    config["format_version"] = 1
    config["unet"]["no_such_field"] = 1
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="invalid configuration"):
        load_model(path)
    del config["unet"]["no_such_field"]
    del config["schedule"]
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="invalid configuration"):
        load_model(path)


def test_half_precision_checkpoint(tmp_path):
    net = _micro_net()
    path = save_checkpoint(tmp_path / "bf16", net.state_dict(), MICRO, ScheduleConfig(), name="bf16",
                           dtype=torch.bfloat16)
    assert json.loads((path / CONFIG_FILE).read_text())["weights_dtype"] == "bfloat16"
    model = load_model(path)
    for k, v in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v.to(torch.bfloat16).float())


def test_resolve_shipped_model_by_name():
    names = available_models()
    if not names:
        pytest.skip("no models are shipped in diffcodec/models")
    path = resolve_model_path(names[0])
    assert (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()
    model = load_model(names[0])
    assert model.weights_sha256 == sha256_file(path / WEIGHTS_FILE)


def test_unknown_name_lists_shipped_models():
    with pytest.raises(CheckpointError, match="shipped models"):
        resolve_model_path("no-such-model-name")
