"""The ``diffcodec`` command line: thin wrappers over the library.

Errors caused by input (missing files, bad data, mismatched checkpoints) print one line
``error: …`` and exit with status 1; nothing is written in that case.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from .errors import DiffcodecError

EXAMPLES = """
\b
Examples:
  diffcodec nll ../shared/data/cifar-10-subset --limit 64
  diffcodec sample -n 16 -o samples.png --steps 100
  diffcodec train --config tiny --cifar ../shared/data/cifar-10-subset -o runs/tiny --steps 2000
"""


def friendly_errors(func):
    """Turn input errors into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DiffcodecError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise DiffcodecError(f"{path} exists; pass --force to overwrite it")


@click.group(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diffcodec")
def main() -> None:
    """diffcodec: a progressive image codec built on a denoising diffusion model (DDPM)."""


@main.command(epilog="""
\b
Examples:
  diffcodec train --config tiny --cifar ../shared/data/cifar-10-subset -o runs/tiny --steps 2000
  diffcodec train -o runs/tiny --resume --steps 4000
  torchrun --nproc_per_node 2 -m diffcodec.cli train --config ddpm-cifar10 --cifar DATA -o runs/paper
""")
@click.option("--config", "config_name", default="ddpm-cifar10", show_default=True,
              help="U-Net configuration: ddpm-cifar10 (the paper's), small, tiny or micro.")
@click.option("--cifar", multiple=True, type=click.Path(), help="Folder with CIFAR-10 python batches (train split). Repeatable.")
@click.option("--folder", multiple=True, type=click.Path(), help="Folder of images to take random crops from. Repeatable.")
@click.option("--crop-size", default=32, show_default=True, help="Training image size.")
@click.option("--min-scale", default=1.0, show_default=True, help="Crops are downscaled by a random factor in [min-scale, 1].")
@click.option("--folder-weight", default=0.5, show_default=True, help="Share of folder crops when CIFAR is also given.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Checkpoint folder.")
@click.option("--steps", default=800_000, show_default=True, help="Total optimisation steps.")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=2e-4, show_default=True)
@click.option("--warmup", default=5000, show_default=True, help="Linear learning-rate warm-up steps.")
@click.option("--grad-clip", default=1.0, show_default=True)
@click.option("--ema", "ema_decay", default=0.9999, show_default=True, help="EMA decay of the saved weights.")
@click.option("--dropout", default=None, type=float, help="Override the configuration's dropout.")
@click.option("--seed", default=0, show_default=True)
@click.option("--save-every", default=5000, show_default=True)
@click.option("--name", default=None, help="Model name recorded in the checkpoint (default: the folder's name).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--resume", is_flag=True, help="Continue the run in --out (its configuration is reused).")
@click.option("--force", is_flag=True, help="Start afresh even if --out already holds a checkpoint.")
@friendly_errors
def train(config_name, cifar, folder, crop_size, min_scale, folder_weight, out_dir, steps, batch_size, lr, warmup,
          grad_clip, ema_decay, dropout, seed, save_every, name, device, resume, force):
    """Train an ε-network with L_simple (Algorithm 1)."""
    import dataclasses

    from .checkpoint import CONFIG_FILE, read_config
    from .data import DataConfig
    from .train import TrainConfig, Trainer
    from .unet import CONFIGS

    out = Path(out_dir)
    if resume:
        saved = read_config(out).get("meta", {}).get("training", {}).get("config")
        if saved is None:
            raise DiffcodecError(f"{out} was not written by diffcodec train; cannot resume")
        cfg = TrainConfig.from_dict(saved)
        cfg.steps = steps
    else:
        if (out / CONFIG_FILE).exists() and not force:
            raise DiffcodecError(f"{out} already holds a checkpoint; pass --resume to continue or --force to restart")
        if config_name not in CONFIGS:
            raise DiffcodecError(f"unknown configuration {config_name!r} (choose from {', '.join(CONFIGS)})")
        unet = CONFIGS[config_name]
        if dropout is not None:
            unet = dataclasses.replace(unet, dropout=dropout)
        data = DataConfig(cifar=list(cifar), folders=list(folder), crop_size=crop_size, min_scale=min_scale,
                          folder_weight=folder_weight)
        cfg = TrainConfig(unet=unet, data=data, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup,
                          grad_clip=grad_clip, ema_decay=ema_decay, seed=seed, save_every=save_every,
                          name=name or out.name)
    trainer = Trainer(cfg, out, device=device, resume=resume)
    trainer.run()
    if trainer.rank == 0:
        click.echo(f"saved {out} after {trainer.step} steps ({trainer.elapsed:.0f} s of training)")


if __name__ == "__main__":
    main()
