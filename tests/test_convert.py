"""Diffusers UNet2DModel -> our UNet: same function, same parameter count, clear errors.

The released weights cannot be downloaded here, so a random-weight diffusers twin built from the
released configuration stands in for them.
"""

import dataclasses
import inspect
import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffcodec.convert import (  # noqa: E402
    DIFFUSERS_DEFAULTS,
    convert_diffusers_state_dict,
    load_diffusers_folder,
    unet_config_from_diffusers,
)
from diffcodec.errors import CheckpointError  # noqa: E402
from diffcodec.unet import CONFIGS, UNet, count_parameters  # noqa: E402

# The configuration of google/ddpm-cifar10-32.
DDPM_CIFAR10 = {
    "_class_name": "UNet2DModel",
    "block_out_channels": [128, 256, 256, 256],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2, "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
    "norm_num_groups": 32, "norm_eps": 1e-6, "act_fn": "silu", "time_embedding_type": "positional",
    "mid_block_scale_factor": 1, "sample_size": 32, "attention_head_dim": None,
    "in_channels": 3, "out_channels": 3, "center_input_sample": False,
}
# Small enough to be fast; attention at the full-size and the last (not downsampled) level.
TINY = {**DDPM_CIFAR10, "block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 8,
        "down_block_types": ["AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"]}
OLD_ATTENTION_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def diffusers_twin(config: dict, seed: int = 0):
    """A diffusers UNet2DModel in eval mode whose every parameter (GroupNorm affine and biases
    included) is moved away from its initial value, so no weight is trivially 0 or 1."""
    torch.manual_seed(seed)
    model = diffusers.UNet2DModel.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
            else:
                p.mul_(1 + 0.3 * torch.randn_like(p))
    return model


def ours(model) -> UNet:
    cfg = unet_config_from_diffusers(dict(model.config))
    net = UNet(cfg).eval()
    net.load_state_dict(convert_diffusers_state_dict(model.state_dict(), cfg))
    return net


def with_old_attention_names(state: dict) -> dict:
    """The pre-0.14 diffusers names of the attention projections."""
    out = {}
    for key, value in state.items():
        for new, old in OLD_ATTENTION_NAMES.items():
            key = key.replace(f".{new}.", f".{old}.")
        out[key] = value
    return out


@torch.no_grad()
def max_difference(model, net, x, t) -> float:
    return (model(x, t).sample - net(x, t)).abs().max().item()


def test_paper_network_has_35_7m_parameters():
    with torch.device("meta"):
        n = count_parameters(UNet(CONFIGS["ddpm-cifar10"]))
    assert n == 35_746_307
    assert round(n / 1e6, 1) == 35.7  # the paper's "35.7M parameters" (Ho et al. 2020, Appendix B)


def test_defaults_are_those_of_installed_diffusers():
    params = inspect.signature(diffusers.UNet2DModel.__init__).parameters
    installed = {k: tuple(p.default) if isinstance(p.default, (list, tuple)) else p.default
                 for k, p in params.items() if k != "self"}
    assert installed == DIFFUSERS_DEFAULTS


def test_released_config_is_the_paper_network():
    assert unet_config_from_diffusers(DDPM_CIFAR10) == dataclasses.replace(CONFIGS["ddpm-cifar10"], dropout=0.0)


def test_tiny_twin_gives_the_same_outputs():
    model = diffusers_twin(TINY)
    net = ours(model)
    torch.manual_seed(1)
    assert max_difference(model, net, torch.randn(2, 3, 16, 16), torch.tensor([0, 999])) <= 1e-5
    assert max_difference(model, net, torch.randn(2, 3, 32, 24), torch.tensor([7, 500])) <= 1e-5


def test_old_attention_names_convert_alike(tmp_path):
    model = diffusers_twin(TINY)
    cfg = unet_config_from_diffusers(TINY)
    new = convert_diffusers_state_dict(model.state_dict(), cfg)
    old_state = with_old_attention_names(model.state_dict())
    assert any(".query." in k for k in old_state)
    old = convert_diffusers_state_dict(old_state, cfg)
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)
    # and from a .bin file in a pipeline folder's unet/
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(TINY))
    torch.save(old_state, tmp_path / "unet" / "diffusion_pytorch_model.bin")
    cfg2, loaded = load_diffusers_folder(tmp_path)
    assert cfg2 == cfg and all(torch.equal(new[k], loaded[k]) for k in new)


@pytest.mark.slow
def test_paper_size_twin_gives_the_same_outputs(tmp_path):
    model = diffusers_twin(DDPM_CIFAR10)
    net = ours(model)
    assert count_parameters(model) == count_parameters(net) == 35_746_307
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([0, 999])
    with torch.no_grad():
        reference = model(x, t).sample
        assert (reference - net(x, t)).abs().max().item() <= 1e-5
    assert max_difference(model, net, torch.randn(2, 3, 32, 32), torch.tensor([1, 437])) <= 1e-5
    assert max_difference(model, net, torch.randn(2, 3, 64, 64), torch.tensor([250, 750])) <= 1e-5  # fully conv.

    model.save_pretrained(tmp_path)
    cfg, state = load_diffusers_folder(tmp_path)
    net = UNet(cfg).eval()
    net.load_state_dict(state)
    with torch.no_grad():
        assert (reference - net(x, t)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("change, message", [
    ({"flip_sin_to_cos": True}, "flip_sin_to_cos"),
    ({"freq_shift": 0}, "freq_shift"),
    ({"downsample_padding": 1}, "downsample_padding"),
    ({"attention_head_dim": 8}, "multi-head"),
    ({"time_embedding_type": "fourier"}, "time_embedding_type"),
    ({"center_input_sample": True}, "center_input_sample"),
    ({"act_fn": "gelu"}, "act_fn"),
    ({"mid_block_scale_factor": 2}, "mid_block_scale_factor"),
    ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift"),
    ({"add_attention": False}, "add_attention"),
    ({"up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]}, "mirror"),
    ({"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"]}, "CrossAttn"),
    ({"block_out_channels": [128, 192, 256, 256]}, "multiples"),
    ({"_class_name": "UNet2DConditionModel"}, "_class_name"),
    ({"some_future_option": 1}, "unknown"),
])
def test_unsupported_config_is_a_clear_error(change, message):
    with pytest.raises(CheckpointError, match=message) as e:
        unet_config_from_diffusers({**DDPM_CIFAR10, **change})
    assert "\n" not in str(e.value)


def test_missing_attention_head_dim_means_diffusers_default_of_8_heads_dim():
    config = {k: v for k, v in DDPM_CIFAR10.items() if k != "attention_head_dim"}
    with pytest.raises(CheckpointError, match="multi-head"):
        unet_config_from_diffusers(config)


def test_missing_or_unmapped_weight_is_a_clear_error():
    model = diffusers_twin(TINY)
    cfg = unet_config_from_diffusers(TINY)
    state = model.state_dict()
    with pytest.raises(CheckpointError, match="lacks 1 weights"):
        convert_diffusers_state_dict({k: v for k, v in state.items() if k != "conv_in.bias"}, cfg)
    with pytest.raises(CheckpointError, match="no counterpart"):
        convert_diffusers_state_dict({**state, "mid_block.resnets.2.conv1.weight": state["conv_in.weight"]}, cfg)
    with pytest.raises(CheckpointError, match="duplicates"):
        convert_diffusers_state_dict({**state, **with_old_attention_names(state)}, cfg)
    with pytest.raises(CheckpointError, match="our 'conv_in.weight'"):
        convert_diffusers_state_dict({**state, "conv_in.weight": torch.zeros(1)}, cfg)


def test_bad_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_diffusers_folder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        load_diffusers_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(CheckpointError, match="no weights"):
        load_diffusers_folder(tmp_path)
    for name in ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 10)
        with pytest.raises(CheckpointError, match="corrupt") as e:
            load_diffusers_folder(tmp_path)
        assert "\n" not in str(e.value)


def test_cli_convert_writes_a_checkpoint_with_the_pipelines_schedule(tmp_path):
    """`diffcodec convert` on a pipeline folder (unet/ + scheduler/) gives a checkpoint that loads
    and predicts as the diffusers model does, with the schedule read from the pipeline."""
    from click.testing import CliRunner

    from diffcodec.checkpoint import load_model
    from diffcodec.cli import main

    model = diffusers_twin(TINY, seed=3)
    model.save_pretrained(tmp_path / "pipe" / "unet")
    scheduler = {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                 "num_train_timesteps": 1000, "trained_betas": None, "clip_sample": True}
    (tmp_path / "pipe" / "scheduler").mkdir()
    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "pipe"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "scheduler_config.json" in result.output
    loaded = load_model(out)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0, 999])
    assert max_difference(model, loaded.net, x, t) <= 1e-5
    assert loaded.schedule_config.num_timesteps == 1000 and loaded.schedule_config.beta_end == 0.02

    again = CliRunner().invoke(main, ["convert", str(tmp_path / "pipe"), "-o", str(out)])
    assert again.exit_code == 1 and again.output.startswith("error: ") and "--force" in again.output

    scheduler["beta_schedule"] = "squaredcos_cap_v2"
    (tmp_path / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    bad = CliRunner().invoke(main, ["convert", str(tmp_path / "pipe"), "-o", str(tmp_path / "other")])
    assert bad.exit_code == 1 and "linear" in bad.output and not (tmp_path / "other").exists()
