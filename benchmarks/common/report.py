"""What every benchmark writes: a CompressAI-format JSON, a Markdown report naming the data,
model, device, library versions and command, and a matplotlib figure.

CompressAI's results JSON is ``{"name", "description", "results": {"bpp": [...],
"psnr-rgb": [...], "ms-ssim-rgb": [...], "encoding_time": [...], "decoding_time": [...]}}``,
one data-set mean per operating point; extra keys are allowed and used here for provenance.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
COMPRESSAI_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")
_PACKAGES = ("torch", "numpy", "numba", "constriction", "pillow", "pillow-jxl-plugin", "matplotlib")


def model_tag(model_name: str) -> str:
    """The part of a report's file names that names its model: ``-<name>``, ``default``'s too."""
    return f"-{model_name}"


def results_dir(dataset: str, quick: bool = False) -> Path:
    """``benchmarks/results/<dataset>/`` (``…/quick/<dataset>/`` for ``--quick`` runs, which
    are smoke tests and never overwrite the full reports). The environment variable
    ``DIFFCODEC_BENCH_RESULTS`` moves the root (the tests write into a temporary folder)."""
    root = Path(os.environ.get("DIFFCODEC_BENCH_RESULTS", RESULTS))
    path = root / "quick" / dataset if quick else root / dataset
    path.mkdir(parents=True, exist_ok=True)
    return path


def device_description(device: str = "cpu") -> str:
    """The machine in words: CPU model and cores, or the GPU's name."""
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} CPU cores"


def library_versions() -> dict[str, str]:
    """Versions of the Python packages and of the image libraries inside Pillow."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    from PIL import features

    for feature in ("libjpeg_turbo", "webp", "avif", "jpg_2000", "zlib"):
        try:
            version = features.version(feature)
        except ValueError:
            version = None
        if version:
            versions[f"pillow:{feature}"] = version
    return versions


def command_line() -> str:
    """This process's command as a user would type it (``python -m benchmarks.NAME …``)."""
    script = Path(sys.argv[0]).resolve()
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    if script.suffix == ".py" and script.is_relative_to(ROOT):
        module = script.with_suffix("").relative_to(ROOT).as_posix().replace("/", ".")
        return f"python -m {module} {args}".rstrip()
    return f"{sys.argv[0]} {args}".rstrip()


@dataclass
class Provenance:
    """Where a figure comes from: enough to reproduce it."""

    data: str
    model: str
    device: str
    command: str = field(default_factory=lambda: command_line())
    versions: dict[str, str] = field(default_factory=library_versions)
    bits: str = "counted from real file bytes, headers included"

    def markdown(self) -> str:
        libs = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return (f"- **Command:** `{self.command}`\n- **Data:** {self.data}\n- **Model:** {self.model}\n"
                f"- **Device:** {self.device}\n- **Libraries:** {libs}\n"
                f"- **Bits:** {self.bits}.\n")


def write_compressai(path: Path, name: str, description: str, results: dict[str, list],
                     provenance: Provenance, **extra) -> Path:
    """One CompressAI results file; ``results`` must hold lists of equal length."""
    lengths = {k: len(v) for k, v in results.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"results lists differ in length: {lengths}")
    doc = {"name": name, "description": description, "results": results,
           "provenance": asdict(provenance), **extra}
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path


def read_compressai(path: Path) -> dict:
    doc = json.loads(Path(path).read_text())
    missing = {"name", "description", "results"} - doc.keys()
    if missing:
        raise ValueError(f"{path}: not a CompressAI results file (missing {sorted(missing)})")
    return doc


def write_markdown(path: Path, title: str, body: str, provenance: Provenance) -> Path:
    """A report: title, what was measured (``body``, Markdown), then the provenance block."""
    path.write_text(f"# {title}\n\n{body.rstrip()}\n\n## Provenance\n\n{provenance.markdown()}")
    return path


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats are printed as given by the caller (pre-format them)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def figure(nrows: int = 1, ncols: int = 1, size=(6.4, 4.4)):
    """A matplotlib figure on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    return fig, axes


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
