"""Diffusers ``UNet2DModel`` weights (e.g. the released ``google/ddpm-cifar10-32``) as our U-Net.

Only the architecture our ``UNet`` implements converts: every diffusers option that would change
the function (embedding layout, padding, heads, block types, ...) is checked, and anything else is
a ``CheckpointError`` rather than a silently different network.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError
from .schedule import ScheduleConfig, ScheduleKind
from .unet import UNet, UNetConfig

# UNet2DModel.__init__ defaults (diffusers 0.42): a key missing from config.json takes this value.
DIFFUSERS_DEFAULTS: dict = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896), "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0,
    "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None,
    "norm_eps": 1e-5, "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None,
    "num_class_embeds": None, "num_train_timesteps": None,
}

# Options our U-Net hard-wires, with the one value it implements.
_FIXED = {
    "center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 1, "flip_sin_to_cos": False,
    "mid_block_type": "UNetMidBlock2D", "mid_block_scale_factor": 1, "downsample_padding": 0,
    "downsample_type": "conv", "upsample_type": "conv", "resnet_time_scale_shift": "default",
    "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
}

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CheckpointError(f"diffusers UNet2DModel config not convertible: {message}")


def unet_config_from_diffusers(config: dict) -> UNetConfig:
    """Our ``UNetConfig`` for a diffusers ``UNet2DModel`` config dict (as in its ``config.json``)."""
    _require(isinstance(config, dict), f"expected a JSON object, got {type(config).__name__}")
    _require(config.get("_class_name", "UNet2DModel") == "UNet2DModel",
             f"_class_name is {config.get('_class_name')!r}, only UNet2DModel converts")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in DIFFUSERS_DEFAULTS)
    _require(not unknown, f"unknown keys {unknown} (written by a newer diffusers?)")
    c = {**DIFFUSERS_DEFAULTS, **config}
    try:
        for key, value in _FIXED.items():
            _require(c[key] == value, f"{key}={c[key]!r} is not supported (only {value!r})")
        _require(c["act_fn"] in ("silu", "swish"), f"act_fn={c['act_fn']!r} is not supported (only 'silu')")

        channels = [int(ch) for ch in c["block_out_channels"]]
        base = channels[0]
        _require(all(ch % base == 0 for ch in channels),
                 f"block_out_channels {channels} are not multiples of the first")
        _require(c["time_embedding_dim"] in (None, 4 * base),
                 f"time_embedding_dim={c['time_embedding_dim']} is not supported (only 4 × {base})")
        down = [t.removeprefix("UNetRes") for t in c["down_block_types"]]
        up = [t.removeprefix("UNetRes") for t in c["up_block_types"]]
        _require(len(down) == len(channels), "down_block_types and block_out_channels differ in length")
        _require(set(down) <= {"DownBlock2D", "AttnDownBlock2D"},
                 f"down_block_types {down}: only DownBlock2D and AttnDownBlock2D are supported")
        mirrored = [t.replace("Down", "Up") for t in reversed(down)]
        _require(up == mirrored, f"up_block_types {up} do not mirror down_block_types (expected {mirrored})")

        attention_levels = tuple(i for i, t in enumerate(down) if t == "AttnDownBlock2D")
        head_dim = c["attention_head_dim"]
        attended = [channels[i] for i in attention_levels] + [channels[-1]]  # + the middle block
        _require(head_dim is None or all(ch == head_dim for ch in attended),
                 f"attention_head_dim={head_dim} means multi-head attention (only single-head: null)")
        _require(c["attn_norm_num_groups"] in (None, c["norm_num_groups"]),
                 f"attn_norm_num_groups={c['attn_norm_num_groups']} differs from norm_num_groups")

        return UNetConfig(
            in_channels=c["in_channels"], out_channels=c["out_channels"], base_channels=base,
            channel_mult=tuple(ch // base for ch in channels), num_res_blocks=c["layers_per_block"],
            attention_levels=attention_levels, dropout=float(c["dropout"]),
            num_groups=c["norm_num_groups"], norm_eps=float(c["norm_eps"]),
        )
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise CheckpointError(f"diffusers UNet2DModel config not convertible: malformed or unsupported ({e})") from None


# Diffusers submodule names -> ours. Attention takes the current names and the old ones
# (query/key/value/proj_attn) that diffusers still renames on load (_fix_state_dict_keys_on_load).
_RESNET = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "emb_proj", "norm2": "norm2",
           "conv2": "conv2", "conv_shortcut": "skip"}
_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj",
              "query": "q", "key": "k", "value": "v", "proj_attn": "proj"}
_TOP = {"conv_in": "conv_in", "time_embedding.linear_1": "emb_in", "time_embedding.linear_2": "emb_out",
        "conv_norm_out": "norm_out", "conv_out": "conv_out"}
_MID = {"resnets.0": "mid_block1", "attentions.0": "mid_attention", "resnets.1": "mid_block2"}


def _our_name(key: str) -> str | None:
    """Our state-dict key for a diffusers one, or None where it has no counterpart."""
    module, _, param = key.rpartition(".")
    if param not in ("weight", "bias"):
        return None
    if module in _TOP:
        return f"{_TOP[module]}.{param}"
    if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", module):
        side, level, kind, index, sub = m.groups()
        table, ours = (_RESNET, "blocks") if kind == "resnets" else (_ATTENTION, "attentions")
        return f"{side}.{level}.{ours}.{index}.{table[sub]}.{param}" if sub in table else None
    if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.(?:down|up)samplers\.0\.conv", module):
        return f"{m[1]}.{m[2]}.resample.conv.{param}"
    if m := re.fullmatch(r"mid_block\.(resnets\.[01]|attentions\.0)\.(.+)", module):
        table = _RESNET if m[1].startswith("resnets") else _ATTENTION
        return f"{_MID[m[1]]}.{table[m[2]]}.{param}" if m[2] in table else None
    return None


def convert_diffusers_state_dict(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    """Rename a ``UNet2DModel`` state dict to ``UNet(cfg)``'s (float32); every weight must map, and every
    one of ours must be filled with the right shape."""
    with torch.device("meta"):  # shapes only, no memory or initialisation
        expected = {k: v.shape for k, v in UNet(cfg).state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = _our_name(key)
        if name is None or name not in expected:
            raise CheckpointError(f"diffusers weight {key!r} has no counterpart in our U-Net")
        if name in out:
            raise CheckpointError(f"diffusers weight {key!r} duplicates another one (old and new attention names mixed?)")
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[name]:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"diffusers weight {key!r} is {shape}, our {name!r} is {tuple(expected[name])}")
        out[name] = tensor.float()
    missing = [k for k in expected if k not in out]
    if missing:
        raise CheckpointError(f"diffusers state dict lacks {len(missing)} weights of our U-Net (e.g. {missing[0]!r})")
    return out


def load_diffusers_folder(folder: str | Path) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """Our config and weights from a downloaded diffusers model folder (or a pipeline folder's ``unet/``)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() and (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} is not a diffusers model folder: config.json is missing")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path} is not readable JSON ({e})") from None
    cfg = unet_config_from_diffusers(config)

    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder} has no weights: expected {' or '.join(WEIGHT_FILES)}")
    try:
        if weights.suffix == ".safetensors":
            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{weights} is corrupt or not a weights file ({type(e).__name__}: {first_line})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights} holds a {type(state).__name__}, not a state dict")
    return cfg, convert_diffusers_state_dict(state, cfg)


def schedule_from_diffusers(folder: str | Path) -> tuple[ScheduleConfig, str]:
    """The schedule of a diffusers pipeline folder (``scheduler/scheduler_config.json``) and where it
    came from; without that file, the paper's linear schedule."""
    folder = Path(folder)
    candidates = [folder / "scheduler" / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return ScheduleConfig(), "the paper (no scheduler_config.json found)"
    try:
        c = json.loads(path.read_text())
        if c.get("beta_schedule") != "linear" or c.get("trained_betas") is not None:
            raise CheckpointError(f"{path}: only the linear beta schedule converts, found {c.get('beta_schedule')!r}")
        return ScheduleConfig(ScheduleKind.LINEAR, int(c.get("num_train_timesteps", 1000)),
                              float(c.get("beta_start", 1e-4)), float(c.get("beta_end", 0.02))), str(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a usable scheduler config ({e})") from None
