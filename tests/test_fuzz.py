"""Damaged files give the project's own errors, never another exception.

A seeded, bounded loop mutates the golden files (tests/golden/*.ddc, format versions 1 to 6):
bit flips, inserted, deleted and duplicated bytes, truncations, records duplicated, swapped or
dropped (as raw bytes, and re-framed with valid checksums), header fields changed (with the
header CRC recomputed) and record payloads changed (with the record CRC recomputed). Each result
is decoded with the shipped ``default`` model, up to the record the mutation touched (a full
decode for the lossless record), under a small pixel limit so that a changed width or height
cannot make a decode expensive. The decodes go through the Python API
(``diffcodec.decompress``). Every outcome must be a decoded image (with the warnings of a
damaged file where it is one), a ``diffcodec.errors.DiffcodecError`` or a
``bitstream.container.FormatError``; and on truncated files, pixel mismatches and corrupt
records the API and ``diffcodec decode`` report the same.

``python tests/test_fuzz.py [N [SEED]]`` runs N mutations per file and prints the outcomes by
class (1,400 mutations with seed 7: 445 decoded files, 153 of them with a TruncatedFileWarning,
941 CodecError, 14 PixelMismatchError).
"""

from __future__ import annotations

import collections
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bitstream.container import FormatError, Header, pack_record, unpack
from diffcodec import DamagedFileWarning, TruncatedFileWarning, decompress
from diffcodec.checkpoint import load_model
from diffcodec.codec import SCHEDULES
from diffcodec.codec.plan import make_plan
from diffcodec.errors import DiffcodecError

from helpers import ONE_BYTE, header_fields, raw_header

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*_default_*.ddc"))  # versions 1 to 6
SEED = 20260601
MUTATIONS_PER_FILE = 80
PIXEL_LIMIT = 48 * 48  # golden files are 32×32; a mutated size above this is refused from the header
EXPECTED = (DiffcodecError, FormatError)


def framed_records(data: bytes) -> list[bytes]:
    u = unpack(data)
    out, pos = [], u.header_bytes
    for size in u.record_bytes:
        out.append(data[pos:pos + size])
        pos += size
    return out


def repacked(fields: dict, payloads: list[bytes]) -> bytes:
    body = b"".join(pack_record(i, p) for i, p in enumerate(payloads))
    return raw_header(fields | {"body_bytes": len(body)}) + body


def raw_body(fields: dict, frames: list[bytes]) -> bytes:
    body = b"".join(frames)
    return raw_header(fields | {"body_bytes": len(body)}) + body


def change_payload(rng, payload: bytes) -> bytes:
    p = bytearray(payload)
    kind = rng.integers(9)
    if kind == 0 and p:
        p[rng.integers(len(p))] ^= 1 << int(rng.integers(8))
    elif kind == 1 and p:
        p[rng.integers(len(p))] = int(rng.integers(256))
    elif kind == 2:
        p.insert(int(rng.integers(len(p) + 1)), int(rng.integers(256)))
    elif kind == 3 and p:
        del p[int(rng.integers(len(p)))]
    elif kind == 4:
        p = p[:int(rng.integers(len(p) + 1))]
    elif kind == 5:
        p = bytearray()
    elif kind == 6:
        p = bytearray(rng.integers(0, 256, len(p), dtype=np.uint8).tobytes())
    elif kind == 7:
        p += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:
        p = bytearray(len(p)) if rng.integers(2) else bytearray(b"\xff" * len(p))
    return bytes(p)


def field_value(rng, name: str, old):
    if name in ("model_hash", "variance_table"):
        return rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    if name in ONE_BYTE or name in ("version", "selection"):
        return int(rng.choice([0, 1, 2, 3, 4, 99, 100, 127, 128, 254, 255, old + 1, old - 1, rng.integers(256)])) % 256
    if name in ("width", "height"):
        return int(rng.choice([0, 1, 2, 3, 5, 31, 33, 40, 48, 49, 64, 4096, 65536, 65537, 2**40]))
    if name == "tile":
        return int(rng.choice([0, 1, 4, 32, 65536, 65537]))
    if name == "halo":
        return int(rng.choice([0, 1, 8, 65536, 65537]))
    if name == "seed":
        return int(rng.integers(0, 2**63)) * 2 + int(rng.integers(2))
    return max(0, old + int(rng.choice([-3, -1, 1, 2, 1000, 2**62])))  # body_bytes


def mutate(rng, data: bytes) -> tuple[str, bytes, int | None]:
    """(kind, mutated bytes, the channel record it touched or None: decode all of it)."""
    fields = header_fields(data)
    frames = framed_records(data)
    head = unpack(data).header_bytes
    n = len(frames)
    kind = ["flip", "insert", "delete", "truncate", "duplicate", "duplicate-framed", "swap", "swap-framed",
            "drop-framed", "header", "payload", "payload"][rng.integers(12)]
    i, j = (int(v) for v in rng.choice(n, 2, replace=False))
    payloads = list(unpack(data).records)
    if kind == "flip":
        k = int(rng.integers(len(data)))
        return kind, data[:k] + bytes([data[k] ^ (1 << int(rng.integers(8)))]) + data[k + 1:], None
    if kind == "insert":
        k = int(rng.integers(len(data) + 1))
        return kind, data[:k] + bytes([int(rng.integers(256))]) + data[k:], None
    if kind == "delete":
        k = int(rng.integers(len(data)))
        return kind, data[:k] + data[k + int(rng.integers(1, 4)):], None
    if kind == "truncate":
        return kind, data[:int(rng.integers(len(data)))], None
    if kind == "duplicate":  # the framed bytes again, under a header declaring them
        return kind, raw_body(fields, frames[:i + 1] + [frames[i]] + frames[i + 1:]), None
    if kind == "duplicate-framed":  # the payload again, with valid checksums
        return kind, repacked(fields, payloads[:i + 1] + [payloads[i]] + payloads[i + 1:]), min(i + 1, n - 2)
    if kind == "swap":
        frames[i], frames[j] = frames[j], frames[i]
        return kind, raw_body(fields, frames), None
    if kind == "swap-framed":
        payloads[i], payloads[j] = payloads[j], payloads[i]
        return kind, repacked(fields, payloads), min(max(i, j), n - 1)
    if kind == "drop-framed":
        return kind, repacked(fields, payloads[:i] + payloads[i + 1:]), min(i, n - 2)
    if kind == "header":
        name = str(rng.choice(list(fields)))
        changed = fields | {name: field_value(rng, name, fields[name])}
        if name != "body_bytes":
            changed["body_bytes"] = fields["body_bytes"]
        return f"header:{name}", raw_header(changed) + data[head:], 1
    payloads[i] = change_payload(rng, payloads[i])
    return kind, repacked(fields, payloads), i


def decode(model, data: bytes, record: int | None, **options) -> list[DamagedFileWarning]:
    """Decode through the API up to channel record ``record`` of the golden plan (None or the
    lossless record: all); the warnings of a damaged file it gave."""
    upto = None
    header = Header.from_bytes(GOLDEN[0].read_bytes())[0]
    plan = make_plan(SCHEDULES[0].num_timesteps, header.t_stop, header.groups, header.layout)
    if record is not None and record < len(plan.record_ends):
        upto = plan.t_after_record(record)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedFileWarning)
        decompress(data, model, upto_t=upto, max_pixels=PIXEL_LIMIT, **options)
    return [w.message for w in caught if issubclass(w.category, DamagedFileWarning)]


def fuzz(model, mutations_per_file: int, seed: int = SEED):
    """Outcomes by class ('decoded', or the exception's class name), the mutations by kind, the
    unexpected outcomes, and the warnings of the decoded files by class."""
    outcomes, kinds, unexpected, warned = collections.Counter(), collections.Counter(), [], collections.Counter()
    rng = np.random.default_rng(seed)
    for path in GOLDEN:
        original = path.read_bytes()
        for _ in range(mutations_per_file):
            kind, data, record = mutate(rng, original)
            kinds[kind.split(":")[0]] += 1
            try:
                found = decode(model, data, record)
                outcomes["decoded"] += 1
                warned.update(type(w).__name__ for w in found)
                # a decode of every record warns exactly when the container says the data is cut short
                if record is None and (TruncatedFileWarning in map(type, found)) != unpack(data).truncated:
                    unexpected.append(f"{path.name} {kind}: the warnings {found} disagree with the container")
            except EXPECTED as e:
                outcomes[type(e).__name__] += 1
            except Exception as e:  # noqa: BLE001 - the point of the test
                outcomes[type(e).__name__] += 1
                unexpected.append(f"{path.name} {kind}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    return outcomes, kinds, unexpected, warned


def test_mutated_golden_files_give_only_the_projects_errors(model, one_thread):
    assert len(GOLDEN) == 7  # versions 1, 2, 3, 4 (greedy, exact PFR), 5 (tiled) and 6 (ended)
    outcomes, kinds, unexpected, warned = fuzz(model, MUTATIONS_PER_FILE)
    print(f"\n{sum(outcomes.values())} mutations: {dict(kinds)}\noutcomes: {dict(outcomes)}\nwarnings: {dict(warned)}")
    assert not unexpected, "\n".join(unexpected[:3])
    assert sum(outcomes.values()) == len(GOLDEN) * MUTATIONS_PER_FILE
    # the loop reaches every kind of mutation, and both clean decodes and errors
    assert set(kinds) == {"flip", "insert", "delete", "truncate", "duplicate", "duplicate-framed", "swap",
                          "swap-framed", "drop-framed", "header", "payload"}
    assert outcomes["decoded"] > 0 and outcomes["CodecError"] > 0 and warned["TruncatedFileWarning"] > 0


def test_the_mutations_are_what_they_claim(model):
    data = GOLDEN[0].read_bytes()
    fields = header_fields(data)
    assert raw_header(fields) + data[unpack(data).header_bytes:] == data
    assert repacked(fields, unpack(data).records) == data
    assert b"".join(framed_records(data)) == data[unpack(data).header_bytes:]


def test_mutated_files_give_one_error_line_on_the_command_line(tmp_path):
    from diffcodec.cli import main

    data = GOLDEN[0].read_bytes()
    fields = header_fields(data)
    head = unpack(data).header_bytes
    payloads = unpack(data).records
    bad = {
        "flip": data[:100] + bytes([data[100] ^ 4]) + data[101:],
        "insert": data[:500] + b"\x00" + data[500:],
        "delete-last": data[:-10] + data[-9:],
        "header-t_stop": raw_header(fields | {"t_stop": 0}) + data[head:],
        "header-size": raw_header(fields | {"width": 4096, "height": 4096}) + data[head:],
        "swap": raw_body(fields, [framed_records(data)[k] for k in (1, 0, 2, 3, 4, 5, 6)]),
        "lossless-payload": repacked(fields, payloads[:-1] + [payloads[-1][:1]]),
    }
    for name, content in bad.items():
        f = tmp_path / f"{name}.ddc"
        f.write_bytes(content)
        out = tmp_path / f"{name}.png"
        result = CliRunner().invoke(main, ["decode", str(f), "-o", str(out)], catch_exceptions=False)
        messages = [line for line in result.output.strip().splitlines() if not line.startswith("decode:")]  # no bar
        assert result.exit_code == 1 and "Traceback" not in result.output, (name, result.output)
        assert len(messages) == 1 and messages[0].startswith("error: "), (name, result.output)
        assert not out.exists()


def damaged_files(rng, data: bytes):
    """(kind, bytes, decode options) of damage both interfaces report: cuts, a changed seed
    (the header checksum recomputed: the pixels then miss theirs), and one flipped bit, strict
    and salvaged."""
    fields = header_fields(data)
    head = unpack(data).header_bytes
    for _ in range(2):
        yield "truncate", data[:int(rng.integers(head, len(data)))], {}
    forged = raw_header(fields | {"seed": fields["seed"] ^ 1}) + data[head:]
    yield "seed", forged, {}
    yield "seed", forged, {"accept_mismatch": True}
    k = int(rng.integers(head, len(data)))
    flipped = data[:k] + bytes([data[k] ^ 1 << int(rng.integers(8))]) + data[k + 1:]
    yield "flip", flipped, {}
    yield "flip", flipped, {"salvage": True}


def test_the_api_and_the_command_line_agree_on_damaged_files(model, one_thread, tmp_path):
    """The same files through ``decompress`` and ``diffcodec decode``: an error exactly when the
    other gives one, with the same message, and the same warnings (the file named for "the data")."""
    from diffcodec.cli import SALVAGED, main

    rng = np.random.default_rng(SEED + 1)
    seen = collections.Counter()
    for path in GOLDEN:
        for kind, data, options in damaged_files(rng, path.read_bytes()):
            f = tmp_path / "damaged.ddc"
            f.write_bytes(data)
            out = tmp_path / "out.png"
            out.unlink(missing_ok=True)
            flags = [f"--{name.replace('_', '-')}" for name in options]
            result = CliRunner().invoke(main, ["decode", str(f), "-o", str(out), "--model", "default", "--max-pixels",
                                               str(PIXEL_LIMIT), *flags], catch_exceptions=False)
            lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("decode:")]
            case = (path.name, kind, options, result.output)
            try:
                found = decode(model, data, None, **options)
            except EXPECTED as e:
                seen[type(e).__name__] += 1
                assert result.exit_code == 1 and len(lines) == 1 and not out.exists(), case
                if type(e).__name__ == "PixelMismatchError":
                    assert "does not decode to the image that was encoded" in lines[0], case
                else:
                    assert lines[0].endswith(str(e)), (case, str(e))
                continue
            seen["decoded"] += 1
            seen.update(type(w).__name__ for w in found)
            assert result.exit_code == (SALVAGED if "salvage" in options and found else 0) and out.exists(), case
            assert [line for line in lines if line.startswith("warning: ")] == \
                   [f"warning: {str(w).replace('the data', str(f), 1)}" for w in found], case
    # every kind of report came up
    assert {"TruncatedFileWarning", "PixelMismatchError", "PixelMismatchWarning", "SalvagedFileWarning",
            "CodecError"} <= set(seen), seen


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    counts, kinds_seen, problems, warnings_seen = fuzz(load_model("default"),
                                                      int(sys.argv[1]) if len(sys.argv) > 1 else 80,
                                                      int(sys.argv[2]) if len(sys.argv) > 2 else SEED)
    print(f"{sum(counts.values())} mutations: {dict(kinds_seen)}\noutcomes: {dict(counts)}\n"
          f"warnings: {dict(warnings_seen)}")
    print(f"unexpected: {len(problems)}")
    for p in problems:
        print(p)
