"""``diffcodec encode / decode / info`` inputs and outputs: standard input and output, several
images at once, folders, input modes that change on the way, and the one-line errors of the
traps around them.  Tiny images and fast codec settings keep every encode to seconds."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcodec.cli import main

from helpers import ENV, ROOT, assert_one_line_error, png16, png_bytes, run
from helpers import FAST_CLI as FAST


def command(*args, stdin: bytes | None = None, tty: bool = False):
    """``python -m diffcodec ARGS`` in a separate process (stdout a terminal if ``tty``)."""
    cmd = [sys.executable, "-m", "diffcodec", *map(str, args)]
    if not tty:
        return subprocess.run(cmd, input=stdin, capture_output=True, env=ENV, cwd=ROOT)
    leader, follower = pty.openpty()
    try:
        return subprocess.run(cmd, input=stdin, stdout=follower, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    finally:
        os.close(leader)
        os.close(follower)


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im).copy()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for name in ("a", "b"):
        (folder / f"{name}.png").write_bytes(png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


@pytest.fixture(scope="module")
def piped(images) -> bytes:
    """a.png encoded losslessly from standard input to standard output by a real process."""
    proc = command("encode", "-", "-o", "-", "--lossless", *FAST, stdin=(images / "a.png").read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:3] == b"DDC"
    assert "wrote standard output" in proc.stderr.decode()  # messages never mix with the file
    return proc.stdout


def test_stdin_to_stdout_decodes_bit_for_bit(images, piped, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info = run("info", "-", stdin=piped)
    assert info.exit_code == 0, info.output
    assert info.stdout.startswith("standard input: .ddc") and "lossless x_0" in info.stdout
    decoded = run("decode", "-", "-o", "-", stdin=piped)
    assert decoded.exit_code == 0, decoded.stderr
    assert np.array_equal(pixels(decoded.stdout_bytes), pixels((images / "a.png").read_bytes()))
    assert "wrote standard output (lossless" in decoded.stderr and b"wrote" not in decoded.stdout_bytes
    assert list(tmp_path.iterdir()) == []  # no file named '-'



def test_several_images_and_folders(images, piped, tmp_path):
    out = tmp_path / "coded"
    result = run("encode", images / "a.png", images / "b.png", "-o", f"{out}/", "--lossless", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.ddc", "b.ddc"]
    assert (out / "a.ddc").read_bytes() == piped  # the same bytes whichever way it was written
    for name in ("a", "b"):
        decoded = tmp_path / f"{name}.png"
        assert run("decode", out / f"{name}.ddc", "-o", decoded).exit_code == 0
        assert np.array_equal(pixels(decoded.read_bytes()), pixels((images / f"{name}.png").read_bytes()))
    # a folder of images into an existing folder: nothing is replaced without --force
    before = (out / "a.ddc").read_bytes()
    assert_one_line_error(run("encode", images, "-o", out, *FAST), "a.ddc exists", "--force")
    assert (out / "a.ddc").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["a.ddc", "b.ddc"]


def test_batch_rules_stop_before_anything_is_written(images, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes((images / "a.png").read_bytes())
    out = tmp_path / "out"
    assert_one_line_error(run("encode", images / "a.png", other / "a.jpg", "-o", f"{out}/", *FAST),
                          "a.png and", "a.jpg would both be written to", "a.ddc")
    assert_one_line_error(run("encode", images / "a.png", images / "b.png", "-o", tmp_path / "x.ddc", *FAST),
                          "several images need -o to name a folder")
    assert_one_line_error(run("encode", images, "-o", tmp_path / "y.ddc", *FAST), "need -o to name a folder")
    assert_one_line_error(run("encode", images / "a.png", images / "b.png", "-o", f"{out}/", "--stats",
                              tmp_path / "s.json", *FAST), "--stats takes a single image")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run("encode", empty, "-o", f"{out}/", *FAST), "holds no image files")
    assert_one_line_error(run("encode", "-", images / "a.png", "-o", f"{out}/", *FAST), "must be the only image")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "good.png").write_bytes((images / "a.png").read_bytes())
    (bad / "broken.png").write_text("not a PNG")
    assert_one_line_error(run("encode", bad, "-o", f"{out}/", *FAST), "broken.png is not a readable image")
    assert not out.exists() and not (tmp_path / "x.ddc").exists() and not (tmp_path / "y.ddc").exists()


def test_binary_output_to_a_terminal_is_refused(images, tmp_path):
    proc = command("encode", images / "a.png", "-o", "-", *FAST, tty=True)
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "terminal" in lines[0]


def test_16bit_input_is_never_called_lossless(tmp_path):
    v = np.random.default_rng(3).integers(0, 65536, (8, 8), dtype=np.uint16)
    src, ddc, out = tmp_path / "deep.png", tmp_path / "deep.ddc", tmp_path / "deep8.png"
    src.write_bytes(png16(v))
    result = run("encode", src, "-o", ddc, "--lossless", *FAST)
    assert result.exit_code == 0, result.output
    assert f"note: {src}: 16-bit samples rounded to 8 bits (v / 257)" in result.stderr
    assert "lossless for the 8-bit image coded, not for the input's samples" in result.stdout
    assert not re.search(r"\), lossless$", result.stdout.strip())
    assert run("decode", ddc, "-o", out).exit_code == 0
    assert np.array_equal(pixels(out.read_bytes()), np.round(v / 257).astype(np.uint8))


def test_animation_is_refused(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), 80 * i, np.uint8)) for i in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert_one_line_error(run("encode", gif, "-o", tmp_path / "x.ddc", *FAST),
                          "anim.gif has 3 frames; diffcodec codes single images (extract a frame first)")
    assert not (tmp_path / "x.ddc").exists()


def test_an_empty_or_unknown_input_is_named_not_pillows_buffer(tmp_path):
    empty, text = tmp_path / "empty.png", tmp_path / "text.png"
    empty.write_bytes(b"")
    text.write_text("not an image")
    for source, stdin, message in ((empty, None, f"{empty} is not a readable image (it is empty)"),
                                   ("-", b"", "standard input is not a readable image (it is empty)"),
                                   (text, None, f"{text} is not a readable image (not a format Pillow recognises)")):
        result = run("encode", source, "-o", tmp_path / "x.ddc", *FAST, stdin=stdin)
        assert_one_line_error(result, message)
        assert "BytesIO" not in result.output and " at 0x" not in result.output
    assert not (tmp_path / "x.ddc").exists()


def test_progress_bar_has_its_total_from_the_start_and_ends_full(images, tmp_path):
    result = run("encode", images / "a.png", "-o", tmp_path / "early.ddc", "--upto-t", 500, *FAST)
    assert result.exit_code == 0, result.output
    assert "t = 316" in result.stdout  # the first record: the encoder stopped after 1 of its 5 steps
    bars = [s for s in re.split(r"[\r\n]", result.stderr) if s.startswith("encode:")]
    assert re.search(r"\b0/5\b", bars[0]), bars
    assert re.search(r"100%.*\b1/1\b", bars[-1]), bars  # full at the steps it coded, not at the plan's 5


def test_frames_must_be_a_folder(piped, tmp_path):
    ddc, taken = tmp_path / "a.ddc", tmp_path / "taken"
    ddc.write_bytes(piped)
    taken.write_text("a file")
    assert_one_line_error(run("decode", ddc, "-o", tmp_path / "x.png", "--frames", taken), "is a file, not a folder")
    assert not (tmp_path / "x.png").exists() and taken.read_text() == "a file"


def test_folders_and_junk_as_ddc_inputs(tmp_path):
    assert_one_line_error(run("decode", tmp_path, "-o", tmp_path / "x.png"), "is a folder, not a .ddc file")
    assert_one_line_error(run("info", tmp_path), "is a folder, not a .ddc file")
    junk = tmp_path / "junk.ddc"
    junk.write_bytes(b"GIF89a, certainly not a ddc file")
    assert_one_line_error(run("info", junk), f"{junk}: not a .ddc file")
    assert_one_line_error(run("info", "-", stdin=b"junk"), "standard input: not a .ddc file")
    assert not (tmp_path / "x.png").exists()


def test_info_states_bpp_and_bits_per_dim(piped):
    line = run("info", "-", stdin=piped).stdout.splitlines()[0]
    found = re.search(r"(\d+) bytes \(([\d.]+) bpp = ([\d.]+) bits/dim\)", line)
    assert found, line
    size, bpp, bits_per_dim = int(found[1]), float(found[2]), float(found[3])
    assert size == len(piped)
    assert bpp == pytest.approx(size * 8 / 64, abs=1e-3)  # 8×8 pixels
    assert bits_per_dim == pytest.approx(size * 8 / (3 * 64), abs=1e-4)


def test_candidates_must_be_meaningful(images, tmp_path):
    for k in (0, 21):
        result = run("encode", images / "a.png", "-o", tmp_path / "x.ddc", "--candidates", k)
        assert result.exit_code == 2 and "--candidates" in result.output and "1<=x<=20" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "x.ddc").exists()


def test_format_errors_from_the_bitstream_are_one_line(monkeypatch, tmp_path):
    from bitstream.container import FormatError
    import diffcodec.codec

    def broken(data, **options):
        raise FormatError("record 3 is corrupt (checksum mismatch in bytes 99–150)")

    monkeypatch.setattr(diffcodec.codec, "describe", broken)
    monkeypatch.setattr(diffcodec.codec, "read_header", broken)
    f = tmp_path / "f.ddc"
    f.write_bytes(b"DDC")
    assert_one_line_error(run("info", f), f"{f}: record 3 is corrupt")

    @main.command("fail-for-test", hidden=True)
    def fail():
        raise FormatError("unknown flags in header")

    try:
        assert_one_line_error(run("fail-for-test"), "unknown flags in header")
    finally:
        main.commands.pop("fail-for-test")


def test_python_m_diffcodec_and_a_light_start():
    proc = command("--help")
    assert proc.returncode == 0 and proc.stdout.decode().startswith("Usage: diffcodec ")
    probe = ("import sys, diffcodec, diffcodec.cli; "
             "assert 'torch' not in sys.modules, 'torch imported'; "
             "from diffcodec import api; assert diffcodec.compress is api.compress; print('ok')")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_variance_choices_match_the_library():
    from diffcodec.cli import VARIANCES
    from diffcodec.diffusion import ReverseVariance

    assert list(VARIANCES) == [v.value for v in ReverseVariance]
