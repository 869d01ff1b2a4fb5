"""``diffcodec encode / decode / info`` as a user runs them: separate processes, and one clean
line with a non-zero exit code for every kind of bad input, with nothing written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitstream.container import Header, crc16, unpack

from helpers import CIFAR, assert_one_line_error, make_micro_checkpoint, needs_cifar, run

# The small model: these tests are about the command, not the model.
FAST = ["--groups", "12", "--candidates", "6", "--chunk-bits", "2", "--model", "default"]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    from diffcodec.data import load_cifar10

    path = tmp_path_factory.mktemp("img") / "cifar7.png"
    Image.fromarray(load_cifar10(CIFAR, "test")[7].permute(1, 2, 0).numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def ddc(png, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddc") / "cifar7.ddc"
    result = run("encode", png, "-o", out, "--lossless", *FAST)
    assert result.exit_code == 0, result.output
    return out


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


@needs_cifar
def test_encode_and_decode_in_separate_processes(png, tmp_path):
    ddc, out, stats = tmp_path / "a.ddc", tmp_path / "a.png", tmp_path / "a.json"
    cmd = [sys.executable, "-m", "diffcodec.cli"]
    enc = subprocess.run(cmd + ["encode", str(png), "-o", str(ddc), "--lossless", "--stats", str(stats), *FAST],
                         capture_output=True, text=True, cwd=tmp_path)
    assert enc.returncode == 0, enc.stderr
    dec = subprocess.run(cmd + ["decode", str(ddc), "-o", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert dec.returncode == 0, dec.stderr
    assert np.array_equal(pixels(out), pixels(png))
    doc = json.loads(stats.read_text())
    assert doc["file_bytes"] == ddc.stat().st_size
    assert all(s["kl_bits"] >= 0 and s["ideal_coded_bits"] > 0 for s in doc["steps"])
    assert doc["records"][-1]["t"] == 0


@needs_cifar
def test_info_reports_every_record(ddc):
    result = run("info", ddc, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    u = unpack(ddc.read_bytes())
    assert [r["bytes"] for r in doc["records"]] == u.record_bytes
    assert doc["file_bytes"] == ddc.stat().st_size and doc["records"][-1]["content"] == "lossless x_0"
    assert doc["records"][-1]["cumulative_bits_per_dim"] == pytest.approx(ddc.stat().st_size * 8 / 3072)
    table = run("info", ddc)
    assert table.exit_code == 0 and "lossless x_0" in table.output


@needs_cifar
def test_upto_t_and_frames(ddc, tmp_path):
    result = run("decode", ddc, "-o", tmp_path / "p.png", "--upto-t", 200, "--frames", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    t = int(re.search(r"t = (\d+)", result.output).group(1))
    plan = [r["content"] for r in json.loads(run("info", ddc, "--json").output)["records"]]
    ends = [int(c.split("→")[1]) for c in plan if "→" in c]
    assert t == next(e for e in ends if e <= 200)  # the first record at or below t = 200
    frames = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(frames) == ends.index(t) + 1 and (tmp_path / "frames" / "animation.gif").is_file()
    flow = run("decode", ddc, "-o", tmp_path / "f.png", "--upto-t", 200, "--reconstruct", "flow", "--steps", 5)
    assert flow.exit_code == 0, flow.output
    assert not np.array_equal(pixels(tmp_path / "f.png"), pixels(tmp_path / "p.png"))


@needs_cifar
def test_truncated_file_decodes_last_complete_prefix_with_a_warning(ddc, tmp_path):
    data = ddc.read_bytes()
    u = unpack(data)
    cut = tmp_path / "cut.ddc"
    cut.write_bytes(data[:u.header_bytes + u.record_bytes[0] + u.record_bytes[1] + 5])
    result = run("decode", cut, "-o", tmp_path / "c.png")  # output holds stdout and stderr
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "truncated; decoded its 2 complete records" in result.output
    assert (tmp_path / "c.png").is_file()


@needs_cifar
def test_flipped_byte_names_the_record(ddc, tmp_path):
    data = bytearray(ddc.read_bytes())
    u = unpack(bytes(data))
    data[u.header_bytes + u.record_bytes[0] + 2] ^= 0x10  # inside record 1
    bad = tmp_path / "bad.ddc"
    bad.write_bytes(bytes(data))
    result = run("decode", bad, "-o", tmp_path / "x.png")
    assert_one_line_error(result, "record 1", "corrupt")
    assert not (tmp_path / "x.png").exists()


@needs_cifar
def test_wrong_model_is_refused(ddc, tmp_path):
    micro = make_micro_checkpoint(tmp_path / "micro")
    result = run("decode", ddc, "-o", tmp_path / "x.png", "--model", micro)
    assert_one_line_error(result, "made with model", "--model")
    assert not (tmp_path / "x.png").exists()


def test_not_a_ddc_file(tmp_path):
    fake = tmp_path / "fake.ddc"
    fake.write_bytes(b"hello, this is text\n" * 10)
    assert_one_line_error(run("decode", fake, "-o", tmp_path / "x.png"), "not a .ddc file")
    assert_one_line_error(run("info", fake), "not a .ddc file")
    assert_one_line_error(run("decode", tmp_path / "missing.ddc", "-o", tmp_path / "x.png"), "no such file")
    assert not (tmp_path / "x.png").exists()


def test_absurd_dimensions_are_refused_before_allocating(tmp_path):
    body = bytearray(Header(bytes(4), 32, 32).to_bytes()[:-2])
    # width field (offset 8, one byte for 32) → 2**35 as a 6-byte varint
    huge = bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
    body = body[:8] + huge + body[9:]
    data = bytes(body) + crc16(bytes(body)).to_bytes(2, "little")
    f = tmp_path / "huge.ddc"
    f.write_bytes(data)
    assert_one_line_error(run("decode", f, "-o", tmp_path / "x.png"), "image size")
    assert not (tmp_path / "x.png").exists()


@needs_cifar
def test_outputs_are_never_overwritten_without_force(png, ddc, tmp_path):
    existing = tmp_path / "keep.ddc"
    existing.write_bytes(b"precious")
    assert_one_line_error(run("encode", png, "-o", existing, *FAST), "exists", "--force")
    assert existing.read_bytes() == b"precious"
    keep_png = tmp_path / "keep.png"
    keep_png.write_bytes(b"precious")
    assert_one_line_error(run("decode", ddc, "-o", keep_png), "exists", "--force")
    assert keep_png.read_bytes() == b"precious"
    assert run("decode", ddc, "-o", keep_png, "--force").exit_code == 0
    assert np.array_equal(pixels(keep_png), pixels(png))


def test_encode_bad_input(tmp_path):
    notimg = tmp_path / "x.png"
    notimg.write_text("not an image")
    assert_one_line_error(run("encode", notimg, "-o", tmp_path / "x.ddc"), "not a readable image")
    assert_one_line_error(run("encode", tmp_path / "missing.png", "-o", tmp_path / "x.ddc"), "no such image file")
    assert_one_line_error(run("encode", notimg, "-o", tmp_path / "x.ddc", "--bpp", 1, "--psnr", 30), "choose one of")
    assert_one_line_error(run("encode", notimg, "-o", tmp_path / "x.ddc", "--chunk-bits", 1.3), "multiple of 0.25")
    assert not (tmp_path / "x.ddc").exists()


def test_info_of_the_golden_file_matches_golden_json():
    """``diffcodec info --json`` on the pinned .ddc (regenerate both with tests/test_codec.py)."""
    golden = Path(__file__).parent / "golden"
    result = run("info", golden / "cifar0_default_fast.ddc", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads((golden / "info_cifar0_default_fast.json").read_text())


@needs_cifar
def test_a_lossless_file_that_does_not_reproduce_its_pixels_fails_unless_accepted(ddc, tmp_path):
    """A lossless record whose pixel checksum fails (forged here) is an error with nothing written,
    and with --accept-mismatch the image is written without being called lossless."""
    from bitstream.container import pack

    u = unpack(ddc.read_bytes())
    forged = tmp_path / "forged.ddc"
    forged.write_bytes(pack(u.header, u.records[:-1] + [bytes([u.records[-1][0] ^ 1]) + u.records[-1][1:]]))
    out = tmp_path / "out.png"
    result = run("decode", forged, "-o", out)
    messages = [line for line in result.output.strip().splitlines() if not line.startswith("decode:")]  # no bar
    assert result.exit_code == 1 and len(messages) == 1 and "Traceback" not in result.output
    assert messages[0].startswith("error: ") and "does not decode to the image that was encoded" in messages[0]
    assert not out.exists()
    result = run("decode", forged, "-o", out, "--accept-mismatch")
    assert result.exit_code == 0 and out.exists()
    assert "does not decode to the image that was encoded" in result.output
    wrote = [line for line in result.output.splitlines() if line.startswith("wrote")]
    assert len(wrote) == 1 and "lossless" not in wrote[0].replace(str(tmp_path), "")
    assert "NOT the encoded image" in wrote[0]
