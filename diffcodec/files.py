"""Reading inputs and writing outputs safely: atomically, never over an existing file unless
asked, and ``-`` for standard input or output as image tools do."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DiffcodecError

STDIO = "-"  # a file argument meaning standard input (inputs) or standard output (outputs)


def describe_source(arg: str) -> str:
    """How messages name an input argument."""
    return "standard input" if arg == STDIO else str(arg)


def describe_target(arg: str) -> str:
    """How messages name an output argument."""
    return "standard output" if arg == STDIO else str(arg)


def read_input(arg: str, kind: str = "file") -> bytes:
    """The bytes of an input file, or of standard input for ``-``; one-line errors for a
    missing file or a folder (``kind`` names what was expected, e.g. ".ddc file")."""
    if arg == STDIO:
        return sys.stdin.buffer.read()
    path = Path(arg)
    if path.is_dir():
        raise DiffcodecError(f"{path} is a folder, not a {kind}")
    if not path.is_file():
        raise DiffcodecError(f"no such file: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DiffcodecError(f"cannot read {path} ({e.strerror})") from None


def check_output(arg: str, force: bool) -> None:
    """Before any work: the output can be written (``-``: standard output, not a terminal)."""
    if arg == STDIO:
        if sys.stdout.isatty():
            raise DiffcodecError("refusing to write binary data to a terminal; redirect standard output "
                                 "or give -o a file name")
        return
    check_writable(Path(arg), force)


def write_output(arg: str, data: bytes, force: bool = True) -> None:
    """Write ``data`` to the file ``arg`` (atomically) or to standard output for ``-``."""
    if arg == STDIO:
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
    else:
        atomic_write_bytes(Path(arg), data, force)


def check_writable(path: Path, force: bool) -> Path:
    """Refuse to replace an existing file without ``force``; the parent folder must exist."""
    path = Path(path)
    if path.exists() and not force:
        raise DiffcodecError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise DiffcodecError(f"{path} is a folder")
    if not path.parent.is_dir():
        raise DiffcodecError(f"folder {path.parent} does not exist")
    return path


def atomic_write_bytes(path: Path, data: bytes, force: bool = True) -> Path:
    """Write through a temporary file in the same folder and rename, so readers never see
    a partial file and a crash leaves the old file intact."""
    path = check_writable(Path(path), force)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def png_bytes(image: torch.Tensor) -> bytes:
    """uint8 (C, H, W) with C = 1 or 3 → PNG bytes."""
    if image.ndim != 3 or image.dtype != torch.uint8 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected uint8 (1|3, H, W), got {tuple(image.shape)} {image.dtype}")
    array = image.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, image: torch.Tensor, force: bool = False) -> Path:
    return atomic_write_bytes(path, png_bytes(image), force)


def write_json(path: Path, doc: dict, force: bool = False) -> Path:
    return atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode(), force)
