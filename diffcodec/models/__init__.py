"""The model registry: the models shipped in the package, and which one an image or a file gets.

Each shipped model is a checkpoint folder here (``config.json``, ``model.safetensors``,
``MODEL_CARD.md``); ``--model`` takes one of their names or any checkpoint folder.

``auto`` (the encoder's default) picks by image size: ``cifar10`` for images of at most 64×64
pixels, ``photo`` for larger ones. On 32×32 CIFAR-10 test images and on 48×48 and 64×64 centre
crops of Kodak photos, ``cifar10``'s bound is the lower one (README, "Models"); above 64×64 it
is not measured, and its self-attention at half resolution makes it slow, while ``photo``
(attention only at 1/8 resolution) was measured up to 256×256. An explicit ``cifar10`` above
64×64 gets a warning. ``default`` stays loadable by name, and files made with any shipped model
decode without naming it: the file carries the model's hash, :func:`shipped_model_for_hash`.
Only ``config.json`` files are read here (no torch), so that the command line's ``--help`` can
list the models without importing torch.

    >>> resolve_model_name("auto", 32, 32), resolve_model_name("auto", 768, 512)
    ('cifar10', 'photo')
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint_config import CONFIG_FILE, WEIGHTS_FILE, read_config
from ..errors import CheckpointError

MODELS_DIR = Path(__file__).parent
DEFAULT_MODEL = "default"
AUTO = "auto"
CIFAR10 = "cifar10"
PHOTO = "photo"
CIFAR10_MAX_SIDE = 64  # auto: cifar10 when both sides are at most this, else photo; above, a warning

# When to use each shipped model, one line each (the --model help and the README's table).
MODEL_USES = {
    CIFAR10: "8.95M-parameter U-Net trained on CIFAR-10, for images up to 64×64",
    PHOTO: "8.95M-parameter U-Net trained on 64×64 photo crops, for larger images",
    DEFAULT_MODEL: "1.1M-parameter U-Net trained on CPU, for fast demonstrations and its own files",
}


def available_models() -> list[str]:
    """Names of the models shipped in the package."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model's name, or a checkpoint folder, to the folder."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if str(name_or_path) in available_models():
        return MODELS_DIR / str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{path} is not a checkpoint folder (expected {CONFIG_FILE} and {WEIGHTS_FILE} in it)")
    names = ", ".join(available_models()) or "none"
    raise CheckpointError(f"no model named or at {name_or_path!r} (shipped models: {names})")


def auto_model(width: int, height: int) -> str:
    """The shipped model ``auto`` gives a ``width``×``height`` image."""
    return CIFAR10 if max(width, height) <= CIFAR10_MAX_SIDE else PHOTO


def resolve_model_name(name: str, width: int, height: int) -> str:
    """``auto`` to the shipped model for this size; any other name or path unchanged."""
    return auto_model(width, height) if name == AUTO else name


def _shipped_sha256(name: str) -> str | None:
    return read_config(MODELS_DIR / name).get("weights_sha256") if name in available_models() else None


def size_warning(weights_sha256: str, width: int, height: int) -> str | None:
    """A one-line warning when the CIFAR-10 model (by its weights) is asked to code an image
    larger than 64×64, where ``auto`` would not pick it: its bound there is not measured, and its
    self-attention at half resolution costs time and memory as the square of the pixel count."""
    if max(width, height) <= CIFAR10_MAX_SIDE or weights_sha256 != _shipped_sha256(CIFAR10):
        return None
    return (f"the {CIFAR10} model was trained on 32×32 images and its attention grows with the square of the "
            f"pixel count; for a {width}×{height} image use --model {PHOTO} (or {AUTO})")


def shipped_model_for_hash(prefix: bytes) -> str | None:
    """The shipped model whose weights' SHA-256 starts with ``prefix`` (a file's model hash),
    or None; only the configs are read."""
    for name in available_models():
        sha = read_config(MODELS_DIR / name).get("weights_sha256", "")
        if bytes.fromhex(sha)[:len(prefix)] == prefix:
            return name
    return None
