"""A checkpoint folder's file names and its ``config.json``, read without torch.

The model registry (``diffcodec.models``) and the command line's start-up read configs only;
loading the weights is ``diffcodec.checkpoint``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError

FORMAT = "diffcodec-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_STATE_FILE = "train_state.safetensors"


def read_config(directory: Path) -> dict:
    """The folder's ``config.json``, checked to be a diffcodec checkpoint config this version reads."""
    cfg_path = Path(directory) / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint folder: {CONFIG_FILE} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a diffcodec checkpoint config")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path} has checkpoint format version {config.get('format_version')}, "
                              f"this diffcodec reads version {FORMAT_VERSION}")
    return config
