"""Which torch device a command runs on, and how a report names it.

One home for the ``--device`` rule of every command (train, nll, variances, sample, encode,
decode) and for the device line that reports and JSON files record.
"""

from __future__ import annotations

import torch

from .errors import DiffcodecError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; anything unusable is a DiffcodecError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DiffcodecError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise DiffcodecError(f"device {name!r} is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise DiffcodecError(f"device {name!r} is not supported (use cpu, cuda, cuda:N or auto)")
    return device


def device_description(device: torch.device) -> str:
    """The GPU's name, or the CPU with its thread count: what a measurement ran on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
