"""Training: the loss goes down, resuming is exact, DDP replicas agree, the GPU speed settings
change nothing they should not, warm starts begin from and record their model, the CLI refuses
bad input.

All runs use the micro U-Net on 16×16 images, one CPU thread (on a small, busy machine extra
threads only contend) and fixed seeds. Features meant for CUDA (bf16 autocast, channels-last,
torch.compile) are forced on here to run their code on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from diffcodec.checkpoint import load_model
from diffcodec.checkpoint_config import CONFIG_FILE, TRAIN_STATE_FILE, WEIGHTS_FILE
from diffcodec.cli import main
from diffcodec.data import DataConfig, read_image, to_model_range
from diffcodec.diffusion import GaussianDiffusion
from diffcodec.errors import CheckpointError, DiffcodecError
from diffcodec.schedule import ScheduleConfig
from diffcodec.train import SimpleLoss, SpeedConfig, TrainConfig, Trainer, WarmStart, update_ema
from diffcodec.unet import CONFIGS, UNet

MICRO = CONFIGS["micro"]  # dropout 0.1: exercises the global RNG in the resume test
SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_images(folder: Path, n: int = 8, size: int = SIZE, seed: int = 0) -> Path:
    """n smooth, distinct colour images (learnable structure, unlike white noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    for i in range(n):
        a, b, c = rng.uniform(-1, 1, (3, 3))
        img = np.stack([0.5 + 0.45 * np.sin(3 * a[k] * xx + 3 * b[k] * yy + 6 * c[k]) for k in range(3)], axis=-1)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory) -> Path:
    return _write_images(tmp_path_factory.mktemp("train-data") / "images")


def _config(images: Path, steps: int, **kw) -> TrainConfig:
    defaults = {"unet": MICRO, "data": DataConfig(folders=[str(images)], crop_size=SIZE), "steps": steps,
                "batch_size": 8, "lr": 2e-4, "warmup_steps": 3, "ema_decay": 0.999, "seed": 0, "save_every": 10**9,
                "name": "t"}
    defaults.update(kw)
    return TrainConfig(**defaults)


def _fixed_loss(net: torch.nn.Module, x0: torch.Tensor, diffusion: GaussianDiffusion, draws: int = 32) -> float:
    """Mean L_simple over fixed (t, ε) draws: the same draws for every network compared."""
    g = torch.Generator().manual_seed(1234)
    x = x0.repeat(draws, 1, 1, 1)
    k = torch.randint(1, diffusion.num_steps + 1, (x.shape[0],), generator=g)
    noise = torch.randn(x.shape, generator=g)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        eps = diffusion.predict_eps(net, diffusion.q_sample(x, k, noise), k)
    net.train(was_training)
    return float(((noise - eps) ** 2).mean())


# ---- the loss goes down --------------------------------------------------------------------
def test_training_lowers_the_loss(images_dir, tmp_path):
    trainer = Trainer(_config(images_dir, 60, lr=1e-3, warmup_steps=10, ema_decay=0.99), tmp_path / "run",
                      device="cpu")
    x0 = to_model_range(torch.stack([read_image(p) for p in sorted(images_dir.glob("*.png"))]))
    before = _fixed_loss(trainer.net, x0, trainer.diffusion)
    trainer.run(progress=False)
    after = _fixed_loss(trainer.net, x0, trainer.diffusion)
    after_ema = _fixed_loss(trainer.ema, x0, trainer.diffusion)
    assert trainer.step == 60
    assert after < 0.5 * before, (before, after)  # typically 1.1 -> 0.2
    assert after_ema < 0.6 * before, (before, after_ema)
    # The written checkpoint holds the EMA and reproduces its loss.
    model = load_model(tmp_path / "run")
    assert _fixed_loss(model.net, x0, trainer.diffusion) == pytest.approx(after_ema, rel=1e-6)
    assert json.loads((tmp_path / "run" / CONFIG_FILE).read_text())["meta"]["training"]["steps_done"] == 60


# ---- resume ----------------------------------------------------------------------------------
def _assert_same_state(a: Trainer, b: Trainer) -> None:
    for name, sa, sb in (("net", a.net.state_dict(), b.net.state_dict()), ("ema", a.ema.state_dict(), b.ema.state_dict())):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs by {(sa[k] - sb[k]).abs().max().item():.3g}"
    for (pa, sa), (pb, sb) in zip(a.opt.state.items(), b.opt.state.items()):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), f"Adam {key} differs"
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.step == b.step


def test_resume_is_exact(images_dir, tmp_path):
    n = 6  # the warm-up (3 steps) and the EMA warm-up both span the interruption's neighbourhood
    whole = Trainer(_config(images_dir, 2 * n), tmp_path / "whole", device="cpu")
    whole.run(progress=False)

    first = Trainer(_config(images_dir, n), tmp_path / "split", device="cpu")
    first.run(progress=False)
    assert (tmp_path / "split" / TRAIN_STATE_FILE).is_file()
    torch.manual_seed(999)  # whatever happens in between must not matter
    torch.rand(100)
    second = Trainer(_config(images_dir, 2 * n), tmp_path / "split", device="cpu", resume=True)
    assert second.step == n
    second.run(progress=False)
    _assert_same_state(whole, second)
    # The checkpoints on disk agree as well (same EMA weights, same content hash).
    assert load_model(tmp_path / "whole").weights_sha256 == load_model(tmp_path / "split").weights_sha256


def test_resume_refuses_other_architecture_and_missing_state(images_dir, tmp_path):
    Trainer(_config(images_dir, 1), tmp_path / "run", device="cpu").run(progress=False)
    other = dataclasses.replace(MICRO, base_channels=32)
    with pytest.raises(CheckpointError, match="different U-Net configuration"):
        Trainer(_config(images_dir, 2, unet=other), tmp_path / "run", device="cpu", resume=True)
    (tmp_path / "run" / TRAIN_STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"no {TRAIN_STATE_FILE}"):
        Trainer(_config(images_dir, 2), tmp_path / "run", device="cpu", resume=True)
    with pytest.raises(CheckpointError):
        Trainer(_config(images_dir, 2), tmp_path / "absent", device="cpu", resume=True)


# ---- the pieces of a step ----------------------------------------------------------------------
@torch.no_grad()
def test_simple_loss_equals_l_simple(images_dir):
    """The device-side loss makes the same draws and arithmetic as GaussianDiffusion.l_simple,
    also on a respaced schedule (the network is conditioned on the original timesteps)."""
    torch.manual_seed(0)
    net = UNet(MICRO).eval()
    x0 = to_model_range(torch.stack([read_image(p) for p in sorted(images_dir.glob("*.png"))]))
    for schedule in (ScheduleConfig().build(), ScheduleConfig().build().respace([1, 7, 300, 999])):
        diffusion = GaussianDiffusion(schedule)
        ours = SimpleLoss(diffusion, torch.device("cpu"))(net, x0, torch.Generator().manual_seed(5))
        reference = diffusion.l_simple(net, x0, generator=torch.Generator().manual_seed(5))
        assert torch.equal(ours, reference)
    # Channels-last inputs: the same loss up to the convolutions' rounding in the other layout.
    nhwc = SimpleLoss(diffusion, torch.device("cpu"), torch.channels_last)(net, x0, torch.Generator().manual_seed(5))
    assert float(nhwc) == pytest.approx(float(reference), rel=1e-5)


def test_update_ema_moves_every_tensor_by_one_minus_the_decay():
    torch.manual_seed(0)
    ema, net = UNet(MICRO), UNet(MICRO)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    update_ema(ema, net, 0.75)
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, before[k] + 0.25 * (net.state_dict()[k] - before[k]), rtol=0, atol=1e-7)


def test_loss_is_summed_on_the_device_and_read_once_per_interval(images_dir, tmp_path):
    """train_step hands back the loss as a tensor (no wait for the device); run() reads the mean
    of each log_every steps, records the last one in the checkpoint, and is just the steps."""
    cfg = _config(images_dir, 8, speed=SpeedConfig(log_every=4))
    manual = Trainer(cfg, tmp_path / "manual", device="cpu")
    losses = []
    for _ in range(8):
        loss = manual.train_step()
        assert isinstance(loss, torch.Tensor) and loss.shape == () and not loss.requires_grad
        losses.append(float(loss))
    looped = Trainer(cfg, tmp_path / "run", device="cpu")
    looped.run(progress=False)
    _assert_same_state(manual, looped)
    assert looped.last_loss == pytest.approx(np.mean(losses[4:]), rel=1e-6)
    assert json.loads((tmp_path / "run" / CONFIG_FILE).read_text())["meta"]["training"]["loss"] == looped.last_loss


# ---- speed settings ----------------------------------------------------------------------------
def test_gpu_features_forced_on_cpu_resume_exactly(images_dir, tmp_path):
    """bf16 autocast and channels-last weights (on CUDA by default), forced on here: an
    interrupted and resumed run still equals an uninterrupted one, Adam moments and all."""
    speed = SpeedConfig(bf16=True, channels_last=True, log_every=2)
    whole = Trainer(_config(images_dir, 6, speed=speed), tmp_path / "whole", device="cpu")
    assert whole.bf16 and whole.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    whole.run(progress=False)
    Trainer(_config(images_dir, 3, speed=speed), tmp_path / "split", device="cpu").run(progress=False)
    second = Trainer(_config(images_dir, 6, speed=speed), tmp_path / "split", device="cpu", resume=True)
    second.run(progress=False)
    _assert_same_state(whole, second)
    plain = Trainer(_config(images_dir, 6), tmp_path / "plain", device="cpu")
    plain.run(progress=False)
    assert not torch.equal(plain.net.conv_in.weight, whole.net.conv_in.weight)  # bf16 did change the arithmetic


def test_compiled_network_trains_as_the_eager_one(images_dir, tmp_path):
    """torch.compile (here its aot_eager backend, which needs no compiler) traces forward and
    backward, dropout included, and gives the eager run's weights bit for bit."""
    eager = Trainer(_config(images_dir, 3), tmp_path / "eager", device="cpu")
    eager.run(progress=False)
    speed = SpeedConfig(compile="default", compile_backend="aot_eager")
    compiled = Trainer(_config(images_dir, 3, speed=speed), tmp_path / "compiled", device="cpu")
    assert compiled.model is not compiled.net
    compiled.run(progress=False)
    _assert_same_state(eager, compiled)


def test_train_config_round_trip_and_older_records():
    cfg = TrainConfig(unet=MICRO, init_from=WarmStart("default", "default", "ab" * 32),
                      speed=SpeedConfig(bf16=False, compile="reduce-overhead", log_every=7))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = cfg.to_dict()
    del old["init_from"], old["speed"]  # a record written before these existed
    assert TrainConfig.from_dict(old) == dataclasses.replace(cfg, init_from=None, speed=SpeedConfig())
    with pytest.raises(DiffcodecError, match="compile mode"):
        SpeedConfig(compile="fastest")


# ---- warm starts -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(images_dir, tmp_path_factory) -> Path:
    """A micro model trained for 4 steps: something to start from."""
    out = tmp_path_factory.mktemp("trained") / "base"
    Trainer(_config(images_dir, 4, name="base", lr=1e-3), out, device="cpu").run(progress=False)
    return out


def test_warm_start_begins_at_the_model_and_records_it(images_dir, trained, tmp_path):
    base = load_model(trained)
    trainer = Trainer(_config(images_dir, 4, init_from=WarmStart(str(trained))), tmp_path / "warm", device="cpu")
    for net in (trainer.net, trainer.ema):
        for k, v in net.state_dict().items():
            assert torch.equal(v, base.net.state_dict()[k]), k
    assert not trainer.opt.state and trainer.step == 0  # a fresh optimiser and schedule
    trainer.run(progress=False)
    record = json.loads((tmp_path / "warm" / CONFIG_FILE).read_text())["meta"]["training"]["config"]["init_from"]
    assert record == {"source": str(trained), "name": "base", "weights_sha256": base.weights_sha256}
    # Resuming a warm-started run is exact and keeps the record.
    Trainer(_config(images_dir, 2, init_from=WarmStart(str(trained))), tmp_path / "split", device="cpu").run(
        progress=False)
    record = json.loads((tmp_path / "split" / CONFIG_FILE).read_text())["meta"]["training"]["config"]
    saved = TrainConfig.from_dict(record)
    assert saved.init_from == WarmStart(str(trained), "base", base.weights_sha256)
    second = Trainer(dataclasses.replace(saved, steps=4), tmp_path / "split", device="cpu", resume=True)
    second.run(progress=False)
    _assert_same_state(trainer, second)


def test_warm_start_refuses_another_architecture_or_changed_weights(images_dir, trained, tmp_path):
    other = dataclasses.replace(MICRO, base_channels=32)
    with pytest.raises(CheckpointError, match="base_channels 16 vs 32"):
        Trainer(_config(images_dir, 1, unet=other, init_from=WarmStart(str(trained))), tmp_path / "a", device="cpu")
    with pytest.raises(CheckpointError, match="weights changed"):
        Trainer(_config(images_dir, 1, init_from=WarmStart(str(trained), "base", "0" * 64)), tmp_path / "b",
                device="cpu")
    # Another dropout is not another architecture.
    Trainer(_config(images_dir, 1, unet=dataclasses.replace(MICRO, dropout=0.0), init_from=WarmStart(str(trained))),
            tmp_path / "c", device="cpu")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---- DDP -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, images: str, out: str, steps: int) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        trainer = Trainer(_config(Path(images), steps), Path(out) / "ckpt", device="cpu")
        assert (trainer.rank, trainer.world) == (rank, world)
        assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        peek = torch.Generator()
        peek.set_state(trainer.generator.get_state())
        first_batch = trainer.data.sample(trainer.cfg.batch_size // world, peek)
        trainer.run(progress=False)
        torch.save({"net": trainer.net.state_dict(), "ema": trainer.ema.state_dict(), "first_batch": first_batch,
                    "step": trainer.step}, Path(out) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_ddp_replicas_stay_identical(images_dir, tmp_path):
    import torch.multiprocessing as mp

    steps, world = 3, 2
    ctx = mp.start_processes(_ddp_worker, args=(world, _free_port(), str(images_dir), str(tmp_path), steps),
                             nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    try:
        while not ctx.join(timeout=2):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 120 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(world))
    assert r0["step"] == r1["step"] == steps
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each rank draws its own data
    torch.manual_seed(0)
    initial = UNet(MICRO).state_dict()  # what Trainer builds with seed 0
    changed = 0
    for k in r0["net"]:
        assert torch.equal(r0["net"][k], r1["net"][k]), f"replicas differ in {k}"
        assert torch.equal(r0["ema"][k], r1["ema"][k]), f"EMA replicas differ in {k}"
        changed += not torch.equal(r0["net"][k], initial[k])
    assert changed == len(initial)  # every tensor was updated
    assert (tmp_path / "ckpt" / CONFIG_FILE).is_file()  # rank 0 wrote the checkpoint
    meta = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())["meta"]["training"]
    assert meta["processes"] == world and meta["steps_done"] == steps


# ---- CLI -------------------------------------------------------------------------------------
def _train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--config", "micro", "--crop-size", str(SIZE), "-o", str(out), "--steps", "2",
            "--batch-size", "2", "--warmup", "1", "--device", "cpu", *extra]


def _assert_one_error_line(result) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["--folder", "--cifar"])
def test_cli_train_missing_data(tmp_path, kind):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, _train_args(out, kind, str(tmp_path / "no-such-folder")))
    _assert_one_error_line(result)
    assert "no-such-folder" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_train_missing_data_subprocess(tmp_path):
    """The installed entry point, as a user runs it: one line on stderr, no traceback."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "diffcodec.cli", *_train_args(out, "--folder", str(tmp_path / "nope"))],
                          check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_train_refuses_to_overwrite(images_dir, tmp_path):
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(main, _train_args(out, "--folder", str(images_dir)))
    assert result.exit_code == 0, result.output
    assert (out / CONFIG_FILE).is_file() and (out / WEIGHTS_FILE).is_file()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    result = runner.invoke(main, _train_args(out, "--folder", str(images_dir), "--seed", "1"))
    _assert_one_error_line(result)
    assert "--force" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    result = runner.invoke(main, _train_args(out, "--folder", str(images_dir), "--seed", "1", "--force"))
    assert result.exit_code == 0, result.output
    assert (out / WEIGHTS_FILE).read_bytes() != before[WEIGHTS_FILE]  # a fresh run with another seed

    result = runner.invoke(main, ["train", "-o", str(out), "--resume", "--steps", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / CONFIG_FILE).read_text())["meta"]["training"]["steps_done"] == 3


def test_cli_resume_without_checkpoint(tmp_path):
    result = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "none"), "--resume", "--steps", "3"])
    _assert_one_error_line(result)
    assert not (tmp_path / "none").exists()


def test_cli_init_from(images_dir, trained, tmp_path):
    """--init-from takes the model's U-Net unless --config is given (then it must match), works
    with a shipped name, records the model, and cannot be combined with --resume."""
    runner = CliRunner()
    args = ["train", "--crop-size", str(SIZE), "--steps", "2", "--batch-size", "2", "--warmup", "1", "--device", "cpu",
            "--folder", str(images_dir)]
    out = tmp_path / "warm"
    result = runner.invoke(main, [*args, "--init-from", str(trained), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "started from base" in result.output
    training = json.loads((out / CONFIG_FILE).read_text())["meta"]["training"]
    assert training["config"]["unet"] == MICRO.to_dict()
    assert training["config"]["init_from"]["weights_sha256"] == load_model(trained).weights_sha256

    for bad, fragment in ((["--init-from", str(trained), "--config", "tiny"], "base_channels 16 vs 32"),
                          (["--init-from", "default", "--config", "micro"], "differs"),
                          (["--init-from", str(tmp_path / "nowhere")], "nowhere"),
                          (["--compile", "fastest"], "compile mode")):
        result = runner.invoke(main, [*args, *bad, "-o", str(tmp_path / "bad")])
        _assert_one_error_line(result)
        assert fragment in result.stderr
        assert not (tmp_path / "bad").exists()
    result = runner.invoke(main, ["train", "-o", str(out), "--resume", "--init-from", str(trained), "--steps", "3"])
    _assert_one_error_line(result)

    shipped = tmp_path / "from-default"
    result = runner.invoke(main, [*args, "--init-from", "default", "-o", str(shipped), "--steps", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads((shipped / CONFIG_FILE).read_text())["meta"]["training"]["config"]["init_from"]
    default = load_model("default")
    assert record == {"source": "default", "name": default.name, "weights_sha256": default.weights_sha256}
