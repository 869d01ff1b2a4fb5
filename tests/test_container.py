"""Tests of bitstream.container: varints, CRC, header, records, truncation and corruption (fast)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bitstream.container import (
    MAGIC,
    MAX_PIXELS,
    MAX_SIDE,
    ENDING_VERSION,
    TILED_VERSION,
    UNTILED_VERSION,
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
RECORDS = [b"", b"x", bytes(range(200)), b"hello"]  # framed sizes 3, 4, 204, 8 (219 bytes)


def full_header() -> Header:
    """A header with every field away from its default (except body_bytes, which pack sets)."""
    return Header(
        model_hash=HASH, width=300, height=200, mode=ImageMode.RGBA, variance=VarianceChoice.BETA,
        layout=RecordLayout.EVERY_STEP, schedule_id=1, t_stop=7, groups=33, tile=256,
        log2_candidates=10, chunk_quarter_bits=17, seed=2**64 - 1,
    )


def _varint(value) -> bytes:
    """A varint field: an int is encoded canonically, bytes are used as they are."""
    return value if isinstance(value, bytes) else write_varint(value)


def raw_header(width=1, height=1, flags0=0, flags1=0, schedule_id=0, t_stop=10, groups=40,
               log2_candidates=12, quarter=20, tile=0, seed=0, body_bytes=0, version=UNTILED_VERSION,
               magic=MAGIC, table=b"", selection=4, halo=0) -> bytes:
    """A header built by hand (bypassing Header's validation), with a correct CRC.  The varint
    fields take an int or the raw bytes to write (to build non-canonical encodings)."""
    body = b"".join([
        magic, bytes([version]), HASH, _varint(width), _varint(height),
        bytes([flags0, flags1, schedule_id, t_stop, groups, log2_candidates, quarter]),
        bytes([selection]) if version >= 4 else b"", _varint(tile),
        _varint(halo) if version >= 5 and tile != 0 else b"", _varint(seed), table, _varint(body_bytes),
    ])
    return body + crc16(body).to_bytes(2, "little")


def framed(header: Header, body: bytes) -> bytes:
    """A file made of hand-framed record bytes, under a header that declares their length."""
    return replace(header, body_bytes=len(body)).to_bytes() + body


def record_starts(header: Header, records: list[bytes]) -> list[int]:
    """Offsets of each record's first byte in ``pack(header, records)``, plus the file length."""
    body = [len(pack_record(i, r)) for i, r in enumerate(records)]
    pos = [len(replace(header, body_bytes=sum(body)).to_bytes())]
    for n in body:
        pos.append(pos[-1] + n)
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


@pytest.mark.parametrize("encoded", [
    b"\x80\x00",  # 0 in two bytes
    b"\x81\x00",  # 1 in two bytes
    b"\xff\x00",  # 127 in two bytes
    b"\xac\x82\x00",  # 300 in three bytes
    b"\x80" * 9 + b"\x00",  # 0 in ten bytes
    b"\xff" * 9 + b"\x00",  # 2**63 - 1 in ten bytes
])
def test_varint_non_canonical_refused(encoded):
    with pytest.raises(FormatError, match="the seed is not a valid varint"):
        read_varint(encoded, 0, "the seed")
    with pytest.raises(FormatError, match="not a valid varint"):
        read_varint(b"\x05" + encoded + b"\x00", 1, "x")


@pytest.mark.parametrize("encoded", [
    b"\x80" * 9 + b"\x02",  # 2**64
    b"\xff" * 9 + b"\x03",  # 2**65 - 1
    b"\xff" * 9 + b"\x7f",  # the largest 10-byte value, 2**70 - 1
])
def test_varint_of_65_bits_or_more_refused(encoded):
    with pytest.raises(FormatError, match="the seed is not a valid varint"):
        read_varint(encoded, 0, "the seed")


def test_varint_canonical_edge_values_accepted():
    # a final byte of 0 is fine on its own, and the largest 64-bit value is fine
    assert read_varint(b"\x00", 0, "v") == (0, 1)
    assert read_varint(b"\x80\x01", 0, "v") == (128, 2)
    assert read_varint(b"\xff" * 9 + b"\x01", 0, "v") == (2**64 - 1, 10)


def test_crc16_ccitt_false_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    # chaining through the seed equals one pass
    assert crc16(b"56789", crc16(b"1234")) == 0x29B1


# --------------------------------------------------------------------------- header


def test_header_round_trip_non_default_fields():
    h = replace(full_header(), body_bytes=123456)
    data = h.to_bytes()
    back, pos = Header.from_bytes(data + b"trailing")
    assert back == h
    assert pos == len(data)
    assert back.mode is ImageMode.RGBA
    assert back.variance is VarianceChoice.BETA
    assert back.layout is RecordLayout.EVERY_STEP
    assert back.seed == 2**64 - 1 and back.tile == 256
    assert back.body_bytes == 123456
    assert back.chunk_bits == 17 / 4


@pytest.mark.parametrize("mode", list(ImageMode))
@pytest.mark.parametrize("variance", list(VarianceChoice))
@pytest.mark.parametrize("layout", list(RecordLayout))
def test_header_round_trip_all_flag_combinations(mode, variance, layout):
    table = b"\x0a\x0b\x0c\x0d" if variance is VarianceChoice.OPTIMAL else b""
    h = Header(HASH, MAX_SIDE, MAX_PIXELS // MAX_SIDE, mode, variance, layout, tile=MAX_SIDE, seed=12345,
               body_bytes=2**62 - 1, variance_table=table)
    assert Header.from_bytes(h.to_bytes()) == (h, len(h.to_bytes()))


def test_optimal_variance_header_bytes():
    # flags1 bit 2 = optimal variances; the table's 4 hash bytes follow the seed
    h = Header(bytes(4), 32, 32, variance=VarianceChoice.OPTIMAL, variance_table=bytes.fromhex("a1b2c3d4"))
    data = h.to_bytes()
    assert data[:24] == bytes.fromhex("444443 04 00000000 20 20 00 04 00 0a 28 0c 14 04 00 00 a1b2c3d4")
    assert Header.from_bytes(data)[0] == h and len(data) == 27
    with pytest.raises(ValueError, match="variance_table"):
        Header(HASH, 1, 1, variance=VarianceChoice.OPTIMAL)
    with pytest.raises(ValueError, match="variance_table"):
        Header(HASH, 1, 1, variance_table=b"abcd")
    with pytest.raises(FormatError, match="need format version 3"):
        Header(HASH, 1, 1, variance=VarianceChoice.OPTIMAL, variance_table=b"abcd", version=2)
    with pytest.raises(FormatError, match="unknown flags"):  # bit 2 means nothing before version 3
        Header.from_bytes(raw_header(flags1=4, version=2))


def test_header_body_bytes_defaults_to_zero():
    assert Header(HASH, 1, 1).body_bytes == 0
    assert full_header().body_bytes == 0


def test_header_golden_bytes():
    # Pinned: any change here changes the file format.  Version 3 (still written on request):
    expected = bytes.fromhex(
        "444443" "03" "01020304" "ac02" "c801" "02" "03" "01" "07" "21" "0a" "11" "8002"
        "ffffffffffffffffff01" "00" "8789"
    )
    assert replace(full_header(), version=3).to_bytes() == expected
    assert Header.from_bytes(expected)[0] == replace(full_header(), version=3)
    # default fields, 1x1 image
    assert Header(b"abcd", 1, 1, version=3).to_bytes() == bytes.fromhex(
        "444443 03 61626364 01 01 00 00 00 0a 28 0c 14 00 00 00 e645")
    # the largest body length, as a 9-byte varint
    assert Header(HASH, 1, 1, body_bytes=2**62 - 1, version=3).to_bytes() == bytes.fromhex(
        "444443 03 01020304 01 01 00 00 00 0a 28 0c 14 00 00 ffffffffffffffff3f fd6d")


def test_version_4_header_golden_bytes():
    # Version 4: the selection byte after chunk_quarter_bits (04 exact PFR, ff greedy, 08 λ = 2).
    v4 = Header(b"abcd", 1, 1)
    assert v4.to_bytes() == bytes.fromhex("444443 04 61626364 01 01 00 00 00 0a 28 0c 14 04 00 00 00 45c4")
    greedy = replace(full_header(), selection=255)
    assert greedy.to_bytes().hex() == ("444443" "04" "01020304" "ac02" "c801" "02" "03" "01" "07" "21" "0a" "11" "ff"
                                       "8002" "ffffffffffffffffff01" "00" "0a9c")
    assert Header.from_bytes(greedy.to_bytes())[0] == greedy


def test_version_5_header_golden_bytes():
    # Version 5: a nonzero tile is followed by the halo (varints; FORMAT.md §3); tile 0 has no halo.
    tiled = Header(b"abcd", 768, 512, tile=256, halo=32, version=TILED_VERSION, selection=255)
    assert tiled.to_bytes() == bytes.fromhex(
        "444443 05 61626364 8006 8004 00 00 00 0a 28 0c 14 ff 8002 20 00 00 af11")
    assert Header.from_bytes(tiled.to_bytes())[0] == tiled
    whole = Header(b"abcd", 768, 512, version=TILED_VERSION)
    assert whole.to_bytes() == bytes.fromhex("444443 05 61626364 8006 8004 00 00 00 0a 28 0c 14 04 00 00 00 de1e")
    assert Header.from_bytes(whole.to_bytes())[0] == whole
    # a version 4 header keeps its layout: a tile there has no halo after it (decoders refuse it)
    assert Header.from_bytes(raw_header(tile=256, version=4))[0].halo == 0
    for bad in (dict(halo=8), dict(tile=256, halo=8, version=4), dict(tile=256, halo=MAX_SIDE + 1, version=5)):
        with pytest.raises(FormatError, match="halo"):
            Header(HASH, 1, 1, **bad)
    with pytest.raises(FormatError, match="the halo"):
        Header.from_bytes(raw_header(tile=256, halo=b"\x80", version=5))


def test_version_2_headers_still_read():
    # Pinned bytes written by version 2 (same layout, version byte 02).
    v2 = bytes.fromhex(
        "444443" "02" "01020304" "ac02" "c801" "02" "03" "01" "07" "21" "0a" "11" "8002"
        "ffffffffffffffffff01" "00" "6179"
    )
    header = Header.from_bytes(v2)[0]
    assert header.version == 2 and header == replace(full_header(), version=2)
    assert header.to_bytes() == v2


def test_version_1_headers_still_read():
    # Pinned bytes written by version 1 (same layout, version byte 01): read, and written back as is.
    v1 = bytes.fromhex(
        "444443" "01" "01020304" "ac02" "c801" "02" "03" "01" "07" "21" "0a" "11" "8002"
        "ffffffffffffffffff01" "00" "6a78"
    )
    header = Header.from_bytes(v1)[0]
    assert header.version == 1 and header == replace(full_header(), version=1)
    assert header.to_bytes() == v1
    assert Header(b"abcd", 1, 1, version=1).to_bytes() == bytes.fromhex(
        "444443 01 61626364 01 01 00 00 00 0a 28 0c 14 00 00 00 2264")


def test_pack_golden_bytes():
    # Pinned: a whole small file, header (body_bytes = 7) and two records.
    data = pack(Header(b"abcd", 1, 1), [b"", b"x"])
    assert data == bytes.fromhex(
        "444443 04 61626364 01 01 00 00 00 0a 28 0c 14 04 00 00 07 a2b4"  # header, body_bytes 7
        "00 0f1d"  # record 0: length 0, CRC of 00 00
        "01 78 0237"  # record 1: length 1, "x", CRC of 01 01 78
    )
    assert crc16(b"\x00\x00") == 0x1D0F and crc16(b"\x01\x01x") == 0x3702


def test_format_md_examples():
    # the worked examples in bitstream/FORMAT.md (§3, §4.1)
    assert Header(bytes(4), 32, 32).to_bytes() == bytes.fromhex(
        "444443 04 00000000 20 20 00 00 00 0a 28 0c 14 04 00 00 00 c700")
    assert Header(bytes(4), 32, 32, version=3).to_bytes() == bytes.fromhex(
        "444443 03 00000000 20 20 00 00 00 0a 28 0c 14 00 00 00 1a8b")
    h = Header(bytes.fromhex("a1b2c3d4"), 300, 200, ImageMode.RGBA, VarianceChoice.BETA,
               RecordLayout.EVERY_STEP, seed=1234567)
    assert h.to_bytes() == bytes.fromhex(
        "44444304a1b2c3d4 ac02 c801 02 03 000a280c14 04 00 87ad4b 00 733a")
    assert pack_record(0, b"\x01\x02") == bytes.fromhex("02 0102 d3f9")
    assert crc16(bytes.fromhex("00 02 0102")) == 0xF9D3
    assert pack(Header(bytes(4), 32, 32), [b"\x01\x02"]) == bytes.fromhex(
        "444443 04 00000000 20 20 00 00 00 0a 28 0c 14 04 00 00 05 6250" "02 0102 d3f9")


def test_header_size_range():
    # FORMAT.md §3: 23 to 49 bytes (version 3: 22 to 48)
    assert len(Header(HASH, 1, 1).to_bytes()) == 23
    assert len(Header(HASH, 1, 1, version=3).to_bytes()) == 22
    largest = Header(HASH, MAX_SIDE, MAX_PIXELS // MAX_SIDE, tile=MAX_SIDE, seed=2**64 - 1, body_bytes=2**62 - 1)
    assert len(largest.to_bytes()) == 45
    assert len(replace(largest, variance=VarianceChoice.OPTIMAL, variance_table=HASH).to_bytes()) == 49
    assert len(replace(largest, variance=VarianceChoice.OPTIMAL, variance_table=HASH, version=3).to_bytes()) == 48


def test_flipping_any_header_byte_is_refused():
    data = pack(full_header(), [b"abc"])
    n = unpack(data).header_bytes
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


def test_version_6_header_golden_bytes():
    # Version 6: an end_t varint after the tile (and halo); 0 = the plan's own records (FORMAT.md §3, §5)
    ending = Header(b"abcd", 768, 512, t_stop=10, version=ENDING_VERSION, selection=255, end_t=137)
    assert ending.to_bytes() == bytes.fromhex("444443 06 61626364 8006 8004 00 00 00 0a 28 0c 14 ff 00 8901 00 00 c6f7")
    assert Header.from_bytes(ending.to_bytes())[0] == ending
    tiled = Header(b"abcd", 768, 512, tile=256, halo=32, version=ENDING_VERSION, selection=255, end_t=37)
    assert Header.from_bytes(tiled.to_bytes())[0] == tiled
    assert tiled.to_bytes()[20:24] == bytes.fromhex("8002 20 25")  # tile, halo, end_t
    assert Header.from_bytes(replace(ending, end_t=0).to_bytes())[0].end_t == 0
    for bad in (dict(end_t=20, version=TILED_VERSION), dict(end_t=5, t_stop=10, version=6),
                dict(end_t=1 << 16, version=6)):
        with pytest.raises(FormatError, match="end_t"):
            Header(HASH, 1, 1, **bad)


def test_unsupported_version():
    with pytest.raises(FormatError, match="version 7 is not supported.*reads 1, 2, 3, 4, 5, 6"):
        unpack(raw_header(version=7))
    with pytest.raises(FormatError, match="version 7 is not supported"):
        Header(HASH, 1, 1, version=7)
    with pytest.raises(FormatError, match="version 0 is not supported"):
        unpack(raw_header(version=0))


@pytest.mark.parametrize("flags0, flags1", [(3, 0), (255, 0), (0, 8), (0, 0x80), (1, 0xFF), (0, 5)])
def test_unknown_flags(flags0, flags1):
    table = b"abcd" if flags1 & 4 else b""  # bit 2 brings the variance table's 4 bytes
    with pytest.raises(FormatError, match="unknown flags"):
        Header.from_bytes(raw_header(flags0=flags0, flags1=flags1, table=table))


def test_raw_header_helper_matches_header():
    # guards the hand-made headers used below
    h = Header(HASH, 1, 1)
    assert raw_header() == h.to_bytes()
    assert raw_header(body_bytes=300) == replace(h, body_bytes=300).to_bytes()
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
    (dict(log2_candidates=21), "log2_candidates 21 outside 1..20"),
    (dict(log2_candidates=255), "log2_candidates"),
    (dict(quarter=0), "chunk budget"),
    (dict(tile=MAX_SIDE + 1), "tile"),
    (dict(tile=2**60), "tile"),
    (dict(seed=2**64), "the seed is not a valid varint"),  # a 10-byte varint can hold more than 64 bits
    (dict(seed=2**70 - 1), "the seed is not a valid varint"),
    (dict(body_bytes=2**62), "body length"),
    (dict(body_bytes=2**64 - 1), "body length"),
    (dict(body_bytes=2**64), "the body length is not a valid varint"),
])
def test_absurd_header_fields_refused(fields, message):
    data = raw_header(**fields) + pack_record(0, b"payload")
    with pytest.raises(FormatError, match=message):
        Header.from_bytes(data)
    with pytest.raises(FormatError, match=message):
        unpack(data)


@pytest.mark.parametrize("field, encoded, what", [
    ("width", b"\x81\x00", "the width"),
    ("height", b"\xa0\x80\x00", "the height"),
    ("tile", b"\x80\x00", "the tile size"),
    ("seed", b"\x80" * 9 + b"\x00", "the seed"),
    ("body_bytes", b"\x87\x00", "the body length"),
])
def test_non_canonical_header_varints_refused(field, encoded, what):
    # the CRC is right, but every value has exactly one encoding
    data = raw_header(**{field: encoded})
    with pytest.raises(FormatError, match=f"{what} is not a valid varint"):
        Header.from_bytes(data)
    with pytest.raises(FormatError, match=f"{what} is not a valid varint"):
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
    with pytest.raises(FormatError, match="log2_candidates 21 outside 1..20"):
        Header(HASH, 1, 1, log2_candidates=21)
    with pytest.raises(FormatError, match="schedule id 256 outside 0..255"):
        Header(HASH, 1, 1, schedule_id=256)
    with pytest.raises(FormatError, match="schedule id"):
        Header(HASH, 1, 1, schedule_id=-1)
    with pytest.raises(FormatError, match="body length"):
        Header(HASH, 1, 1, body_bytes=-1)
    with pytest.raises(FormatError, match="body length"):
        Header(HASH, 1, 1, body_bytes=2**62)
    # the limits themselves are accepted
    Header(HASH, MAX_SIDE, MAX_PIXELS // MAX_SIDE)
    Header(HASH, 1, 1, log2_candidates=20, schedule_id=255, body_bytes=2**62 - 1)
    Header(HASH, 1, 1, log2_candidates=1)
    with pytest.raises(FormatError, match="log2_candidates 0 outside 1..20"):  # one candidate carries nothing
        Header(HASH, 1, 1, log2_candidates=0)


# --------------------------------------------------------------------------- records


def test_pack_unpack_round_trip():
    h = full_header()
    data = pack(h, RECORDS)
    u = unpack(data)
    assert u.header == replace(h, body_bytes=219)
    assert u.records == RECORDS
    assert u.truncated is False
    assert u.header_bytes == len(replace(h, body_bytes=219).to_bytes()) == 36
    assert u.record_bytes == [3, 4, 204, 8]
    assert u.header_bytes + sum(u.record_bytes) == len(data)


def test_pack_sets_body_bytes():
    h = full_header()
    for records in ([], [b""], RECORDS, [bytes(200)] * 100):
        data = pack(h, records)
        u = unpack(data)
        assert u.header.body_bytes == len(data) - u.header_bytes
        assert u.header_bytes == len(replace(h, body_bytes=u.header.body_bytes).to_bytes())
        assert u.records == records and u.truncated is False
    # the body_bytes a header is given is ignored
    assert pack(replace(h, body_bytes=999), RECORDS) == pack(h, RECORDS)
    # header_bytes is the parsed header's length: a longer body needs a longer varint
    assert unpack(pack(h, [])).header_bytes == 35
    assert unpack(pack(h, [bytes(200)] * 100)).header_bytes == 37  # body 20400 bytes, 3-byte varint


def test_header_only_file():
    u = unpack(pack(full_header(), []))
    assert u.records == [] and u.truncated is False and u.record_bytes == []
    assert unpack(full_header().to_bytes()) == u


def test_pack_record_layout():
    # length varint, payload, CRC-16 over (index varint + length varint + payload), little endian
    rec = pack_record(5, b"abc")
    assert rec[:1] == b"\x03" and rec[1:4] == b"abc"
    assert int.from_bytes(rec[4:], "little") == crc16(b"\x05\x03abc")
    long = pack_record(0, bytes(300))
    assert long[:2] == b"\xac\x02" and len(long) == 2 + 300 + 2
    assert int.from_bytes(long[-2:], "little") == crc16(b"\x00\xac\x02" + bytes(300))
    big_index = pack_record(300, b"z")
    assert int.from_bytes(big_index[-2:], "little") == crc16(b"\xac\x02\x01z")


def test_trailing_bytes_refused():
    h = full_header()
    data = pack(h, RECORDS)
    with pytest.raises(FormatError, match="1 unexpected bytes after the last record"):
        unpack(data + b"\x00")
    with pytest.raises(FormatError, match="3 unexpected bytes after the last record"):
        unpack(data + b"abc")
    # a well-formed extra record is refused too: the header declares where the file ends
    with pytest.raises(FormatError, match="8 unexpected bytes after the last record"):
        unpack(data + pack_record(len(RECORDS), b"more!"))
    # so are two files concatenated
    with pytest.raises(FormatError, match=f"{len(data)} unexpected bytes"):
        unpack(data + data)
    with pytest.raises(FormatError, match="1 unexpected bytes"):
        unpack(pack(h, []) + b"\x00")
    # a file whose header declares fewer bytes than it has
    short = replace(h, body_bytes=3).to_bytes() + b"".join(pack_record(i, r) for i, r in enumerate(RECORDS))
    with pytest.raises(FormatError, match="216 unexpected bytes"):
        unpack(short)


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
        assert u.header == replace(h, body_bytes=len(data) - starts[0])
        assert u.header_bytes == starts[0]
        assert u.records == RECORDS[:complete], k
        # any prefix shorter than the declared length is truncated, even one ending between records
        assert u.truncated is (k < len(data)), k
        assert u.record_bytes == [starts[i + 1] - starts[i] for i in range(complete)]


def test_truncation_inside_a_multi_byte_length():
    # a prefix that ends inside a record's length varint drops that record
    records = [b"ok", bytes(300)]
    data = pack(Header(HASH, 1, 1), records)
    starts = record_starts(Header(HASH, 1, 1), records)
    u = unpack(data[:starts[1] + 1])  # the first byte of 0xac 0x02
    assert u.records == [b"ok"] and u.truncated is True


def test_flipping_any_byte_is_refused():
    # Every byte of a file is covered by a CRC (the header's, or its record's, which covers the
    # length too) and the header declares where the file ends, so no single-byte change passes.
    h = full_header()
    data = pack(h, RECORDS)
    assert len(data) == 255
    for k in range(len(data)):
        for mask in (1, 2, 4, 8, 16, 32, 64, 128, 0xFF):
            bad = bytearray(data)
            bad[k] ^= mask
            with pytest.raises(FormatError):
                unpack(bytes(bad))


def test_flipping_any_byte_of_a_tiny_file_any_way_is_refused():
    # every one of the 255 changes of every byte
    data = pack(Header(b"abcd", 1, 1), [b"", b"x", b"yz"])
    for k in range(len(data)):
        for mask in range(1, 256):
            bad = bytearray(data)
            bad[k] ^= mask
            with pytest.raises(FormatError):
                unpack(bytes(bad))


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
                with pytest.raises(FormatError, match=rf"record {i} is corrupt \(checksum mismatch in bytes {starts[i]}–{starts[i + 1] - 1}\)"):
                    unpack(bytes(bad))


def test_flipping_a_length_byte_is_an_error_naming_the_record():
    # The length is covered by the CRC, and the header declares where the file ends: a corrupted
    # length fails its record's check, runs past the end, or is not a valid varint.  It never
    # reads as truncation.
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    kinds = set()
    for i, rec in enumerate(RECORDS):
        for k in range(starts[i], starts[i] + len(write_varint(len(rec)))):
            for mask in range(1, 256):
                bad = bytearray(data)
                bad[k] ^= mask
                with pytest.raises(FormatError, match=f"record {i} is corrupt|the length of record {i} ") as e:
                    unpack(bytes(bad))
                kinds.add(next(kind for kind in ("checksum mismatch", "runs past the end", "not a valid varint")
                               if kind in str(e.value)))
    # e.g. record 0's length 0x00 -> 0xFF starts a varint that reaches past the end, 0x00 -> 0x01
    # leaves the frame inside the file with a wrong CRC, and record 2's length c8 01 -> c8 00
    # is a non-canonical varint
    assert kinds == {"checksum mismatch", "runs past the end", "not a valid varint"}


def test_length_running_past_the_declared_end():
    h = Header(HASH, 1, 1)
    first = pack_record(0, b"ok")

    def second(length: int, payload: bytes = b"abc") -> bytes:
        """Record 1 with a given length field and a CRC that matches it."""
        n = write_varint(length)
        return n + payload + crc16(b"\x01" + n + payload).to_bytes(2, "little")

    assert second(3) == pack_record(1, b"abc")
    assert unpack(framed(h, first + second(3))).records == [b"ok", b"abc"]
    past_end = r"record 1 is corrupt: its length runs past the end of the file \(bytes \d+–\d+\)"
    for length in (4, 5, 1000, 2**30 + 1, 2**64 - 1):
        with pytest.raises(FormatError, match=past_end):
            unpack(framed(h, first + second(length)))
    # the same in a prefix of a file: the declared end, not the end of the data, is the limit
    head = replace(h, body_bytes=len(first) + 6 + 100).to_bytes()
    with pytest.raises(FormatError, match=past_end):
        unpack(head + first + write_varint(200) + b"abc")
    # ... while a length that fits in the declared file but not in the data is truncation
    u = unpack(head + first + write_varint(100) + b"abc")
    assert u.records == [b"ok"] and u.truncated is True
    # a length varint that never ends (11 continuation bytes) is corrupt ...
    with pytest.raises(FormatError, match="the length of record 1 is not a valid varint"):
        unpack(framed(h, first + b"\x80" * 11))
    # ... but one cut short by the end of a prefix is a truncation
    u = unpack(replace(h, body_bytes=len(first) + 20).to_bytes() + first + b"\x80" * 9)
    assert u.records == [b"ok"] and u.truncated is True


def test_length_varint_running_into_the_declared_end_is_an_error():
    h = Header(HASH, 1, 1)
    first = pack_record(0, b"ok")
    # a complete file whose last bytes all have bit 7 set: the length varint reaches the end
    with pytest.raises(FormatError, match="record 1 "):
        unpack(framed(h, first + b"\x80" * 9))
    # the same from one flipped byte of a real file: record 0 = 02 | 80 88 | b8 e1, whose length
    # 0x02 -> 0x82 makes a varint of the five remaining bytes
    data = pack(h, [b"\x80\x88"])
    assert data[-5:] == bytes.fromhex("02 8088 b8e1")
    bad = bytearray(data)
    bad[-5] ^= 0x80
    with pytest.raises(FormatError, match="record 0 "):
        unpack(bytes(bad))


def test_non_canonical_record_length_refused():
    h = Header(HASH, 1, 1)
    n = b"\x82\x00"  # 2, in two bytes, with a CRC that covers these bytes
    rec = n + b"ok" + crc16(b"\x00" + n + b"ok").to_bytes(2, "little")
    with pytest.raises(FormatError, match="the length of record 0 is not a valid varint"):
        unpack(framed(h, rec))
    first = pack_record(0, b"ok")
    with pytest.raises(FormatError, match="the length of record 1 is not a valid varint"):
        unpack(framed(h, first + b"\x80" * 9 + b"\x02" + bytes(8)))  # 2**64


def test_records_are_bound_to_their_index():
    h = full_header()
    a, b = b"AAAA", b"BBBB"
    swapped = framed(h, pack_record(1, b) + pack_record(0, a))
    # the frames are intact, but each CRC covers its index
    with pytest.raises(FormatError, match="record 0 is corrupt"):
        unpack(swapped)
    # swapping the framed bytes of two equal-length records of a real file
    data = pack(h, [a, b, b"CCCC"])
    n = len(pack_record(0, a))
    s = unpack(data).header_bytes
    swapped = data[:s] + data[s + n:s + 2 * n] + data[s:s + n] + data[s + 2 * n:]
    assert len(swapped) == len(data) and swapped != data
    with pytest.raises(FormatError, match="record 0 is corrupt"):
        unpack(swapped)
    # a record copied from position 0 to position 1 is refused too
    with pytest.raises(FormatError, match="record 1 is corrupt"):
        unpack(framed(h, pack_record(0, a) + pack_record(0, a)))


def test_an_inserted_byte_names_the_record_it_hit():
    # The data is longer than the header declares: the records are checked first, so a byte
    # inserted anywhere in a record is reported as that record's corruption, and only bytes
    # after intact records as "unexpected bytes".
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    for k in range(starts[0], len(data)):
        i = max(j for j in range(len(RECORDS)) if starts[j] <= k)
        for value in (0x00, 0x5A, 0xFF):
            bad = data[:k] + bytes([value]) + data[k:]
            with pytest.raises(FormatError, match=f"record {i} is corrupt|the length of record {i} "):
                unpack(bad)
    with pytest.raises(FormatError, match="1 unexpected bytes after the last record"):
        unpack(data + b"\x5a")


def test_a_deleted_byte_is_corruption_not_truncation():
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    last = len(RECORDS) - 1
    for k in range(starts[0], len(data)):
        i = max(j for j in range(len(RECORDS)) if starts[j] <= k)
        bad = data[:k] + data[k + 1:]
        if bad == data[:-1]:  # the same bytes as a cut before the last byte: a truncation
            assert k >= len(data) - 2
            assert unpack(bad).truncated and unpack(bad).records == RECORDS[:-1]
            continue
        # in the last record too: its payload is complete, and the CRC byte left does not match
        with pytest.raises(FormatError, match=f"record {i} is corrupt|the length of record {i} "):
            unpack(bad)
    # a cut inside the last record's CRC, or earlier, is still a truncation
    for cut in (1, 2, 3, len(write_varint(len(RECORDS[last]))) + 2 + 2):
        u = unpack(data[:-cut])
        assert u.truncated and u.records == RECORDS[:-1]


def test_salvage_returns_the_intact_records_before_the_first_corrupt_one():
    h = full_header()
    data = pack(h, RECORDS)
    starts = record_starts(h, RECORDS)
    for i in range(len(RECORDS)):
        bad = bytearray(data)
        bad[starts[i + 1] - 1] ^= 0x40  # the last CRC byte of record i
        with pytest.raises(FormatError) as strict:
            unpack(bytes(bad))
        u = unpack(bytes(bad), salvage=True)
        assert u.records == RECORDS[:i] and not u.truncated
        assert (u.damage.record, u.damage.first, u.damage.last) == (i, starts[i], starts[i + 1] - 1)
        assert str(strict.value) == u.damage.message == (f"record {i} is corrupt (checksum mismatch in bytes "
                                                         f"{starts[i]}–{starts[i + 1] - 1})")
    # a length that cannot be read loses everything to the declared end; bytes past it lose nothing
    bad = bytearray(data)
    bad[starts[2]] = 0xFF  # record 2's length (c8 01) becomes a varint running past the end
    u = unpack(bytes(bad), salvage=True)
    assert u.records == RECORDS[:2] and (u.damage.first, u.damage.last) == (starts[2], len(data) - 1)
    assert "record 2 is corrupt" in u.damage.message
    u = unpack(data + b"junk", salvage=True)
    assert u.records == RECORDS and (u.damage.record, u.damage.first, u.damage.last) == (4, len(data), len(data) + 3)
    assert u.damage.message == f"4 unexpected bytes after the last record (bytes {len(data)}–{len(data) + 3})"
    assert unpack(data, salvage=True).damage is None and unpack(data[:-3], salvage=True).damage is None


def test_a_record_cut_inside_its_crc_is_checked_as_far_as_it_goes():
    h = Header(HASH, 1, 1)
    data = pack(h, [b"ok", b"abc"])
    crc = data[-2:]
    assert unpack(data[:-1]).records == [b"ok"]  # the first CRC byte matches: a cut
    wrong = data[:-2] + bytes([crc[0] ^ 1])
    with pytest.raises(FormatError, match=r"record 1 is corrupt \(checksum mismatch"):
        unpack(wrong)
    assert unpack(data[:-2]).records == [b"ok"]  # no CRC byte left: nothing to check


# FORMAT.md §3: the values each one-byte header field may take.
DOCUMENTED = {"version": range(1, 6), "selection": range(4, 256), "flags0": range(0, 3), "flags1": range(0, 4), "schedule_id": range(0, 256),
              "t_stop": range(1, 100), "groups": range(1, 256), "log2_candidates": range(1, 21),
              "quarter": range(1, 256)}


@pytest.mark.parametrize("field", sorted(DOCUMENTED))
def test_every_value_of_every_one_byte_field_is_read_iff_documented(field):
    for value in range(256):
        data = raw_header(**{field: value})
        if value in DOCUMENTED[field]:
            header, _ = Header.from_bytes(data)
            assert header.to_bytes() == data
        else:
            with pytest.raises(FormatError):
                Header.from_bytes(data)


@pytest.mark.parametrize("field, value", [("width", 32.0), ("height", "32"), ("t_stop", 10.5), ("groups", None),
                                          ("seed", 1.0), ("body_bytes", True), ("log2_candidates", 12.0)])
def test_header_fields_must_be_integers(field, value):
    with pytest.raises(FormatError, match=f"header field {field} must be an integer"):
        Header(**{"model_hash": HASH, "width": 32, "height": 32, field: value})
    assert Header(HASH, np.int64(32), np.uint16(32)).to_bytes() == Header(HASH, 32, 32).to_bytes()
    with pytest.raises(FormatError, match="model_hash must be 4 bytes"):
        Header("abcd", 1, 1)
