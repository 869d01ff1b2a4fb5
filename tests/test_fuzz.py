"""Damaged files give the project's own errors, never another exception.

A seeded, bounded loop mutates the golden files (tests/golden/*.ddc, format versions 1 to 6):
bit flips, inserted, deleted and duplicated bytes, truncations, records duplicated, swapped or
dropped (as raw bytes, and re-framed with valid checksums), header fields changed (with the
header CRC recomputed) and record payloads changed (with the record CRC recomputed). Each result
is decoded with the shipped ``default`` model, up to the record the mutation touched (a full
decode for the lossless record), under a small pixel limit so that a changed width or height
cannot make a decode expensive. Every outcome must be a decoded image, a
``diffcodec.errors.DiffcodecError`` or a ``bitstream.container.FormatError``.

``python tests/test_fuzz.py [N [SEED]]`` runs N mutations per file and prints the outcomes by
class (1,200 mutations with seed 7 gave 410 decoded files, 788 CodecError, 2 ImageTooLarge).
"""

from __future__ import annotations

import collections
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitstream.container import MAGIC, FormatError, Header, VarianceChoice, crc16, pack_record, unpack, write_varint
from diffcodec.checkpoint import load_model
from diffcodec.codec import SCHEDULES, decompress
from diffcodec.errors import DiffcodecError
from diffcodec.plan import make_plan

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*_default_*.ddc"))  # versions 1 to 6
SEED = 20260601
MUTATIONS_PER_FILE = 80
PIXEL_LIMIT = 48 * 48  # golden files are 32×32; a mutated size above this is refused from the header
EXPECTED = (DiffcodecError, FormatError)

ONE_BYTE = ("flags0", "flags1", "schedule_id", "t_stop", "groups", "log2_candidates", "chunk_quarter_bits")


def header_fields(data: bytes) -> dict:
    header, _ = Header.from_bytes(data)
    return {"version": header.version, "model_hash": header.model_hash, "width": header.width,
            "height": header.height, "flags0": int(header.mode),
            "flags1": header_flags1(header), "schedule_id": header.schedule_id,
            "t_stop": header.t_stop, "groups": header.groups, "log2_candidates": header.log2_candidates,
            "chunk_quarter_bits": header.chunk_quarter_bits, "tile": header.tile, "seed": header.seed,
            "body_bytes": header.body_bytes, "variance_table": header.variance_table,
            "selection": header.selection, "halo": header.halo}


def header_flags1(header: Header) -> int:
    """Byte 1 of the flags (FORMAT.md §3): bit 0 β, bit 1 layout, bit 2 optimal variances."""
    optimal = header.variance is VarianceChoice.OPTIMAL
    return (0 if optimal else int(header.variance)) | int(header.layout) << 1 | int(optimal) << 2


def raw_header(f: dict) -> bytes:
    """Header bytes for any field values (no range checks), with a matching CRC."""
    body = b"".join([MAGIC, bytes([f["version"]]), f["model_hash"], write_varint(f["width"]),
                     write_varint(f["height"]), bytes(f[name] for name in ONE_BYTE),
                     bytes([f.get("selection", 4)]) if f["version"] >= 4 else b"", write_varint(f["tile"]),
                     write_varint(f.get("halo", 0)) if f["version"] >= 5 and f["tile"] else b"",
                     write_varint(f["seed"]), f.get("variance_table", b""), write_varint(f["body_bytes"])])
    return body + crc16(body).to_bytes(2, "little")


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


def decode(model, data: bytes, record: int | None):
    """Decode up to channel record ``record`` of the golden plan (None or the lossless record: all)."""
    upto = None
    header = Header.from_bytes(GOLDEN[0].read_bytes())[0]
    plan = make_plan(SCHEDULES[0].num_timesteps, header.t_stop, header.groups, header.layout)
    if record is not None and record < len(plan.record_ends):
        upto = plan.t_after_record(record)
    return decompress(data, model, upto, max_pixels=PIXEL_LIMIT)


def fuzz(model, mutations_per_file: int, seed: int = SEED):
    """Outcomes by class ('decoded', or the exception's class name) and the unexpected ones."""
    outcomes, kinds, unexpected = collections.Counter(), collections.Counter(), []
    rng = np.random.default_rng(seed)
    for path in GOLDEN:
        original = path.read_bytes()
        for _ in range(mutations_per_file):
            kind, data, record = mutate(rng, original)
            kinds[kind.split(":")[0]] += 1
            try:
                decode(model, data, record)
                outcomes["decoded"] += 1
            except EXPECTED as e:
                outcomes[type(e).__name__] += 1
            except Exception as e:  # noqa: BLE001 - the point of the test
                outcomes[type(e).__name__] += 1
                unexpected.append(f"{path.name} {kind}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    return outcomes, kinds, unexpected


@pytest.fixture(scope="module")
def model():
    return load_model("default")


def test_mutated_golden_files_give_only_the_projects_errors(model, one_thread):
    assert len(GOLDEN) == 7  # versions 1, 2, 3, 4 (greedy, exact PFR), 5 (tiled) and 6 (ended)
    outcomes, kinds, unexpected = fuzz(model, MUTATIONS_PER_FILE)
    print(f"\n{sum(outcomes.values())} mutations: {dict(kinds)}\noutcomes: {dict(outcomes)}")
    assert not unexpected, "\n".join(unexpected[:3])
    assert sum(outcomes.values()) == len(GOLDEN) * MUTATIONS_PER_FILE
    # the loop reaches every kind of mutation, and both clean decodes and errors
    assert set(kinds) == {"flip", "insert", "delete", "truncate", "duplicate", "duplicate-framed", "swap",
                          "swap-framed", "drop-framed", "header", "payload"}
    assert outcomes["decoded"] > 0 and outcomes["CodecError"] > 0


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


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    counts, kinds_seen, problems = fuzz(load_model("default"), int(sys.argv[1]) if len(sys.argv) > 1 else 80,
                                        int(sys.argv[2]) if len(sys.argv) > 2 else SEED)
    print(f"{sum(counts.values())} mutations: {dict(kinds_seen)}\noutcomes: {dict(counts)}")
    print(f"unexpected: {len(problems)}")
    for p in problems:
        print(p)
