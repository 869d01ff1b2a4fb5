"""The ``diffcodec`` command line: thin wrappers over the library.

Errors caused by input (missing files, bad data, mismatched checkpoints, malformed .ddc
files) print one line ``error: …`` and exit with status 1; nothing is written in that case.
So do failed writes (a full disk, a closed pipe; ``diffcodec.files``), leaving nothing partial.
Only click is imported at start-up (``--help`` stays fast); each command imports what it uses.
"""

from __future__ import annotations

import contextlib
import functools
import os
import unicodedata
from pathlib import Path

import click

from .errors import DiffcodecError
from .models import AUTO, CIFAR10, CIFAR10_MAX_SIDE, DEFAULT_MODEL, MODEL_USES, PHOTO

EXAMPLES = """
\b
Examples:
  diffcodec encode photo.png -o photo.ddc
  diffcodec encode photos/ -o coded/
  diffcodec decode photo.ddc -o photo.png --upto-t 200
  diffcodec info photo.ddc
  diffcodec nll ../shared/data/cifar-10-subset --limit 64
  diffcodec sample -n 16 -o samples.png --steps 100
  diffcodec train --config tiny --cifar ../shared/data/cifar-10-subset -o runs/tiny --steps 2000
"""


def _is_input_error(e: Exception) -> bool:
    """Errors caused by input: the library's, and the .ddc container's (``bitstream`` knows
    nothing of ``diffcodec``, so its FormatError is not a DiffcodecError)."""
    if isinstance(e, DiffcodecError):
        return True
    from bitstream.container import FormatError  # here, not at start-up: nothing failed before

    return isinstance(e, FormatError)


def training_data_options(command):
    """Where training images come from (``diffcodec.data.DataConfig``), for train and variances."""
    options = [
        click.option("--cifar", multiple=True, type=click.Path(),
                     help="Folder with CIFAR-10 python batches (train split). Repeatable."),
        click.option("--folder", multiple=True, type=click.Path(),
                     help="Folder of images to take random crops from. Repeatable."),
        click.option("--crop-size", default=32, show_default=True, type=click.IntRange(min=1), help="Image size."),
        click.option("--min-scale", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                     help="Crops are downscaled by a random factor in [min-scale, 1]."),
        click.option("--folder-weight", default=0.5, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     help="Share of folder crops when CIFAR is also given."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# ---- options that several commands take: each defined here once ------------------------------

def force_option(what: str):
    return click.option("--force", is_flag=True, help=what)


def seed_option(what: str, **kwargs):
    return click.option("--seed", default=0, show_default=True, help=what, **kwargs)


def batch_size_option(default: int):
    return click.option("--batch-size", default=default, show_default=True, type=click.IntRange(min=1))


def name_option():
    return click.option("--name", default=None,
                        help="Model name recorded in the checkpoint (default: the folder's name).")


def variance_option(choices: tuple[str, ...], what: str | None = None):
    return click.option("--variance", default="fixedlarge", show_default=True, type=click.Choice(choices), help=what)


def device_option(codec: bool = False):
    """--device: where the network runs (``codec``: and the candidate scoring, default cpu)."""
    if codec:
        return click.option("--device", default="cpu", show_default=True,
                            help="Where the network and the candidate scoring run: cpu, cuda, cuda:N or auto. "
                                 "Files are the same format and decode on any device.")
    return click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")


def model_option(default: str | None = DEFAULT_MODEL, what: str | None = None):
    what = what or (f"A shipped model's name ({', '.join(MODEL_USES)}; see the README's table) "
                    f"or a checkpoint folder.")
    return click.option("--model", "model_name", default=default, show_default=default is not None, help=what)


def upto_t_option(what: str):
    return click.option("--upto-t", type=click.IntRange(min=0, max=1000), default=None, help=what)


def max_pixels_option(action: str):
    return click.option("--max-pixels", default=MAX_PIXELS, show_default=True, type=click.IntRange(min=0),
                        help=f"Refuse to {action} an image of more pixels than this, before any work (0: no limit). "
                             f"The default, 4096×4096 (16.8 MP), is for images the network sees in tiles (larger "
                             f"than 512×512; format 5); one it sees whole may have 1024×1024 under the default.")


# The values of ``diffusion.ReverseVariance``, written out so that building the command line
# does not import torch (a test keeps the two equal).
VARIANCES = ("fixedlarge", "fixedsmall")
# ``codec.DEFAULT_MAX_PIXELS``, written out for the same reason (a test keeps the two equal).
MAX_PIXELS = 4096 * 4096
SALVAGED = 3  # decode's exit status when --salvage wrote the image of the records before a corrupt one
# (not 2: click exits with 2 on a usage error)


class _Group(click.Group):
    """Turns input errors of any command, and failed writes (standard output included), into one
    line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        from .files import guarded_stderr, guarded_stdout

        with guarded_stderr():
            try:
                with guarded_stdout():
                    return super().invoke(ctx)
            except Exception as e:
                if not _is_input_error(e):
                    raise
                click.echo(f"error: {e}", err=True)
                ctx.exit(1)


@click.group(cls=_Group, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diffcodec")
def main() -> None:
    """diffcodec: a progressive image codec built on a denoising diffusion model (DDPM)."""


@main.command(epilog="""
\b
Examples:
  diffcodec train --config tiny --cifar ../shared/data/cifar-10-subset -o runs/tiny --steps 2000
  diffcodec train -o runs/tiny --resume --steps 4000
  diffcodec train --init-from ../shared/models/cifar10-c64 --cifar DATA -o runs/c64-more --warmup 100
  diffcodec train --config ddpm-cifar10 --cifar DATA -o runs/paper --compile reduce-overhead
  torchrun --nproc_per_node 2 -m diffcodec.cli train --config ddpm-cifar10 --cifar DATA -o runs/paper
""")
@click.option("--config", "config_name", default=None,
              help="U-Net configuration: ddpm-cifar10 (the paper's), small, tiny or micro. "
                   "[default: ddpm-cifar10, or the --init-from model's]")
@click.option("--init-from", "init_from", default=None,
              help="Start from this model's weights (a shipped name or a checkpoint folder); the EMA starts there too.")
@training_data_options
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Checkpoint folder.")
@click.option("--steps", default=800_000, show_default=True, type=click.IntRange(min=1), help="Total optimisation steps.")
@batch_size_option(128)
@click.option("--lr", default=2e-4, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--warmup", default=5000, show_default=True, type=click.IntRange(min=0), help="Linear learning-rate warm-up steps.")
@click.option("--grad-clip", default=1.0, show_default=True, type=click.FloatRange(min=0), help="0 disables clipping.")
@click.option("--ema", "ema_decay", default=0.9999, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="EMA decay of the saved weights.")
@click.option("--dropout", default=None, type=click.FloatRange(0, 1, max_open=True), help="Override the configuration's dropout.")
@seed_option("Seed of the run's random draws.")
@click.option("--save-every", default=5000, show_default=True, type=click.IntRange(min=1))
@name_option()
@device_option()
@click.option("--bf16/--no-bf16", default=None, help="bfloat16 autocast of the forward pass. [default: on CUDA only]")
@click.option("--compile", "compile_mode", default=None, metavar="MODE",
              help="torch.compile the network: none, default, reduce-overhead (adds CUDA graphs), max-autotune, "
                   "max-autotune-no-cudagraphs. [default: none]")
@click.option("--log-every", default=None, type=click.IntRange(min=1),
              help="Steps between reads of the running loss (each waits for the device). [default: 100]")
@click.option("--resume", is_flag=True, help="Continue the run in --out (its configuration is reused).")
@force_option("Start afresh even if --out already holds a checkpoint.")
def train(config_name, init_from, cifar, folder, crop_size, min_scale, folder_weight, out_dir, steps, batch_size, lr,
          warmup, grad_clip, ema_decay, dropout, seed, save_every, name, device, bf16, compile_mode, log_every, resume,
          force):
    """Train an ε-network with L_simple (Algorithm 1)."""
    from .data import DataConfig
    from .files import check_folder
    from .train import SpeedConfig, TrainConfig, Trainer, WarmStart, new_run_unet, resumed_config

    out = Path(out_dir)
    check_folder(out, may_create=True)
    speed = {k: v for k, v in (("bf16", bf16), ("log_every", log_every)) if v is not None}
    if compile_mode is not None:
        speed["compile"] = None if compile_mode == "none" else compile_mode
    if resume:
        if init_from is not None:
            raise DiffcodecError("--init-from starts a new run; --resume continues the one in --out")
        cfg = resumed_config(out, steps, speed)
    else:
        data = DataConfig(cifar=list(cifar), folders=list(folder), crop_size=crop_size, min_scale=min_scale,
                          folder_weight=folder_weight)
        cfg = TrainConfig(unet=new_run_unet(out, config_name, init_from, dropout, force), data=data, steps=steps,
                          batch_size=batch_size, lr=lr, warmup_steps=warmup, grad_clip=grad_clip, ema_decay=ema_decay,
                          seed=seed, save_every=save_every, name=name or out.name,
                          init_from=None if init_from is None else WarmStart(init_from), speed=SpeedConfig(**speed))
    trainer = Trainer(cfg, out, device=device, resume=resume)
    trainer.run()
    if trainer.rank == 0:
        start = f", started from {trainer.cfg.init_from.name}" if trainer.cfg.init_from else ""
        click.echo(f"saved {out} after {trainer.step} steps ({trainer.elapsed:.0f} s of training{start})")


@main.command(epilog="""
\b
Examples:
  diffcodec nll ../shared/data/cifar-10-subset --limit 64
  diffcodec nll ../shared/data/cifar-10-subset --json split.json --variance fixedsmall
  diffcodec nll my_crops/ --model runs/tiny --batch-size 32
""")
@click.argument("data", type=click.Path())
@model_option()
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write the split and per-t arrays here.")
@variance_option(VARIANCES + ("optimal",), "Reverse variance of the top-level figures (all are always computed; "
                 "optimal needs the model's error table).")
@batch_size_option(64)
@click.option("--steps-per-call", default=None, type=click.IntRange(min=1),
              help="Timesteps per network call (batch × this many images per call; the terms do not change). "
                   "[default: enough for about 512 images of 32×32 per call]")
@click.option("--bf16", is_flag=True, help="Run the network under bfloat16 autocast (faster on GPUs, slightly "
              "different ε̂); the bound's arithmetic stays float64.")
@seed_option("Seed of the x_t draws.")
@device_option()
@force_option("Overwrite an existing --json file.")
def nll(data, model_name, limit, json_path, variance, batch_size, steps_per_call, bf16, seed, device, force):
    """Exact variational bound of DATA, split into rate and distortion (bits/dim).

    DATA is a folder with CIFAR-10 python batches (its test split is used), a folder of
    equally sized images, or one image file. Every one of the T = 1000 terms is evaluated,
    as the paper did: this takes T network evaluations per image. The x_t of each timestep
    are drawn in the same order whatever --batch-size and --steps-per-call.
    """
    import torch

    from .checkpoint import load_model
    from .data import find_cifar_dir, load_eval_images
    from .devices import device_description, pick_device
    from .files import check_writable, write_json
    from .nll import OPTIMAL, auto_steps_per_call, evaluate_dataset, nll_document

    if json_path:
        check_writable(Path(json_path), force)
    images = load_eval_images(Path(data), limit)
    dev = pick_device(device)
    model = load_model(model_name, dev)
    model.check_size(images.shape[2], images.shape[3], f"image size {tuple(images.shape[2:])}")
    if variance == OPTIMAL and model.error_table is None:
        raise DiffcodecError(f"model {model.name} has no error table for the optimal variances "
                             f"(make one with 'diffcodec variances')")
    if steps_per_call is None:
        steps_per_call = auto_steps_per_call(min(batch_size, images.shape[0]), images.shape[2], images.shape[3],
                                             model.diffusion().num_steps)
    result = evaluate_dataset(model, images.to(dev), batch_size=batch_size, seed=seed, steps_per_call=steps_per_call,
                              bf16=bf16, error_table=model.error_table, error_margin=True)
    is_cifar = Path(data).is_dir() and find_cifar_dir(Path(data)) is not None
    doc = nll_document(result, model, variance, data=str(data), data_split="test" if is_cifar else "files",
                       seed=seed, network_dtype="bfloat16" if bf16 else "float32", batch_size=batch_size,
                       steps_per_call=steps_per_call, device=device_description(dev), torch=torch.__version__)
    click.echo(f"model {model.name} ({model.weights_sha256[:12]}), {result.images} images of {data}"
               f"{' (CIFAR-10 test split)' if is_cifar else ''}, {result.dims} dims, T = {model.diffusion().num_steps}")
    _print_bound(doc)
    if json_path:
        write_json(Path(json_path), doc, force=True)
        click.echo(f"wrote {json_path}")


def _print_bound(doc: dict) -> None:
    """nll's table: rate, distortion and total under each variance, and the paper's figures."""
    from .nll import OPTIMAL, PAPER_CIFAR10

    click.echo(f"{'':24}{'rate':>8}{'distortion':>12}{'total':>8}   bits/dim   RMSE x̂0(x1) on [0,255]")
    table = doc.get("optimal_table")
    rows = [("fixedlarge", "σ² = β  (fixedlarge)"), ("fixedsmall", "σ² = β̃  (fixedsmall)")]
    rows += [(OPTIMAL, "σ² = σ*² (optimal)")] if table is not None else []
    for v, label in rows:
        r = doc["by_variance"][v]
        width = 24 + sum(1 for c in label if unicodedata.combining(c))  # combining marks take no column
        click.echo(f"{label:{width}}{r['rate_bits_per_dim']:8.3f}{r['distortion_bits_per_dim']:12.3f}"
                   f"{r['total_bits_per_dim']:8.3f}              {r['rmse_0_255']:.3f}")
    if table is not None:
        spread = max(abs(table[k] - doc["by_variance"][OPTIMAL]["total_bits_per_dim"])
                     for k in ("total_bits_per_dim_at_minus_1se", "total_bits_per_dim_at_plus_1se"))
        click.echo(f"  σ*² from error table {table['sha256'][:12]} ({table['meta'].get('images', '?')} training "
                   f"images); moving it by one standard error changes the total by at most {spread:.5f} bits/dim")
    p = PAPER_CIFAR10
    click.echo(f"{'paper, CIFAR-10 test':24}{p['rate_bits_per_dim']:8.2f}{p['distortion_bits_per_dim']:12.2f}"
               f"{p['total_bits_per_dim']:8.2f}              {p['rmse_0_255']:.2f}")


@main.command(epilog="""
\b
Examples:
  diffcodec variances --model default --cifar ../shared/data/cifar-10-subset
  diffcodec variances --model photo --folder ../shared/data/photos --crop-size 64 --min-scale 0.3
  diffcodec variances --model runs/tiny --cifar DATA --images 256 -o table.json
""")
@model_option()
@training_data_options
@click.option("--images", default=128, show_default=True, type=click.IntRange(min=2),
              help="Training images drawn (the Monte Carlo sample of every timestep).")
@batch_size_option(64)
@seed_option("Seed of the image draws and of the x_t draws.")
@click.option("-o", "--out", "out_path", type=click.Path(), default=None,
              help="Table file to write [default: reverse_variances.json in the model's folder].")
@device_option()
@force_option("Replace an existing table.")
def variances(model_name, cifar, folder, crop_size, min_scale, folder_weight, images, batch_size, seed, out_path,
              device, force):
    """Estimate a model's optimal reverse variances on a sample of its training data.

    For every timestep t the network's mean squared error of x̂_0 per dimension, e_t, is
    measured on the drawn images (a grid of about 120 timesteps, interpolated between them);
    σ*² = β̃ + c²·e_t then gives the fewest bits for every step of any chain (diffcodec.variances).
    The table is written beside the weights, where `nll` and `encode` find it; files coded
    with it name its hash. Use the data the model was trained on, never test images.
    """
    import torch

    from .checkpoint import load_model
    from .data import DataConfig
    from .devices import device_description, pick_device
    from .files import check_writable
    from .models import resolve_model_path
    from .nll import auto_steps_per_call
    from .variance_estimation import estimate
    from .variances import TABLE_FILE

    target = Path(out_path) if out_path else resolve_model_path(model_name) / TABLE_FILE
    check_writable(target, force)
    data = DataConfig(cifar=list(cifar), folders=list(folder), crop_size=crop_size, min_scale=min_scale,
                      folder_weight=folder_weight)
    draws = data.build().sample(images, torch.Generator().manual_seed(seed))
    dev = pick_device(device)
    model = load_model(model_name, dev)
    model.check_size(crop_size, crop_size, f"--crop-size {crop_size}")
    per_call = auto_steps_per_call(min(batch_size, images), crop_size, crop_size, 120)
    meta = {"data": data.to_dict(), "device": device_description(dev), "torch": torch.__version__}
    table = estimate(model, draws.to(dev), batch_size=batch_size, seed=seed, steps_per_call=per_call, meta=meta)
    table.save(target)
    m = table.meta
    click.echo(f"wrote {target}: e_t of {model.name} on {m['images']} training images of {crop_size}×{crop_size}, "
               f"{len(m['grid'])} timesteps; relative standard error median {m['relative_stderr_median']:.3f}, "
               f"max {m['relative_stderr_max']:.3f}; table {table.sha256[:12]}")


@main.command(epilog="""
\b
Examples:
  diffcodec sample -o samples.png
  diffcodec sample -n 64 --steps 250 --seed 1 -o grid.png --model runs/tiny
""")
@model_option()
@click.option("-n", "--count", default=16, show_default=True, type=click.IntRange(min=1), help="Number of samples.")
@click.option("--size", default=32, show_default=True, type=click.IntRange(min=1), help="Side of each sample in pixels.")
@click.option("--steps", default=None, type=click.IntRange(min=1),
              help="Respace the chain to this many evenly spaced steps (default: all T).")
@variance_option(VARIANCES)
@seed_option("Seed of the samples' draws.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(), help="PNG grid to write.")
@device_option()
@force_option("Overwrite an existing output file.")
def sample(model_name, count, size, steps, variance, seed, out_path, device, force):
    """Draw samples by ancestral sampling (Algorithm 2) and save them as a PNG grid."""
    import torch

    from .checkpoint import load_model
    from .data import to_uint8
    from .devices import pick_device
    from .diffusion import GaussianDiffusion
    from .files import check_writable, write_png
    from .sampling import image_grid, sample as draw

    check_writable(Path(out_path), force)
    dev = pick_device(device)
    model = load_model(model_name, dev)
    model.check_size(size, size, f"--size {size}")
    schedule = model.schedule_config.build()
    if steps is not None:
        if steps > len(schedule):
            raise DiffcodecError(f"--steps {steps} exceeds the model's {len(schedule)} steps")
        schedule = schedule.evenly_spaced(steps)
    generator = torch.Generator(device=dev).manual_seed(seed)
    x = draw(GaussianDiffusion(schedule), model.eps_fn, (count, model.unet_config.in_channels, size, size),
             variance=variance, generator=generator, device=dev, progress=True)
    write_png(Path(out_path), image_grid(to_uint8(x).cpu()), force=True)
    click.echo(f"wrote {count} samples to {out_path}")


@main.command(short_help="Convert diffusers UNet2DModel weights to a checkpoint.", epilog="""
\b
Examples:
  diffcodec convert ~/models/ddpm-cifar10-32 -o models/ddpm-cifar10
  diffcodec nll ../shared/data/cifar-10-subset --model models/ddpm-cifar10
""")
@click.argument("source", type=click.Path())
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Checkpoint folder to write.")
@name_option()
@force_option("Replace an existing checkpoint in --out.")
def convert(source, out_dir, name, force):
    """Convert a diffusers UNet2DModel folder (e.g. google/ddpm-cifar10-32) to a diffcodec checkpoint.

    SOURCE is the downloaded model folder (or a pipeline folder with unet/ and scheduler/).
    The schedule is read from the pipeline's scheduler/scheduler_config.json when present
    (only the linear β schedule converts), otherwise the paper's is assumed.
    """
    from .checkpoint import save_checkpoint
    from .checkpoint_config import CONFIG_FILE
    from .convert import load_diffusers_folder, schedule_from_diffusers
    from .files import check_folder

    out = Path(out_dir)
    if (out / CONFIG_FILE).exists() and not force:
        raise DiffcodecError(f"{out} already holds a checkpoint; pass --force to replace it")
    check_folder(out, may_create=True)
    unet, state = load_diffusers_folder(Path(source))
    schedule, schedule_source = schedule_from_diffusers(Path(source))
    save_checkpoint(out, state, unet, schedule, name=name or out.name,
                    meta={"converted_from": str(source), "schedule_source": schedule_source})
    click.echo(f"wrote {out} ({sum(v.numel() for v in state.values()):,} parameters, schedule from {schedule_source})")


# ---- the codec -------------------------------------------------------------------------------

def _read_ddc(file: str, salvage: bool = False):
    """(name, bytes, header, description) of a .ddc argument (``-``: standard input); every
    error names the file (with ``salvage``, a corrupt record is left to the decoder)."""
    from bitstream.container import FormatError
    from .codec import describe, read_header
    from .files import describe_source, read_input

    name = describe_source(file)
    data = read_input(file, ".ddc file")
    try:
        return name, data, read_header(data), describe(data, salvage=salvage)  # checks every record's checksum
    except (DiffcodecError, FormatError) as e:
        raise DiffcodecError(f"{name}: {e}") from None


def _image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (by extension; hidden files skipped), by name."""
    from PIL import Image

    extensions = Image.registered_extensions()
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions)
    if not files:
        raise DiffcodecError(f"folder {folder} holds no image files")
    return files


def _encode_jobs(images: tuple[str, ...], out: str, force: bool) -> list[tuple[str, str]]:
    """(input, output) pairs, checked before any work.

    ``-o`` names a folder when it is an existing folder or ends in '/' (a missing one is
    created); then image ``X.*`` becomes ``<folder>/X.ddc``.  Several images (or a folder of
    them) need such a folder; one image may also go to a file or to standard output (``-``).
    """
    from .files import STDIO, check_folder, check_output, check_writable

    if STDIO in images and len(images) > 1:
        raise DiffcodecError("'-' (standard input) must be the only image")
    sources: list[str] = []
    for arg in images:
        sources += [str(p) for p in _image_files(Path(arg))] if arg != STDIO and Path(arg).is_dir() else [arg]
    to_folder = out != STDIO and (out.endswith(("/", os.sep)) or Path(out).is_dir())
    if not to_folder:
        if len(sources) > 1 or any(a != STDIO and Path(a).is_dir() for a in images):
            raise DiffcodecError(f"several images need -o to name a folder (an existing one, or ending in '/'), "
                                 f"not {out}")
        check_output(out, force)
        return [(sources[0], out)]
    if sources == [STDIO]:
        raise DiffcodecError("give -o a file name (or '-') when the image comes from standard input")
    folder = Path(out)
    if not folder.is_dir() and not folder.parent.is_dir():
        raise DiffcodecError(f"folder {folder.parent} does not exist")
    check_folder(folder, may_create=True)
    jobs, seen = [], {}
    for src in sources:
        target = folder / (Path(src).stem + ".ddc")
        if target in seen:
            raise DiffcodecError(f"{seen[target]} and {src} would both be written to {target}; "
                                 "encode them separately")
        seen[target] = src
        if folder.is_dir():
            check_writable(target, force)
        jobs.append((src, str(target)))
    return jobs


def _encode_steps(model, config, stop, pixels: int) -> int:
    """The encoder's progress total (coded steps and the lossless record), known before the
    first step ends; the number of steps does not depend on where records end."""
    from bitstream.container import RecordLayout
    from .codec import resolve_t_stop
    from .codec.plan import make_plan

    plan = make_plan(model.schedule_config.num_timesteps, resolve_t_stop(config, stop, pixels), config.groups,
                     config.layout if config.layout is not None else RecordLayout.COARSE)
    return plan.num_steps + 1


def _say_estimate(name, model, image, config, stop) -> None:
    """A note on standard error before an encode estimated at over a minute, with a faster setting."""
    import torch

    from .codec import call_size
    from .codec.cost import LONG_ENCODE_SECONDS, estimate_encode, faster_setting

    if model.device.type != "cpu":
        return  # the estimate is of 2 CPU cores
    estimate = estimate_encode(model, image.width, image.height, config, stop)
    if estimate.seconds <= LONG_ENCODE_SECONDS:
        return
    faster = faster_setting(model, image.width, image.height, config, stop)
    hint = f"; --candidates {faster[0]}: {faster[1].describe()}" if faster else ""
    if torch.cuda.is_available():
        hint += "; --device cuda runs it on this machine's GPU"
    click.echo(f"note: {name}: encoding {image.width}×{image.height} with 2^{call_size(config, model, image.width * image.height)[0]} "
               f"candidates takes {estimate.describe()} on 2 idle CPU cores ({estimate.steps} coded steps){hint}; "
               f"time grows with the pixels", err=True)


@main.command(epilog="""
\b
Examples:
  diffcodec encode photo.png -o photo.ddc                 (stops at 35 dB PSNR)
  diffcodec encode photo.png -o photo.ddc --lossless      (full rate: decodes bit for bit)
  diffcodec encode photo.png -o photo.ddc --bpp 1.0 --stats photo.json
  diffcodec encode photo.png -o photo.ddc --upto-t 100
  diffcodec encode a.png b.jpg -o coded/                  (coded/a.ddc, coded/b.ddc)
  diffcodec encode photos/ -o coded/                      (every image in photos/)
  cat photo.png | diffcodec encode - -o - > photo.ddc     (standard input and output)
""")
@click.argument("images", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(allow_dash=True),
              help="The .ddc file to write ('-': standard output), or a folder (existing, or ending in '/').")
@model_option(AUTO, f"{AUTO}: {CIFAR10} for images of at most {CIFAR10_MAX_SIDE}×{CIFAR10_MAX_SIDE} pixels, {PHOTO} "
                    f"for larger ones (per image). " + "; ".join(f"{n}: {use}" for n, use in MODEL_USES.items())
                    + ". Or a checkpoint folder.")
@upto_t_option("Stop once the chain reaches this timestep (0: lossless).")
@click.option("--bpp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest file within this many bits per pixel (headers included); the last step ends "
              "where the budget is spent (format version 6).")
@click.option("--psnr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop where the decoded image (mean) reaches this PSNR in dB: the last step ends there "
              "(format version 6). [default: 35]")
@click.option("--lossless", is_flag=True,
              help="Code everything: the decoded PNG equals the 8-bit image coded (the input itself for 8-bit "
                   "inputs; see the table of input modes).")
@click.option("--stats", "stats_path", type=click.Path(), default=None,
              help="Write per-step KL, coded bits and record sizes, and each record's PSNR, MS-SSIM and chain "
                   "health, as JSON (one image only).")
@click.option("--stats-flow", is_flag=True,
              help="With --stats: also the PSNR and MS-SSIM of each record's probability-flow reconstruction "
                   "(a decode, 50 network passes a record).")
@click.option("--t-stop", default=None, type=click.IntRange(1, 99),
              help="Last channel-simulated step; x_0 is coded losslessly from x_{t-stop}. "
                   "[default: 20 with --lossless or --upto-t 0, else 10]")
@click.option("--groups", default=40, show_default=True, type=click.IntRange(1, 255),
              help="Coded steps from T down to t-stop (log-spaced; encoder time grows with it).")
@click.option("--candidates", "log2_candidates", default=None, type=click.IntRange(1, 20),
              help="log2 of the candidates per channel-simulation call (encoder time grows as 2^this). "
                   "[default: 16 on a GPU; on a CPU 16 up to 64×64 pixels, else 12 (pfr: 12)]")
@click.option("--chunk-bits", default=None, type=click.FloatRange(0.25, 63.75),
              help="KL budget per call in bits (a multiple of 1/4). [default: k − 2 for greedy, 5 (CPU) and 8 "
                   "(GPU) for pfr]")
@click.option("--selection", default="greedy", show_default=True, metavar="RULE",
              help="Which candidate a call sends: greedy (the largest weight, index in k bits: the smallest "
                   "files), pfr (exact Poisson functional representation: every x_t a sample of q, for the flow "
                   "and ancestral pictures), or tempered:λ (argmin ln T − λ ln w, λ a multiple of 1/4).")
@click.option("--records", type=click.Choice(["auto", "coarse", "every-step"]), default="auto", show_default=True,
              help="Where records (decodable prefixes) end; auto: coarse below 256×256 pixels.")
@click.option("--tile", default="auto", show_default=True, metavar="SIDE[:HALO]",
              help="How the network sees the image: in tiles of about SIDE pixels, each with HALO pixels of "
                   "context (memory and time linear in the pixels; format 5), or 0: whole. auto: whole up to "
                   "512×512 pixels, else 384:16.")
@seed_option("Shared-randomness seed.", type=click.IntRange(0, 2**64 - 1))
@max_pixels_option("encode")
@device_option(codec=True)
@force_option("Overwrite existing output files.")
def encode(images, out_path, model_name, upto_t, bpp, psnr, lossless, stats_path, stats_flow, t_stop, groups,
           log2_candidates, chunk_bits, selection, records, tile, seed, max_pixels, device, force):
    """Compress IMAGES (PNG, JPEG, …; any size) into .ddc files.

    One IMAGE goes to the file -o names, or to standard output with '-o -'; IMAGE '-' reads
    standard input. Several images, or a folder (its image files, not its subfolders), go to
    the folder -o names, which must exist or end in '/': image X.png becomes X.ddc there. Two
    images of the same name, or an existing output without --force, stop the command before
    anything is written.

    The file is progressive: every prefix of records decodes. Pick at most one of --upto-t,
    --bpp, --psnr, --lossless; the default stops at 35 dB PSNR. RGB, grayscale and alpha are
    coded as they are; 16-bit and floating-point samples are rounded to 8 bits, other modes
    converted, each with a note on stderr; animations are refused.

    A full-rate file channel-codes down to t = 20 and sends the rest losslessly; an early stop
    codes down to t = 10 (records near small t give the high-PSNR prefixes). So a lossy file
    is a byte prefix of the lossless one only when both are made with the same --t-stop. A
    --psnr above what any lossy image of that size has is full rate. When no lossy prefix meets
    --bpp, --psnr or --upto-t and the lossless record does (within 15 % for --bpp), the full-rate
    file is encoded too and the smaller kept, so such a target never gives a larger file than
    --lossless (at the cost of a second encode). A --bpp budget stops coding in the first record
    that cannot fit; when even the first record exceeds it, that file is written with a warning.

    Time grows with the pixels, the candidates (--candidates) and the coded steps; the
    README's "Image sizes" table gives it for 2 idle CPU cores. Encodes estimated at over a
    minute print their estimate first.
    """
    from .codec import choose_stop, measure_flow
    from .files import STDIO, check_writable, describe_source, make_folder, write_json

    stop = choose_stop(upto_t, bpp, psnr, lossless, spell=lambda field: "--" + field.replace("_", "-"))
    config = _codec_config(t_stop, groups, log2_candidates, chunk_bits, selection, records, tile, seed)
    device = _pick_device(device)
    jobs = _encode_jobs(images, out_path, force)
    if stats_path and len(jobs) > 1:
        raise DiffcodecError("--stats takes a single image")
    if stats_flow and not stats_path:
        raise DiffcodecError("--stats-flow needs --stats")
    if stats_path:
        check_writable(Path(stats_path), force)
    inputs = _EncodeInputs(jobs, max_pixels or None)
    models = inputs.models(model_name, config, device)
    if len(jobs) > 1 or jobs[0][1] != out_path:
        make_folder(Path(out_path))
    say = functools.partial(click.echo, err=out_path == STDIO)  # standard output carries the file then
    for i, (source, target) in enumerate(jobs):
        loaded, model = inputs.image(i), models[i]
        result = _encode_one(describe_source(source), loaded, model, config, stop, target,
                             "encode" if len(jobs) == 1 else f"encode {i + 1}/{len(jobs)}", inputs.limit)
        say(_encoded_summary(target, result.stats, loaded))
        if stats_path:
            if stats_flow:
                measure_flow(result.stats, result.data, model, loaded.image)
            doc = result.stats.to_dict() | {"image": describe_source(source), "model": model.name,
                                            "model_sha256": model.weights_sha256}
            write_json(Path(stats_path), doc, force=True)
            say(f"wrote {stats_path}")


def _pick_device(name: str):
    from .devices import pick_device

    return pick_device(name)


def _codec_config(t_stop, groups, log2_candidates, chunk_bits, selection, records, tile, seed):
    """encode's options as a ``CodecConfig`` (--selection and --tile named in their errors; the
    config checks the chunk bits)."""
    from bitstream.container import RecordLayout
    from bitstream.selection import SelectionRule
    from .codec import CodecConfig
    from .tiling import Tiling

    try:
        rule = SelectionRule.parse(selection)
    except ValueError as e:
        raise DiffcodecError(f"--selection: {e}") from None
    try:
        tiling = None if tile == "auto" else Tiling.parse(tile)
    except ValueError as e:
        raise DiffcodecError(f"--tile {tile}: {e}") from None
    layout = {"auto": None, "coarse": RecordLayout.COARSE, "every-step": RecordLayout.EVERY_STEP}[records]
    return CodecConfig(t_stop=t_stop, groups=groups, log2_candidates=log2_candidates, chunk_bits=chunk_bits,
                       layout=layout, seed=seed, selection=rule, tiling=tiling)  # checks chunk_bits


class _EncodeInputs:
    """encode's images: every one read and checked against the pixel limit before any work (so
    that a bad one writes nothing), then read again one at a time as it is coded (the first is
    kept: standard input cannot be read twice)."""

    def __init__(self, jobs: list[tuple[str, str]], limit: int | None):
        from .files import STDIO, read_input

        self.jobs, self.limit = jobs, limit
        self.stdin = read_input(STDIO) if jobs[0][0] == STDIO else None
        self.first = self._load(jobs[0][0])
        self.sizes = [(self.first.image.width, self.first.image.height)]
        self.sizes += [(im.width, im.height) for im in (self._load(src).image for src, _ in jobs[1:])]

    def _load(self, source: str):
        from .codec import check_pixels
        from .files import STDIO
        from .images import load_image, read_image

        loaded = read_image(self.stdin, "standard input") if source == STDIO else load_image(Path(source))
        with _naming(source):  # the size alone, before a model is picked and loaded
            check_pixels(loaded.image.width, loaded.image.height, self.limit, "encoding")
        return loaded

    def image(self, i: int):
        return self.first if i == 0 else self._load(self.jobs[i][0])

    def models(self, model_name: str, config, device) -> list:
        """The model of each image (``auto`` picks by size), each loaded once, and every image
        checked against the limit as that model's network sees it (whole or in tiles)."""
        from .checkpoint import load_model
        from .codec import check_pixels
        from .codec.chain import padded_size
        from .codec.config import tiling_for
        from .models import resolve_model_name

        names = [resolve_model_name(model_name, w, h) for w, h in self.sizes]
        loaded = {name: load_model(name, device) for name in dict.fromkeys(names)}
        for (source, _), (w, h), name in zip(self.jobs, self.sizes, names):
            f = loaded[name].unet_config.downsampling_factor
            with _naming(source):
                check_pixels(w, h, self.limit, "encoding", f, whole=tiling_for(config, padded_size(h, w, f)).whole)
        return [loaded[name] for name in names]


@contextlib.contextmanager
def _naming(source: str):
    """Prefixes an input's name to a DiffcodecError raised inside the block."""
    from .files import describe_source

    try:
        yield
    except DiffcodecError as e:
        raise DiffcodecError(f"{describe_source(source)}: {e}") from None


def _encode_one(name: str, loaded, model, config, stop, target: str, desc: str, limit: int | None):
    """One image coded and written to ``target``, with its notes, warnings and progress bar."""
    from .codec import compress
    from .files import write_output
    from .models import size_warning

    for note in loaded.notes:
        click.echo(f"note: {name}: {note}", err=True)
    img = loaded.image
    warning = size_warning(model.weights_sha256, img.width, img.height)
    if warning:
        click.echo(f"warning: {name}: {warning}", err=True)
    _say_estimate(name, model, img, config, stop)
    with _Progress(desc, _encode_steps(model, config, stop, img.width * img.height)) as progress:
        result = compress(img, model, config, stop, progress, max_pixels=limit)
    write_output(target, result.data)
    st = result.stats
    if st.full_rate_retry is not None:
        kept = "the full-rate one" if st.full_rate_retry.kept == "full_rate" else \
            f"the one coded down to t = {st.config.t_stop}"
        click.echo(f"note: {name}: no lossy prefix met the target; the full-rate file (as --lossless writes it) "
                   f"was encoded too, and the smaller file within the target is written ({kept})", err=True)
    if not st.target.met:
        click.echo(f"warning: {name}: --bpp {stop.bpp:g} is not met: the smallest file this encoder writes (header "
                   f"and first record) is {st.bpp:.3f} bpp", err=True)
    return result


def _encoded_summary(target: str, st, loaded) -> str:
    """encode's line for one written file."""
    from .files import describe_target

    last = st.last_record
    if last is not None and last.t != 0:
        reached = f"t = {last.t}, mean reconstruction {last.psnr_mean:.2f} dB"
    elif last is None:
        reached = "t = 1000, mean reconstruction nan dB"
    elif loaded.exact:
        reached = "lossless"
    else:
        reached = "lossless for the 8-bit image coded, not for the input's samples (see the note)"
    img = loaded.image
    return (f"wrote {describe_target(target)}: {st.file_bytes} bytes, {st.bpp:.3f} bpp "
            f"({img.width}×{img.height}, {st.record_count} records), {reached}")


class _Progress:
    """A progress bar for the codec's ``progress(done, total)`` calls: opened at once when the
    total is known, else at the first call; a coder that ends early shrinks the total to the
    steps done."""

    def __init__(self, desc: str, total: int | None = None):
        self.desc, self.bar = desc, None
        if total is not None:
            self._open(total)

    def _open(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=self.desc, total=total, unit="step", dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self._open(total)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if self.bar is not None:
            if error is None and self.bar.n < self.bar.total:
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
        return False


@main.command(epilog="""
\b
Examples:
  diffcodec decode photo.ddc -o photo.png
  diffcodec decode photo.ddc -o coarse.png --upto-t 200 --reconstruct flow
  diffcodec decode photo.ddc -o photo.png --frames frames/     (x̂_0 after each record + animation.gif)
  diffcodec decode - -o - < photo.ddc > photo.png              (standard input and output)
""")
@click.argument("file", type=click.Path(allow_dash=True))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(allow_dash=True),
              help="PNG to write ('-': standard output).")
@upto_t_option("Decode only up to the first record at or below this timestep.")
@click.option("--reconstruct", "how", type=click.Choice(["mean", "flow", "ancestral"]), default="mean",
              show_default=True, help="How a lossy prefix becomes an image: x̂_0, probability flow, or a sample.")
@click.option("--steps", default=50, show_default=True, type=click.IntRange(min=1),
              help="Network passes for flow and ancestral reconstructions.")
@click.option("--frames", "frames_dir", type=click.Path(), default=None,
              help="Folder for the image after every record and an animation.")
@model_option(None, "Model name or folder (default: the shipped model the file names).")
@click.option("--accept-mismatch", is_flag=True,
              help="Write the image even if the lossless record does not reproduce the encoder's pixels.")
@click.option("--salvage", is_flag=True,
              help="When a record is corrupt, write the image of the intact records before it (with a warning "
                   f"and exit status {SALVAGED}) instead of stopping with an error.")
@max_pixels_option("decode")
@device_option(codec=True)
@force_option("Overwrite existing output files.")
def decode(file, out_path, upto_t, how, steps, frames_dir, model_name, accept_mismatch, salvage, max_pixels, device,
           force):
    """Decode a .ddc FILE (or any prefix of it) to a PNG.

    FILE '-' reads standard input; '-o -' writes the PNG to standard output (messages go to
    standard error then). A truncated FILE decodes its complete records, with a warning.

    \b
    Exit status: 0 the image was written; 1 an error, nothing written; 2 a usage error;
    3 --salvage wrote the image of the intact records before a corrupt one.
    """
    from .codec import check_pixels, damage_warnings, decompress, model_for_file
    from .files import STDIO, OutputSet, check_output, describe_target
    from .reconstruct import Reconstruction

    check_output(out_path, force)
    if frames_dir:
        _check_frames_folder(Path(frames_dir), force)
    name, data, header, _ = _read_ddc(file, salvage)
    model = model_for_file(header, model_name, _pick_device(device))
    with _naming(file):  # from the header, before any work
        check_pixels(header.width, header.height, max_pixels or None, "decoding", model.unet_config.downsampling_factor,
                     whole=header.tile == 0)
    with _Progress("decode") as progress:
        out = decompress(data, model, upto_t, Reconstruction(how), steps=steps, frames=bool(frames_dir),
                         progress=progress, max_pixels=max_pixels or None, salvage=salvage)
    for warning in damage_warnings(out, name, accept_mismatch, "nothing written; --accept-mismatch writes the "
                                                               "image anyway"):
        click.echo(f"warning: {warning}", err=True)
    frames = _frame_files(out.frames) if frames_dir else []
    with OutputSet() as outputs:  # the image and its frames appear together, or none of them
        outputs.add(out_path, out.image.png_bytes())
        if frames_dir:
            outputs.folder(Path(frames_dir))
            for frame, data in frames:
                outputs.add(Path(frames_dir) / frame, data)
    if out.t == 0:
        what = "lossless" if out.exact else "all records, NOT the encoded image"
    else:
        what = f"t = {out.t}, {how} reconstruction"
    say = functools.partial(click.echo, err=out_path == STDIO)
    say(f"wrote {describe_target(out_path)} ({what}, {out.records_used} records)")
    if frames_dir:
        say(f"wrote {len(frames) - 1 if frames else 0} frames and animation.gif to {frames_dir}")
    if out.damage is not None:
        click.get_current_context().exit(SALVAGED)


def _check_frames_folder(frames: Path, force: bool) -> None:
    """--frames: a folder (made if missing) that is empty, or may be written into with --force."""
    from .files import check_folder

    if frames.exists() and not frames.is_dir():
        raise DiffcodecError(f"--frames {frames} is a file, not a folder")
    if frames.is_dir() and any(frames.iterdir()) and not force:
        raise DiffcodecError(f"{frames} is not empty; pass --force to write into it")
    check_folder(frames, may_create=True)


def _frame_files(frames) -> list[tuple[str, bytes]]:
    """--frames: (file name, bytes) of the image after every record, then an animation of them."""
    import io

    files = [(f"frame_{i:03d}_t{t:04d}.png", image.png_bytes()) for i, (t, image) in enumerate(frames)]
    images = [image.to_pil().convert("RGB") for _, image in frames]
    if not images:
        return []
    buf = io.BytesIO()
    scale = max(1, 256 // max(images[0].size))
    big = [im.resize((im.width * scale, im.height * scale), 0) for im in images]
    big[0].save(buf, format="GIF", save_all=True, append_images=big[1:], duration=400, loop=0)
    return files + [("animation.gif", buf.getvalue())]


@main.command(epilog="""
\b
Examples:
  diffcodec info photo.ddc
  diffcodec info photo.ddc --json
  diffcodec encode photo.png -o - | diffcodec info -
""")
@click.argument("file", type=click.Path(allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(file, as_json):
    """Show a .ddc FILE's header, its records and the cumulative rate after each.

    FILE '-' reads standard input. Rates are given in bits per pixel (bpp) and in bits per
    dimension (bits/dim = bpp / 3: three colour samples a pixel, as the bound counts them).
    """
    import json

    name, _, _, doc = _read_ddc(file)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    h = doc["header"]
    bits_per_dim = doc["file_bytes"] * 8 / (3 * h["width"] * h["height"])
    click.echo(f"{name}: .ddc v{h['version']}, {h['width']}×{h['height']} {h['mode']}, model {h['model_hash']}…, "
               f"{doc['file_bytes']} bytes ({doc['bpp']:.3f} bpp = {bits_per_dim:.4f} bits/dim)")
    end = (f"t = {h['end_t']} (ended where the encoder's target was met; no lossless record)" if h.get("end_t")
           else f"t_stop = {h['t_stop']}")
    click.echo(f"  plan: {doc['coded_steps']} coded steps from t = {doc['boundaries'][0]} to {end} "
               f"(log-spaced), 2^{h['log2_candidates']} candidates, {h['chunk_bits']} bits per call, "
               f"σ² = {h['variance']}, records {h['layout']}, seed {h['seed']}"
               + (f", selection {h['selection']}" if "selection" in h else "")
               + (f", network in tiles of {h['tile']} px (halo {h['halo']})" if h["tile"] else ""))
    click.echo(f"  header {doc['header_bytes']} bytes")
    click.echo(f"  {'record':>6} {'content':>16} {'bytes':>7} {'cum. bits/dim':>14}")
    for r in doc["records"]:
        click.echo(f"  {r['record']:>6} {r['content']:>16} {r['bytes']:>7} {r['cumulative_bits_per_dim']:>14.4f}")
    if doc["truncated"]:
        click.echo("  (the file ends inside a record: it is truncated)")


if __name__ == "__main__":
    main()
