"""Model checkpoints: a folder with ``config.json`` and ``model.safetensors`` (EMA weights).

``config.json`` holds the U-Net configuration, the schedule, a name, free-form metadata
(training record) and the SHA-256 of ``model.safetensors`` (the model's content hash, which
compressed files name). A training checkpoint adds ``train_state.safetensors`` (raw weights,
Adam moments, step, generator state) so training can resume. Files are replaced atomically.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .checkpoint_config import CONFIG_FILE, FORMAT, FORMAT_VERSION, TRAIN_STATE_FILE, WEIGHTS_FILE, read_config
from .diffusion import GaussianDiffusion
from .errors import CheckpointError
from .files import OutputSet
from .models import DEFAULT_MODEL, resolve_model_path
from .schedule import ScheduleConfig
from .unet import UNet, UNetConfig
from .variances import TABLE_FILE, ErrorTable

@dataclass
class Model:
    """A loaded ε-network with the schedule it was trained for."""

    net: UNet
    schedule_config: ScheduleConfig
    name: str
    weights_sha256: str
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    error_table: ErrorTable | None = None  # for the optimal reverse variances (diffcodec.variances)
    _twins: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def unet_config(self) -> UNetConfig:
        return self.net.config

    def diffusion(self) -> GaussianDiffusion:
        return GaussianDiffusion(self.schedule_config.build())

    def check_size(self, height: int, width: int, what: str) -> None:
        """A :class:`CheckpointError` naming ``what`` unless the network takes ``height``×``width``
        images: both sides divisible by its downsampling factor."""
        f = self.unet_config.downsampling_factor
        if height % f or width % f:
            raise CheckpointError(f"{what} is not divisible by the model's factor {f}")

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the network runs; the codec scores candidates there too."""
        return next(self.net.parameters()).device

    def in_dtype(self, dtype: torch.dtype) -> "Model":
        """This model with its network computing in ``dtype`` (a cached copy on the same device;
        float32 weights convert to float64 exactly). The codec's reference chain uses float64."""
        if dtype == self.dtype:
            return self
        if dtype not in self._twins:
            net = copy.deepcopy(self.net).to(dtype)
            self._twins[dtype] = Model(net, self.schedule_config, self.name, self.weights_sha256, self.meta, self.path,
                                       self.error_table)
        return self._twins[dtype]

    def eps_fn(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂(x_t, t) computed on the network's device and in its dtype, returned contiguous on x's
        device. Inputs go in channels-last, the faster layout for these convolutions (about 1.3×
        on CPU)."""
        p = next(self.net.parameters())
        x_in = x.to(device=p.device, dtype=p.dtype).contiguous(memory_format=torch.channels_last)
        return self.net(x_in, t.to(p.device)).to(x.device).contiguous()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_checkpoint(
    directory: Path,
    state_dict: dict[str, torch.Tensor],
    unet_config: UNetConfig,
    schedule_config: ScheduleConfig,
    *,
    name: str,
    meta: dict | None = None,
    train_state: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a checkpoint folder: the weights, the training state and ``config.json`` appear
    together or not at all (``files.OutputSet``), so a folder with a valid config always has
    matching weights, and a failed write leaves an earlier checkpoint there as it was."""
    directory = Path(directory)
    weights = _tensor_bytes({k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "unet": unet_config.to_dict(),
        "schedule": schedule_config.to_dict(),
        "weights_dtype": str(dtype).removeprefix("torch."),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "meta": meta or {},
    }
    with OutputSet() as outputs:
        outputs.folder(directory)
        outputs.add(directory / WEIGHTS_FILE, weights)
        if train_state is not None:
            outputs.add(directory / TRAIN_STATE_FILE, _tensor_bytes(train_state))
        outputs.add(directory / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return directory


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> Model:
    """Load a shipped model by name or a checkpoint folder by path, in evaluation mode."""
    directory = resolve_model_path(name_or_path)
    config = read_config(directory)
    try:
        unet_config = UNetConfig.from_dict(config["unet"])
        schedule_config = ScheduleConfig.from_dict(config["schedule"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG_FILE} has an invalid configuration ({e})") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} lacks {WEIGHTS_FILE}")
    digest = sha256_file(weights)
    if digest != config.get("weights_sha256"):
        raise CheckpointError(f"{weights} does not match the hash in {CONFIG_FILE}: the file is corrupt or replaced")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e})") from None
    net = UNet(unet_config)
    load_state_strict(net, {k: v.float() for k, v in state.items()}, str(directory))
    net.to(device, memory_format=torch.channels_last).eval()
    table = ErrorTable.load(directory / TABLE_FILE) if (directory / TABLE_FILE).is_file() else None
    if table is not None and table.num_timesteps != schedule_config.num_timesteps:
        raise CheckpointError(f"{directory / TABLE_FILE} has {table.num_timesteps} steps, the model's schedule "
                              f"{schedule_config.num_timesteps}")
    return Model(net, schedule_config, config.get("name", directory.name), digest, config.get("meta", {}), directory,
                 table)


def load_state_strict(net: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load weights, turning any mismatch with the architecture into one clear error."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
        raise CheckpointError(f"weights in {where} do not fit its U-Net configuration: {'; '.join(parts)}")
    net.load_state_dict(state)
