"""Where the output goes: every failed write (a full disk, a file too large, a folder that cannot
be written, a closed pipe) is one ``error:`` line and exit status 1, with nothing partial left
and an existing output untouched; devices and FIFOs are written in place, never replaced."""

from __future__ import annotations

import os
import pty
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitstream.container import unpack
from diffcodec.errors import DiffcodecError
from diffcodec.files import check_output, write_output

from helpers import ENV, ROOT, assert_one_line_error, png_bytes, run
from helpers import FAST_CLI as FAST

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.is_char_device(), reason="no /dev/full here")


def process(*args, stdout=subprocess.PIPE, file_size: int | None = None) -> subprocess.CompletedProcess:
    """``python -m diffcodec ARGS`` in a separate process, its files limited to ``file_size``
    bytes if given (SIGXFSZ ignored, so that a write past the limit fails with EFBIG)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return subprocess.run([sys.executable, "-m", "diffcodec", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          env=ENV, cwd=ROOT, preexec_fn=limit if file_size is not None else None)


def assert_one_error(result, *fragments: str) -> None:
    """A finished process or CliRunner result: exit status 1 and one ``error:`` line besides the progress bar."""
    status, output = ((result.returncode, result.stderr.decode()) if isinstance(result, subprocess.CompletedProcess)
                      else (result.exit_code, result.output))
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith(("encode:", "decode:",
                                                                                           "sample:"))]
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: "), output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """small.png (8×8) and big.png (32×32, a PNG of over 3 KB), each with its lossless .ddc."""
    folder = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(11)
    for name, side in (("small", 8), ("big", 32)):
        (folder / f"{name}.png").write_bytes(png_bytes(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)))
        result = run("encode", folder / f"{name}.png", "-o", folder / f"{name}.ddc", "--lossless", *FAST)
        assert result.exit_code == 0, result.output
    return folder


@needs_dev_full
def test_a_full_disk_on_standard_output_is_one_error_line(files):
    for args in (("encode", files / "small.png", "-o", "-", *FAST), ("decode", files / "small.ddc", "-o", "-"),
                 ("info", files / "small.ddc", "--json")):
        with open(FULL, "wb") as full:
            proc = process(*args, stdout=full)
        assert_one_error(proc, "cannot write to standard output (No space left on device)")


def test_a_closed_pipe_on_standard_output_is_one_error_line(files):
    for args in (("decode", files / "small.ddc", "-o", "-"), ("info", files / "small.ddc")):
        proc = subprocess.Popen([sys.executable, "-m", "diffcodec", *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
        proc.stdout.close()  # the reader goes away before the command writes
        stderr = proc.stderr.read()
        proc.wait()
        assert_one_error(subprocess.CompletedProcess(args, proc.returncode, None, stderr),
                         "cannot write to standard output (Broken pipe)")


def test_a_file_too_large_leaves_nothing_and_keeps_the_old_file(files, tmp_path):
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"precious")
    for args, target in (
        (("encode", files / "big.png", "-o", tmp_path / "new.ddc", "--lossless", *FAST), "new.ddc"),
        (("decode", files / "big.ddc", "-o", tmp_path / "new.png"), "new.png"),
        (("decode", files / "big.ddc", "-o", keep, "--force"), "keep.png"),
        (("sample", "--model", "default", "-n", 16, "--size", 8, "--steps", 2, "-o", tmp_path / "grid.png"),
         "grid.png"),
    ):
        assert_one_error(process(*args, file_size=1024), f"cannot write to {tmp_path / target} (File too large)")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]  # no partial file, no temporary one
    assert keep.read_bytes() == b"precious"


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder this process cannot write in: permission bits, or for root (whom they do not
    stop) the immutable attribute where the file system has it."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root, and the folder cannot be made immutable")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


def test_a_folder_that_cannot_be_written_is_refused_before_any_work(files, read_only, tmp_path):
    small, ddc = files / "small.png", files / "small.ddc"
    for args in (
        ("encode", small, "-o", read_only / "x.ddc", *FAST),
        ("encode", small, "-o", f"{read_only}/coded/", *FAST),
        ("encode", small, "-o", tmp_path / "ok.ddc", "--stats", read_only / "s.json", *FAST),
        ("decode", ddc, "-o", read_only / "x.png"),
        ("decode", ddc, "-o", tmp_path / "ok.png", "--frames", read_only / "frames"),
        ("sample", "-o", read_only / "grid.png"),
        ("nll", small, "--json", read_only / "nll.json"),
        ("variances", "-o", read_only / "table.json"),
        ("convert", tmp_path, "-o", read_only / "checkpoint"),
        ("train", "--config", "micro", "-o", read_only / "run", "--steps", 1),
    ):
        assert_one_line_error(run(*args), str(read_only), "not writable")
        assert list(read_only.iterdir()) == []
    assert not (tmp_path / "ok.ddc").exists() and not (tmp_path / "ok.png").exists()


def test_a_folder_gone_before_the_write_is_one_error(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    check_output(str(folder / "x.png"), force=False)
    folder.rmdir()
    with pytest.raises(DiffcodecError, match=f"folder {folder} does not exist"):
        write_output(str(folder / "x.png"), b"data")
    assert not folder.exists()


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(path.stat().st_mode)


def test_a_device_is_written_in_place_never_replaced(files, tmp_path):
    result = run("decode", files / "small.ddc", "-o", os.devnull)  # as '> /dev/null': no --force needed
    assert result.exit_code == 0 and "wrote /dev/null" in result.output and is_char_device(Path(os.devnull))
    null, full = tmp_path / "null", tmp_path / "full"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("cannot make device nodes here")
    for args in (("encode", files / "small.png", "-o", full, "--force", *FAST),
                 ("decode", files / "small.ddc", "-o", full, "--force")):
        assert_one_error(run(*args), f"cannot write to {full} (No space left on device)")
        assert is_char_device(full)
    for args in (("encode", files / "small.png", "-o", null, "--force", *FAST),
                 ("decode", files / "small.ddc", "-o", null, "--force")):
        assert run(*args).exit_code == 0 and is_char_device(null)


def test_a_fifo_is_written_in_place(files, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    expected = tmp_path / "expected.png"
    assert run("decode", files / "small.ddc", "-o", expected).exit_code == 0
    for force in ((), ("--force",)):
        received = []
        reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
        reader.start()
        result = run("decode", files / "small.ddc", "-o", fifo, *force)
        reader.join(timeout=30)
        assert result.exit_code == 0, result.output
        assert received == [expected.read_bytes()] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_terminal_is_refused_as_binary_output(files):
    leader, follower = pty.openpty()
    try:
        terminal = os.ttyname(follower)
        assert_one_line_error(run("decode", files / "small.ddc", "-o", terminal),
                              f"refusing to write binary data to the terminal {terminal}")
    finally:
        os.close(leader)
        os.close(follower)


def test_a_symlink_is_written_through_not_replaced(files, tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to("target.png")
    assert run("decode", files / "small.ddc", "-o", link).exit_code == 0
    assert link.is_symlink() and Image.open(tmp_path / "target.png").size == (8, 8)
    assert_one_line_error(run("decode", files / "small.ddc", "-o", link), "exists; pass --force")


def test_an_image_and_its_frames_appear_together_or_not_at_all(files, tmp_path):
    """decode --frames writes the image, every record's frame and an animation as one set: the
    animation (the largest file) past the size limit leaves no frame, no folder and the old image."""
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"precious")
    frames = tmp_path / "frames"
    proc = process("decode", files / "small.ddc", "-o", keep, "--force", "--frames", frames, file_size=1024)
    assert_one_error(proc, f"cannot write to {frames / 'animation.gif'} (File too large)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"] and keep.read_bytes() == b"precious"
    ok = process("decode", files / "small.ddc", "-o", keep, "--force", "--frames", frames)
    assert ok.returncode == 0, ok.stderr
    assert keep.read_bytes() != b"precious" and (frames / "animation.gif").is_file()
    records = len(unpack((files / "small.ddc").read_bytes()).record_bytes)
    assert len(list(frames.glob("frame_*.png"))) == records and f"wrote {records} frames" in ok.stdout.decode()


def test_a_checkpoint_is_replaced_whole_or_kept(tmp_path, monkeypatch):
    """save_checkpoint stages the weights and config.json together: a failure on the config (the
    last file) leaves the earlier checkpoint loadable, with its own weights, and no temporary file."""
    import torch

    from diffcodec import files as files_module
    from diffcodec.checkpoint import load_model, save_checkpoint
    from diffcodec.errors import OutputError
    from helpers import make_micro_checkpoint

    folder = make_micro_checkpoint(tmp_path / "ckpt")
    before = load_model(folder)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in before.net.state_dict().items()}
    stage = files_module._stage

    def failing(target, data, name):
        if Path(target).name == "config.json":
            raise OutputError(f"cannot write to {name} (No space left on device)")
        return stage(target, data, name)

    monkeypatch.setattr(files_module, "_stage", failing)
    with pytest.raises(OutputError, match="config.json"):
        save_checkpoint(folder, state, before.unet_config, before.schedule_config, name="changed")
    monkeypatch.setattr(files_module, "_stage", stage)
    after = load_model(folder)
    assert after.name == before.name and after.weights_sha256 == before.weights_sha256
    assert all(torch.equal(a, b) for a, b in zip(after.net.state_dict().values(), before.net.state_dict().values()))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


@needs_dev_full
def test_a_full_standard_error_loses_the_messages_not_the_work(files, tmp_path):
    out = tmp_path / "out.png"
    with open(FULL, "wb") as full:
        ok = subprocess.run([sys.executable, "-m", "diffcodec", "decode", str(files / "small.ddc"), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=full, env=ENV, cwd=ROOT)
        bad = subprocess.run([sys.executable, "-m", "diffcodec", "decode", str(tmp_path / "none.ddc"), "-o",
                              str(tmp_path / "none.png")], stdout=subprocess.PIPE, stderr=full, env=ENV, cwd=ROOT)
    assert ok.returncode == 0 and b"wrote" in ok.stdout  # the summary line goes to standard output
    with Image.open(out) as decoded, Image.open(files / "small.png") as original:
        assert np.array_equal(np.asarray(decoded), np.asarray(original))  # lossless: the work was done
    assert bad.returncode == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
