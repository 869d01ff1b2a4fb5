"""Damaged .ddc files as the Python API and ``diffcodec decode`` report them: a truncated file
(a warning), a lossless record whose pixels miss their checksum (an error unless accepted), and
a corrupt record (an error, or with salvage the image of the intact records before it)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import diffcodec
from bitstream.container import RecordLayout, unpack
from diffcodec.cli import SALVAGED, main
from diffcodec.codec import CodecConfig

from helpers import header_fields, raw_header

# The small model and few steps: these tests are about the reports, not the model.
FAST = CodecConfig(groups=5, log2_candidates=4, chunk_bits=2, t_stop=10, layout=RecordLayout.EVERY_STEP)


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def data(model, original) -> bytes:
    """A full-rate file of six records: five channel records and the lossless one."""
    coded = diffcodec.compress(original, model, lossless=True, config=FAST)
    assert len(unpack(coded).records) == 6
    return coded


def api(data: bytes, model, **options):
    """(pixels or None, the warnings given, the exception raised or None) of ``decompress``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image, error = np.asarray(diffcodec.decompress(data, model, **options)), None
        except diffcodec.CodecError as e:
            image, error = None, e
    return image, [w.message for w in caught if issubclass(w.category, diffcodec.DamagedFileWarning)], error


def cli(tmp_path, data: bytes, *options):
    """(exit status, the lines of stderr and stdout without the progress bar, the PNG's pixels or None)."""
    f, out = tmp_path / "in.ddc", tmp_path / "out.png"
    f.write_bytes(data)
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(main, ["decode", str(f), "-o", str(out), "--model", "default", *map(str, options)],
                                catch_exceptions=False)
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("decode:")]
    pixels = np.asarray(Image.open(out)) if out.exists() else None
    return result.exit_code, lines, pixels


def record_range(data: bytes, k: int) -> tuple[int, int]:
    u = unpack(data)
    first = u.header_bytes + sum(u.record_bytes[:k])
    return first, first + u.record_bytes[k] - 1


def test_a_full_decode_is_silent(model, data, original):
    image, found, error = api(data, model)
    assert error is None and found == [] and np.array_equal(image, original)


def test_a_truncated_file_warns_in_the_api_as_on_the_command_line(model, data, tmp_path):
    first, last = record_range(data, 3)
    cut = data[:first + 5]  # inside record 3
    image, found, error = api(cut, model)
    assert error is None and image is not None
    assert [type(w) for w in found] == [diffcodec.TruncatedFileWarning]
    assert str(found[0]) == "the data is truncated; decoded its 3 complete records (t = 63); record 3 is cut off"
    status, lines, pixels = cli(tmp_path, cut)
    assert status == 0 and np.array_equal(pixels, image)
    assert f"warning: {tmp_path / 'in.ddc'} is truncated; decoded its 3 complete records (t = 63); record 3 is cut off" \
        in lines
    # a decode that stops before the cut (--upto-t) needs no warning, in either
    assert api(cut, model, upto_t=300)[1] == [] and not any("warning" in line for line in cli(tmp_path, cut,
                                                                                            "--upto-t", 300)[1])


def test_a_pixel_mismatch_is_an_error_in_the_api_as_on_the_command_line(model, data, tmp_path):
    """The seed field changed and the header checksum recomputed: the channel records decode to
    another chain, and the lossless record's pixels miss the encoder's checksum."""
    head = unpack(data).header_bytes
    fields = header_fields(data)
    forged = raw_header(fields | {"seed": fields["seed"] + 1}) + data[head:]
    image, found, error = api(forged, model)
    assert image is None and isinstance(error, diffcodec.PixelMismatchError)
    assert str(error) == ("the data does not decode to the image that was encoded: its pixels do not match the "
                          "checksum the encoder stored (accept_mismatch=True returns it anyway)")
    status, lines, pixels = cli(tmp_path, forged)
    assert status == 1 and pixels is None and len(lines) == 1
    assert lines[0].startswith("error: ") and "does not decode to the image that was encoded" in lines[0]
    image, found, error = api(forged, model, accept_mismatch=True)
    assert error is None and [type(w) for w in found] == [diffcodec.PixelMismatchWarning]
    status, lines, pixels = cli(tmp_path, forged, "--accept-mismatch")
    assert str(found[0]) == ("the data does not decode to the image that was encoded: its pixels do not match the "
                             "checksum the encoder stored")
    assert status == 0 and np.array_equal(pixels, image)
    assert f"warning: {tmp_path / 'in.ddc'} does not decode to the image that was encoded: its pixels do not " \
           f"match the checksum the encoder stored" in lines


def test_a_corrupt_record_is_an_error_and_salvage_gives_the_records_before_it(model, data, tmp_path):
    first, last = record_range(data, 3)
    bad = bytearray(data)
    bad[first + 40] ^= 0x08  # one bit, well inside record 3
    bad = bytes(bad)
    message = f"record 3 is corrupt (checksum mismatch in bytes {first}–{last})"
    image, found, error = api(bad, model)
    assert image is None and str(error) == message
    status, lines, pixels = cli(tmp_path, bad)
    assert status == 1 and pixels is None and lines == [f"error: {tmp_path / 'in.ddc'}: {message}"]
    # salvage: the image of records 0-2, as the intact file decodes it up to record 2
    expected, _, _ = api(data, model, upto_t=63)
    image, found, error = api(bad, model, salvage=True)
    assert error is None and np.array_equal(image, expected)
    assert [type(w) for w in found] == [diffcodec.SalvagedFileWarning]
    assert str(found[0]) == f"the data: {message}; salvaged the image of 3 intact records before it (t = 63)"
    status, lines, pixels = cli(tmp_path, bad, "--salvage")
    assert status == SALVAGED == 3 and np.array_equal(pixels, expected)
    assert lines[0] == f"warning: {tmp_path / 'in.ddc'}: {message}; salvaged the image of 3 intact records before it " \
                       f"(t = 63)"
    assert re.match(r"wrote .*out\.png \(t = 63, mean reconstruction, 3 records\)", lines[1])


def test_salvage_needs_an_intact_record(model, data, tmp_path):
    first, last = record_range(data, 0)
    bad = data[:first + 2] + bytes([data[first + 2] ^ 1]) + data[first + 3:]
    image, found, error = api(bad, model, salvage=True)
    assert image is None and str(error) == (f"record 0 is corrupt (checksum mismatch in bytes {first}–{last}); "
                                            "no intact record before it to salvage")
    status, lines, pixels = cli(tmp_path, bad, "--salvage")
    assert status == 1 and pixels is None and len(lines) == 1 and "no intact record before it" in lines[0]


def test_salvage_of_bytes_after_the_last_record_decodes_everything(model, data, original, tmp_path):
    image, found, error = api(data + b"xy", model, salvage=True)
    assert error is None and np.array_equal(image, original)
    assert "2 unexpected bytes after the last record" in str(found[0])
    status, lines, pixels = cli(tmp_path, data + b"xy", "--salvage")
    assert status == SALVAGED and np.array_equal(pixels, original)


def test_decode_help_documents_the_exit_status():
    text = CliRunner().invoke(main, ["decode", "--help"]).output
    assert "--salvage" in text and "3 --salvage wrote the image of the intact records" in text


def test_the_package_exports_the_reports():
    assert issubclass(diffcodec.TruncatedFileWarning, diffcodec.DamagedFileWarning)
    assert issubclass(diffcodec.DamagedFileWarning, UserWarning)
    assert issubclass(diffcodec.PixelMismatchError, diffcodec.CodecError)
    for name in diffcodec.__all__:
        assert getattr(diffcodec, name) is not None
