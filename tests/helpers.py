"""Helpers that several test modules share: where the data is, small test images, codec
settings, checkpoints, the command line, a perturbed network and raw container bytes.

Test modules import them with ``from helpers import ...``: pytest puts ``tests/`` on
``sys.path`` (its default import mode, with no ``__init__.py`` here), and so does Python when a
test file runs as a script. A helper that only one module uses stays in that module.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bitstream.container import MAGIC, Header, ImageMode, VarianceChoice, crc16, write_varint
from diffcodec.checkpoint import save_checkpoint
from diffcodec.cli import main
from diffcodec.codec import CodecConfig
from diffcodec.data import load_cifar10
from diffcodec.images import CodecImage
from diffcodec.schedule import ScheduleConfig
from diffcodec.unet import CONFIGS, UNet


# --- paths and data ---------------------------------------------------------------------------

# The checkout's root (the folder above tests/).
ROOT = Path(__file__).resolve().parents[1]
# The shared data beside the checkout (../shared/data): too large for the repository.
SHARED = ROOT.parent / "shared" / "data"
# The CIFAR-10 subset (python format) that golden files and bounds are computed on.
CIFAR = SHARED / "cifar-10-subset"
# The Kodak images, for crops of a real photograph.
KODAK = SHARED / "kodak"
# Skips a test that reads the CIFAR-10 subset where it is absent.
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar-10-subset is absent")
# Skips a test that reads CIFAR-10 or Kodak images where either is absent.
needs_data = pytest.mark.skipif(not CIFAR.is_dir() or not KODAK.is_dir(), reason="../shared/data is absent")


# --- codec settings ---------------------------------------------------------------------------

# Few groups and candidates and 2 bits a call: seconds per small image, so that tests that code
# real images stay quick (golden/cifar0_default_fast.ddc was written with these).
FAST = CodecConfig(t_stop=10, groups=12, log2_candidates=6, chunk_bits=2.0)  # one t_stop for every stop rule


# --- images -----------------------------------------------------------------------------------


def cifar_image(i: int) -> CodecImage:
    """Test image ``i`` of the CIFAR-10 subset as a 32×32 RGB codec image."""
    x = load_cifar10(CIFAR, "test")[i]
    return CodecImage(x.permute(1, 2, 0).numpy().copy(), ImageMode.RGB)


def kodak_crop(h: int = 37, w: int = 45) -> CodecImage:
    """An ``h``×``w`` crop of kodim23 (odd sizes by default, so that padding is exercised)."""
    with Image.open(KODAK / "kodim23.png") as im:
        a = np.asarray(im.convert("RGB"))
    return CodecImage(np.ascontiguousarray(a[200:200 + h, 300:300 + w]), ImageMode.RGB)


def png_bytes(array: np.ndarray) -> bytes:
    """The bytes of a PNG of ``array`` (as Pillow writes it), for inputs given as files or on stdin."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _paeth(a: int, b: int, c: int) -> int:
    """PNG's Paeth predictor of a byte from its left, upper and upper-left neighbours."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filtered(row: bytes, prior: bytes, kind: int, bpp: int) -> bytes:
    """PNG filter ``kind`` (0 none, 1 sub, 2 up, 3 average, 4 Paeth) applied to one row."""
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
        out[i] = (x - predictor) % 256
    return bytes([kind]) + bytes(out)


def png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG of uint16 samples: (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB or
    (H, W, 4) RGBA; row y uses filter y mod 5. Written byte by byte: Pillow writes no 16-bit
    colour PNG."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w, c = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    rows = [samples[y].astype(">u2").tobytes() for y in range(h)]
    raw = b"".join(_filtered(r, rows[y - 1] if y else bytes(len(r)), y % 5, bpp) for y, r in enumerate(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- checkpoints ------------------------------------------------------------------------------
# (the shipped ``default`` model is the ``model`` fixture of conftest.py)


def make_micro_checkpoint(directory: Path) -> Path:
    """A checkpoint of a seeded random ``micro`` network in ``directory``: a real checkpoint
    folder that loads in a moment, for commands whose numbers do not need a trained model."""
    torch.manual_seed(1234)
    net = UNet(CONFIGS["micro"])
    return save_checkpoint(directory, net.state_dict(), net.config, ScheduleConfig(), name="micro-test")


# --- the command line -------------------------------------------------------------------------

# Codec options for ``diffcodec encode``: the small model and few steps, for tests that are about
# the command, not the model.
FAST_CLI = ["--groups", "4", "--candidates", "4", "--chunk-bits", "2", "--t-stop", "10", "--model", "default"]
# The environment of a ``python -m diffcodec`` subprocess: this checkout first on PYTHONPATH, so
# that the process runs the code under test (also where an installed copy points elsewhere).
ENV = os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run(*args, stdin: bytes | None = None):
    """``diffcodec ARGS`` in this process through click's runner, ``stdin`` as standard input;
    arguments may be paths or numbers, and exceptions propagate so that a traceback fails the test."""
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin, catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> None:
    """A refused command's promise: exit status 1, one ``error: ...`` line holding every fragment,
    and no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# --- network perturbation ---------------------------------------------------------------------

# How far ``perturbed`` moves each layer's output, in units of its dtype's roundoff (the 1000 of
# test_cross_machine's docstring).
ULPS = 1000


@contextlib.contextmanager
def perturbed(model, ulps: float = ULPS, seed: int = 1):
    """Every Conv2d/Linear output of the model's networks (all precisions) times 1 + ulps·u·z,
    as other hardware or libraries would move it, for decodes that must not depend on that;
    yields a one-item list that counts the hooked calls."""
    g = torch.Generator().manual_seed(seed)
    calls = [0]

    def hook(module, inputs, out):
        calls[0] += 1
        u = torch.finfo(out.dtype).eps / 2
        return out * (1 + ulps * u * torch.randn(out.shape, generator=g, dtype=out.dtype))

    nets = [model.net] + [twin.net for twin in model._twins.values()]
    handles = [m.register_forward_hook(hook) for net in nets for m in net.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


# --- container bytes --------------------------------------------------------------------------

# The one-byte header fields between the size and the selection byte, in file order.
ONE_BYTE = ("flags0", "flags1", "schedule_id", "t_stop", "groups", "log2_candidates", "chunk_quarter_bits")


def header_fields(data: bytes) -> dict:
    """The header of ``data`` as a dict of its raw field values, for ``raw_header`` to write back
    changed."""
    header, _ = Header.from_bytes(data)
    return {"version": header.version, "model_hash": header.model_hash, "width": header.width,
            "height": header.height, "flags0": int(header.mode),
            "flags1": header_flags1(header), "schedule_id": header.schedule_id,
            "t_stop": header.t_stop, "groups": header.groups, "log2_candidates": header.log2_candidates,
            "chunk_quarter_bits": header.chunk_quarter_bits, "tile": header.tile, "seed": header.seed,
            "body_bytes": header.body_bytes, "variance_table": header.variance_table,
            "selection": header.selection, "halo": header.halo}


def header_flags1(header: Header) -> int:
    """Byte 1 of the flags (FORMAT.md §3): bit 0 β, bit 1 layout, bit 2 optimal variances."""
    optimal = header.variance is VarianceChoice.OPTIMAL
    return (0 if optimal else int(header.variance)) | int(header.layout) << 1 | int(optimal) << 2


def raw_header(f: dict) -> bytes:
    """Header bytes for any field values (no range checks), with a matching CRC: damaged files
    whose header still passes its check, so that the damage reaches the decoder."""
    body = b"".join([MAGIC, bytes([f["version"]]), f["model_hash"], write_varint(f["width"]),
                     write_varint(f["height"]), bytes(f[name] for name in ONE_BYTE),
                     bytes([f.get("selection", 4)]) if f["version"] >= 4 else b"", write_varint(f["tile"]),
                     write_varint(f.get("halo", 0)) if f["version"] >= 5 and f["tile"] else b"",
                     write_varint(f["seed"]), f.get("variance_table", b""), write_varint(f["body_bytes"])])
    return body + crc16(body).to_bytes(2, "little")
