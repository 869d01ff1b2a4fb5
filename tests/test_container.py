"""Tests of bitstream.container: varints, CRC, header, records, truncation and corruption (fast)."""

from __future__ import annotations

import pytest

from bitstream.container import (
    MAGIC,
    MAX_PIXELS,
    MAX_RECORD_BYTES,
    MAX_SIDE,
    VERSION,
    FormatError,
    Header,
    ImageMode,
    RecordLayout,
    VarianceChoice,
    crc16,
    pack,
    pack_record,
    read_varint,
    unpack,
    write_varint,
)

HASH = b"\x01\x02\x03\x04"
RECORDS = [b"", b"x", bytes(range(200)), b"hello"]  # framed sizes 3, 4, 204, 8


def full_header() -> Header:
    """A header with every field away from its default."""
    return Header(
        model_hash=HASH, width=300, height=200, mode=ImageMode.RGBA, variance=VarianceChoice.BETA,
        layout=RecordLayout.EVERY_STEP, schedule_id=1, t_stop=7, groups=33, tile=256,
        log2_candidates=10, chunk_quarter_bits=17, seed=2**64 - 1,
    )


def raw_header(width=1, height=1, flags0=0, flags1=0, schedule_id=0, t_stop=10, groups=40,
               log2_candidates=12, quarter=20, tile=0, seed=0, version=VERSION, magic=MAGIC) -> bytes:
    """A header built by hand (bypassing Header's validation), with a correct CRC."""
    body = b"".join([
        magic, bytes([version]), HASH, write_varint(width), write_varint(height),
        bytes([flags0, flags1, schedule_id, t_stop, groups, log2_candidates, quarter]),
        write_varint(tile), write_varint(seed),
    ])
    return body + crc16(body).to_bytes(2, "little")


def record_starts(header: Header, records: list[bytes]) -> list[int]:
    """Offsets of each record's first byte, plus the file length at the end."""
    pos = [len(header.to_bytes())]
    for i, r in enumerate(records):
        pos.append(pos[-1] + len(pack_record(i, r)))
    return pos


# --------------------------------------------------------------------------- varint and CRC


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63, 2**64 - 1])
def test_varint_round_trip(value):
    enc = write_varint(value)
    assert read_varint(enc, 0, "v") == (value, len(enc))
    # and at an offset inside a larger buffer, with trailing bytes after it
    buf = b"\xff\xff" + enc + b"\x80\x07"
    assert read_varint(buf, 2, "v") == (value, 2 + len(enc))


@pytest.mark.parametrize("value, encoded", [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16384, b"\x80\x80\x01"),
    (2**63, b"\x80" * 9 + b"\x01"),
    (2**64 - 1, b"\xff" * 9 + b"\x01"),
])
def test_varint_known_encodings(value, encoded):
    assert write_varint(value) == encoded


def test_varint_errors():
    with pytest.raises(ValueError):
        write_varint(-1)
    with pytest.raises(EOFError, match="the width"):
        read_varint(b"\x80\x80", 0, "the width")
    with pytest.raises(EOFError):
        read_varint(b"", 0, "x")
    # more than 10 bytes with the continuation bit set is not a varint
    with pytest.raises(FormatError, match="the length is not a valid varint"):
        read_varint(b"\x80" * 11, 0, "the length")


def test_crc16_ccitt_false_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    # chaining through the seed equals one pass
    assert crc16(b"56789", crc16(b"1234")) == 0x29B1


# --------------------------------------------------------------------------- header


def test_header_round_trip_non_default_fields():
    h = full_header()
    data = h.to_bytes()
    back, pos = Header.from_bytes(data + b"trailing")
    assert back == h
    assert pos == len(data)
    assert back.mode is ImageMode.RGBA
    assert back.variance is VarianceChoice.BETA
    assert back.layout is RecordLayout.EVERY_STEP
    assert back.seed == 2**64 - 1 and back.tile == 256
    assert back.chunk_bits == 17 / 4


@pytest.mark.parametrize("mode", list(ImageMode))
@pytest.mark.parametrize("variance", list(VarianceChoice))
@pytest.mark.parametrize("layout", list(RecordLayout))
def test_header_round_trip_all_flag_combinations(mode, variance, layout):
    h = Header(HASH, MAX_SIDE, MAX_PIXELS // MAX_SIDE, mode, variance, layout, tile=MAX_SIDE, seed=12345)
    assert Header.from_bytes(h.to_bytes()) == (h, len(h.to_bytes()))


def test_header_golden_bytes():
    # Pinned: any change here changes the file format.
    expected = bytes.fromhex(
        "444443" "01" "01020304" "ac02" "c801" "02" "03" "01" "07" "21" "0a" "11" "8002"
        "ffffffffffffffffff01" "dd28"
    )
    assert full_header().to_bytes() == expected
    assert Header.from_bytes(expected)[0] == full_header()
    # default fields, 1x1 image
    assert Header(b"abcd", 1, 1).to_bytes() == bytes.fromhex("444443016162636401010000000a280c1400004864")


def test_format_md_examples():
    # the worked examples in bitstream/FORMAT.md (§3, §4.1)
    assert Header(bytes(4), 32, 32).to_bytes() == bytes.fromhex(
        "444443 01 00000000 20 20 00 00 00 0a 28 0c 14 00 00 491f")
    h = Header(bytes.fromhex("a1b2c3d4"), 300, 200, ImageMode.RGBA, VarianceChoice.BETA,
               RecordLayout.EVERY_STEP, seed=1234567)
    assert h.to_bytes() == bytes.fromhex(
        "44444301a1b2c3d4 ac02 c801 02 03 000a280c14 00 87ad4b 12a0")
    assert pack_record(0, b"\x01\x02") == bytes.fromhex("02 0102 efdf")


def test_flipping_any_header_byte_is_refused():
    data = pack(full_header(), [b"abc"])
    n = len(full_header().to_bytes())
    for k in range(n):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[k] ^= mask
            with pytest.raises(FormatError):
                unpack(bytes(bad))


def test_bad_magic():
    data = full_header().to_bytes()
    with pytest.raises(FormatError, match="bad magic"):
        Header.from_bytes(b"PNG" + data[3:])
    with pytest.raises(FormatError, match="bad magic"):
        unpack(b"")
    with pytest.raises(FormatError, match="bad magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_unsupported_version():
    with pytest.raises(FormatError, match=f"version 2 is not supported.*reads {VERSION}"):
        unpack(raw_header(version=2))
    with pytest.raises(FormatError, match="version 0 is not supported"):
        unpack(raw_header(version=0))


@pytest.mark.parametrize("flags0, flags1", [(3, 0), (255, 0), (0, 4), (0, 0x80), (1, 0xFF)])
def test_unknown_flags(flags0, flags1):
    with pytest.raises(FormatError, match="unknown flags"):
        Header.from_bytes(raw_header(flags0=flags0, flags1=flags1))


def test_raw_header_helper_matches_header():
    # guards the hand-made headers used below
    h = Header(HASH, 1, 1)
    assert raw_header() == h.to_bytes()
    assert Header.from_bytes(raw_header(width=300, height=200, flags0=2, flags1=3))[0] == Header(
        HASH, 300, 200, ImageMode.RGBA, VarianceChoice.BETA, RecordLayout.EVERY_STEP)


@pytest.mark.parametrize("fields, message", [
    (dict(width=2**40), "image size"),
    (dict(height=2**40), "image size"),
    (dict(width=2**64 - 1, height=2**64 - 1), "image size"),
    (dict(width=0), "image size"),
    (dict(height=0), "image size"),
    (dict(width=MAX_SIDE + 1), "image size"),
    (dict(width=2**14, height=2**14), "exceeds the limit"),  # each side fine, 2**28 pixels
    (dict(width=MAX_SIDE, height=MAX_PIXELS // MAX_SIDE + 1), "exceeds the limit"),
    (dict(t_stop=0), "t_stop"),
    (dict(t_stop=100), "t_stop"),
    (dict(groups=0), "groups"),
    (dict(log2_candidates=25), "log2_candidates"),
    (dict(quarter=0), "chunk budget"),
    (dict(tile=MAX_SIDE + 1), "tile"),
    (dict(tile=2**60), "tile"),
    (dict(seed=2**64), "seed"),  # a 10-byte varint can hold more than 64 bits
])
def test_absurd_header_fields_refused(fields, message):
    data = raw_header(**fields) + pack_record(0, b"payload")
    with pytest.raises(FormatError, match=message):
        Header.from_bytes(data)
    with pytest.raises(FormatError, match=message):
        unpack(data)


def test_header_constructor_validates():
    with pytest.raises(FormatError, match="image size"):
        Header(HASH, 2**40, 1)
    with pytest.raises(FormatError, match="exceeds the limit"):
        Header(HASH, 2**14, 2**14)
    with pytest.raises(ValueError, match="model_hash"):
        Header(b"abc", 1, 1)
    with pytest.raises(ValueError):
        Header(HASH, 1, 1, mode=7)
    # the largest allowed image is accepted
    Header(HASH, MAX_SIDE, MAX_PIXELS // MAX_SIDE)


# --------------------------------------------------------------------------- records


def test_pack_unpack_round_trip():
    h = full_header()
    data = pack(h, RECORDS)
    u = unpack(data)
    assert u.header == h
    assert u.records == RECORDS
    assert u.truncated is False
    assert u.header_bytes == len(h.to_bytes())
    assert u.record_bytes == [3, 4, 204, 8]
    assert u.header_bytes + sum(u.record_bytes) == len(data)


def test_header_only_file():
    u = unpack(full_header().to_bytes())
    assert u.records == [] and u.truncated is False and u.record_bytes == []


def test_pack_record_layout():
    # length varint, payload, CRC-16 over (index varint + payload), little endian
    rec = pack_record(5, b"abc")
    assert rec[:1] == b"\x03" and rec[1:4] == b"abc"
    assert int.from_bytes(rec[4:], "little") == crc16(b"\x05abc")
    long = pack_record(0, bytes(300))
    assert long[:2] == b"\xac\x02" and len(long) == 2 + 300 + 2


def test_truncation_at_every_byte():
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    assert starts[-1] == len(data)
    for k in range(len(data) + 1):
        cut = data[:k]
        if k < starts[0]:
            with pytest.raises(FormatError):
                unpack(cut)
            continue
        u = unpack(cut)
        complete = sum(1 for end in starts[1:] if end <= k)
        assert u.header == h
        assert u.records == RECORDS[:complete], k
        assert u.truncated is (k not in starts), k
        assert u.record_bytes == [starts[i + 1] - starts[i] for i in range(complete)]


def test_flipping_a_payload_or_crc_byte_names_the_record():
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    for i, rec in enumerate(RECORDS):
        length_bytes = len(write_varint(len(rec)))
        for k in range(starts[i] + length_bytes, starts[i + 1]):
            for mask in (0x01, 0xFF):
                bad = bytearray(data)
                bad[k] ^= mask
                with pytest.raises(FormatError, match=rf"record {i} is corrupt \(checksum mismatch at byte {starts[i]}\)"):
                    unpack(bytes(bad))


def test_flipping_a_length_byte_is_an_error_or_reads_as_truncation():
    # The length prefix is not covered by the CRC.  A corrupted length either makes the CRC
    # check fail for that record, or points past the end of the file, which the container
    # cannot tell from a truncated file: the complete records before it are returned.
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    seen_truncated = 0
    for i, rec in enumerate(RECORDS):
        for k in range(starts[i], starts[i] + len(write_varint(len(rec)))):
            for mask in (0x01, 0x80, 0xFF):
                bad = bytearray(data)
                bad[k] ^= mask
                try:
                    u = unpack(bytes(bad))
                except FormatError as e:
                    assert f"record {i} " in str(e)
                else:
                    seen_truncated += 1
                    assert u.truncated is True
                    assert u.records == RECORDS[:i]
    # e.g. record 0's length 0x00 -> 0xFF starts a varint that reaches past the end
    assert seen_truncated > 0


def test_huge_record_length():
    head = full_header().to_bytes()
    first = pack_record(0, b"ok")
    # over the limit: refused as corrupt, naming the record
    with pytest.raises(FormatError, match=f"record 0 claims {MAX_RECORD_BYTES + 1} bytes"):
        unpack(head + write_varint(MAX_RECORD_BYTES + 1) + b"abc")
    with pytest.raises(FormatError, match=f"record 1 claims {2**64 - 1} bytes"):
        unpack(head + first + write_varint(2**64 - 1) + b"abc")
    # at the limit but longer than the file: reported as a truncated record
    u = unpack(head + first + write_varint(MAX_RECORD_BYTES) + b"abc")
    assert u.records == [b"ok"] and u.truncated is True
    # a length varint that never ends (11 continuation bytes) is corrupt ...
    with pytest.raises(FormatError, match="the length of record 1 is not a valid varint"):
        unpack(head + first + b"\x80" * 11)
    # ... but one cut short by the end of the file is a truncation
    u = unpack(head + first + b"\x80" * 9)
    assert u.records == [b"ok"] and u.truncated is True


def test_records_are_bound_to_their_index():
    h = full_header()
    a, b = b"AAAA", b"BBBB"
    head = h.to_bytes()
    swapped = head + pack_record(1, b) + pack_record(0, a)
    # the frames are intact, but each CRC covers its index
    with pytest.raises(FormatError, match="record 0 is corrupt"):
        unpack(swapped)
    # swapping the framed bytes of two equal-length records of a real file
    data = pack(h, [a, b, b"CCCC"])
    n = len(pack_record(0, a))
    s = len(head)
    swapped = data[:s] + data[s + n:s + 2 * n] + data[s:s + n] + data[s + 2 * n:]
    assert len(swapped) == len(data) and swapped != data
    with pytest.raises(FormatError, match="record 0 is corrupt"):
        unpack(swapped)
    # a record copied from position 0 to position 1 is refused too
    with pytest.raises(FormatError, match="record 1 is corrupt"):
        unpack(head + pack_record(0, a) + pack_record(0, a))
