"""The ``.ddc`` container: a small header and a sequence of length-prefixed, checksummed
records (byte-by-byte description in ``bitstream/FORMAT.md``).

The container knows which fields a file carries but not what a decoder does with them: the
codec (``diffcodec.codec``) gives records their meaning.  A file may end after any complete
record; :func:`unpack` returns the complete records and says whether bytes were left over
(a truncated record), so a decoder can show the last complete prefix.
"""

from __future__ import annotations

import binascii
import enum
import numbers
from dataclasses import dataclass, replace

MAGIC = b"DDC"
VERSION = 6  # the newest written by this build
UNTILED_VERSION = 4  # what a file whose network sees the whole image is written as (older decoders read it)
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)  # FORMAT.md §10 says what each changed
TILED_VERSION = 5  # the first version whose ``tile`` may be nonzero (a tiled network evaluation)
ENDING_VERSION = 6  # the first version with ``end_t``: a lossy file whose last step ends between two plan steps
MAX_END_T = 1 << 16

# The selection byte of version 4 (FORMAT.md §3, §6): ``v`` in 4 … 254 is tempered PFR with λ = v/4
# (4: exact PFR, the only rule of versions 1–3), 255 greedy selection; 0 … 3 are reserved.
SELECTION_EXACT = 4
SELECTION_GREEDY = 255

# Limits checked before anything is allocated for an image.
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 26


class FormatError(ValueError):
    """The bytes are not a valid ``.ddc`` file (or not one this version can read)."""


def check_version(version: int) -> None:
    """FormatError unless this build reads format ``version``."""
    if version not in READABLE_VERSIONS:
        raise FormatError(f".ddc format version {version} is not supported "
                          f"(this build reads {', '.join(map(str, READABLE_VERSIONS))})")


class ImageMode(enum.IntEnum):
    """Colour layout of the source image (byte 0 of the flags)."""

    RGB = 0
    L = 1  # grayscale, coded as three equal channels
    RGBA = 2  # RGB coded progressively, alpha losslessly in record 0


class VarianceChoice(enum.IntEnum):
    """Reverse-process variance the channel's prior uses (bits 0 and 2 of byte 1 of the flags)."""

    POSTERIOR = 0  # σ² = β̃ of the coded (respaced) step
    BETA = 1  # σ² = β of the coded (respaced) step
    OPTIMAL = 2  # σ² = β̃ + c²·e_t from the model's error table, named by ``variance_table`` (version 3)


class RecordLayout(enum.IntEnum):
    """Which coded steps end a record (bit 1 of byte 1 of the flags)."""

    COARSE = 0  # records end at the first step at or below t = 500, 200, 100, 50, 20, and at t_stop
    EVERY_STEP = 1  # a record after every coded step


def crc16(data: bytes, seed: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF)."""
    return binascii.crc_hqx(data, seed)


def write_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    value = int(value)
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(value, next position); canonical (shortest) encodings of values below 2**64 only."""
    value = 0
    for i in range(10):
        if pos + i >= len(data):
            raise EOFError(f"file ends inside {what}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if (i and byte == 0) or value >= 1 << 64:
                raise FormatError(f"{what} is not a valid varint")
            return value, pos + i + 1
    raise FormatError(f"{what} is not a valid varint")


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs before the first record."""

    model_hash: bytes  # first 4 bytes of the model weights' SHA-256
    width: int
    height: int
    mode: ImageMode = ImageMode.RGB
    variance: VarianceChoice = VarianceChoice.POSTERIOR
    layout: RecordLayout = RecordLayout.COARSE
    schedule_id: int = 0  # the model's schedule, as named in FORMAT.md (0 = linear, T = 1000)
    t_stop: int = 10  # last coded step; x_0 is coded losslessly given x_{t_stop}
    groups: int = 40  # coded steps from T down to t_stop, log-spaced (see FORMAT.md, step plan)
    tile: int = 0  # version 5: the network's tile side in pixels, 0 = the whole (padded) image at once
    log2_candidates: int = 12  # candidates per channel-simulation call: 2**log2_candidates
    chunk_quarter_bits: int = 20  # KL budget per call, in units of 1/4 bit
    seed: int = 0  # key of the shared randomness
    body_bytes: int = 0  # bytes of all records after the header (set by ``pack``)
    version: int = UNTILED_VERSION  # format version (byte 3)
    variance_table: bytes = b""  # with OPTIMAL: first 4 bytes of the SHA-256 of the model's error table
    selection: int = SELECTION_EXACT  # version 4: the selection rule (SELECTION_EXACT, tempered, SELECTION_GREEDY)
    halo: int = 0  # version 5, with a nonzero tile: pixels of context around each tile
    end_t: int = 0  # version 6: the chain's last coded step ends at this t (0: the plan's own records, FORMAT.md §5)

    def __post_init__(self):
        object.__setattr__(self, "mode", ImageMode(self.mode))
        object.__setattr__(self, "variance", VarianceChoice(self.variance))
        object.__setattr__(self, "layout", RecordLayout(self.layout))
        if len(self.model_hash) != 4:
            raise ValueError("model_hash must be 4 bytes")
        if (len(self.variance_table) == 4) != (self.variance is VarianceChoice.OPTIMAL) or len(self.variance_table) not in (0, 4):
            raise ValueError("variance_table is 4 bytes exactly when the variance is OPTIMAL")
        self.validate()

    def validate(self) -> None:
        check_version(self.version)
        if not isinstance(self.model_hash, bytes):
            raise FormatError("model_hash must be 4 bytes")
        for name in ("width", "height", "schedule_id", "t_stop", "groups", "tile", "log2_candidates",
                     "chunk_quarter_bits", "seed", "body_bytes", "selection", "halo", "end_t"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise FormatError(f"header field {name} must be an integer, not {value!r}")
        if self.variance is VarianceChoice.OPTIMAL and self.version < 3:
            raise FormatError(f"optimal reverse variances need format version 3, not {self.version}")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise FormatError(f"image size {self.width}x{self.height} outside 1..{MAX_SIDE} per side")
        if self.width * self.height > MAX_PIXELS:
            raise FormatError(f"image of {self.width}x{self.height} pixels exceeds the limit of {MAX_PIXELS}")
        if not 1 <= self.t_stop <= 99:
            raise FormatError(f"t_stop {self.t_stop} outside 1..99")
        if not 1 <= self.groups <= 255:
            raise FormatError(f"groups {self.groups} outside 1..255")
        if not 1 <= self.log2_candidates <= 20:
            raise FormatError(f"log2_candidates {self.log2_candidates} outside 1..20")
        if not 1 <= self.chunk_quarter_bits <= 255:
            raise FormatError(f"chunk budget {self.chunk_quarter_bits}/4 bits outside 1/4..255/4")
        if not 0 <= self.seed < 1 << 64:
            raise FormatError("seed must fit in 64 bits")
        if self.tile < 0 or self.tile > MAX_SIDE:
            raise FormatError(f"tile {self.tile} outside 0..{MAX_SIDE}")
        if not 0 <= self.halo <= MAX_SIDE or (self.halo and not (self.tile and self.version >= TILED_VERSION)):
            raise FormatError(f"halo {self.halo} outside 0..{MAX_SIDE}, or without a tile size and version 5")
        if self.end_t and self.version < ENDING_VERSION:
            raise FormatError(f"an end_t needs format version {ENDING_VERSION}, not {self.version}")
        if self.end_t and not self.t_stop <= self.end_t < MAX_END_T:
            raise FormatError(f"end_t {self.end_t} outside t_stop ({self.t_stop})..{MAX_END_T - 1}")
        if not 0 <= self.schedule_id <= 255:
            raise FormatError(f"schedule id {self.schedule_id} outside 0..255")
        if self.version < 4 and self.selection != SELECTION_EXACT:
            raise FormatError(f"selection rules other than exact PFR need format version 4, not {self.version}")
        if not SELECTION_EXACT <= self.selection <= SELECTION_GREEDY:
            raise FormatError(f"selection byte {self.selection} outside {SELECTION_EXACT}..{SELECTION_GREEDY}")
        if not 0 <= self.body_bytes < 1 << 62:
            raise FormatError(f"body length {self.body_bytes} out of range")

    @property
    def chunk_bits(self) -> float:
        return self.chunk_quarter_bits / 4.0

    @property
    def greedy(self) -> bool:
        """Greedy selection: the index is the candidate of largest weight, coded in k bits."""
        return self.selection == SELECTION_GREEDY

    @property
    def temper(self) -> float:
        """λ of the selection argmin ln T_n − λ ln w_n (1: exact PFR; inf: greedy)."""
        return float("inf") if self.greedy else self.selection / 4.0

    def to_bytes(self) -> bytes:
        flags0 = int(self.mode)
        optimal = self.variance is VarianceChoice.OPTIMAL
        flags1 = (0 if optimal else int(self.variance)) | int(self.layout) << 1 | int(optimal) << 2
        body = b"".join([
            MAGIC, bytes([self.version]), self.model_hash,
            write_varint(self.width), write_varint(self.height),
            bytes([flags0, flags1, self.schedule_id, self.t_stop, self.groups, self.log2_candidates,
                   self.chunk_quarter_bits]),
            bytes([self.selection]) if self.version >= 4 else b"",
            write_varint(self.tile), write_varint(self.halo) if self.tile and self.version >= TILED_VERSION else b"",
            write_varint(self.end_t) if self.version >= ENDING_VERSION else b"",
            write_varint(self.seed), self.variance_table, write_varint(self.body_bytes),
        ])
        return body + crc16(body).to_bytes(2, "little")

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple["Header", int]:
        """(header, position of the first record)."""
        if len(data) < 4 or data[:3] != MAGIC:
            raise FormatError("not a .ddc file (bad magic)")
        check_version(data[3])  # before parsing: other versions may lay out the rest differently
        try:
            pos = 4
            model_hash = data[pos:pos + 4]
            pos += 4
            width, pos = read_varint(data, pos, "the width")
            height, pos = read_varint(data, pos, "the height")
            if pos + 7 > len(data):
                raise EOFError("file ends inside the header")
            flags0, flags1, schedule_id, t_stop, groups, log2_candidates, quarter = data[pos:pos + 7]
            pos += 7
            selection = SELECTION_EXACT
            if data[3] >= 4:
                if pos >= len(data):
                    raise EOFError("file ends inside the header")
                selection = data[pos]
                pos += 1
            tile, pos = read_varint(data, pos, "the tile size")
            halo = 0
            if tile and data[3] >= TILED_VERSION:
                halo, pos = read_varint(data, pos, "the halo")
            end_t = 0
            if data[3] >= ENDING_VERSION:
                end_t, pos = read_varint(data, pos, "the end t")
            seed, pos = read_varint(data, pos, "the seed")
            optimal = data[3] >= 3 and bool(flags1 & 4)
            variance_table = bytes(data[pos:pos + 4]) if optimal else b""
            if optimal and len(variance_table) < 4:
                raise EOFError("file ends inside the header")
            pos += len(variance_table)
            body_bytes, pos = read_varint(data, pos, "the body length")
            if pos + 2 > len(data):
                raise EOFError("file ends inside the header")
        except EOFError as e:
            raise FormatError(f"truncated header: {e}") from None
        if int.from_bytes(data[pos:pos + 2], "little") != crc16(data[:pos]):
            raise FormatError("header checksum mismatch (the file is corrupt)")
        known = 0b111 if data[3] >= 3 else 0b11  # bit 2 (optimal variances) from version 3
        if flags0 not in ImageMode._value2member_map_ or flags1 & ~known or (flags1 & 5) == 5:
            raise FormatError("unknown flags in header")
        if len(model_hash) != 4:
            raise FormatError("truncated header")
        variance = VarianceChoice.OPTIMAL if flags1 & 4 else VarianceChoice(flags1 & 1)
        header = cls(model_hash, width, height, ImageMode(flags0), variance,
                     RecordLayout(flags1 >> 1 & 1), schedule_id, t_stop, groups, tile, log2_candidates, quarter, seed,
                     body_bytes, data[3], variance_table, selection, halo, end_t)
        return header, pos + 2


def pack_record(index: int, payload: bytes) -> bytes:
    """Length (varint), payload, CRC-16 over (record index as varint + length varint + payload)."""
    length = write_varint(len(payload))
    crc = crc16(write_varint(index) + length + payload)
    return length + payload + crc.to_bytes(2, "little")


def pack(header: Header, records: list[bytes]) -> bytes:
    """Header (with ``body_bytes`` set to the records' total) followed by the framed records."""
    body = b"".join(pack_record(i, r) for i, r in enumerate(records))
    return replace(header, body_bytes=len(body)).to_bytes() + body


@dataclass(frozen=True)
class Damage:
    """The first record that is not intact (or, after intact records, bytes past the declared
    end), where it lies (bytes ``first`` to ``last``, inclusive; to the declared end where its
    length cannot be read) and what is wrong with it."""

    record: int  # its index; every record before it is intact
    first: int
    last: int
    message: str  # one line naming the record and its byte range: what a strict ``unpack`` raises


@dataclass
class Unpacked:
    header: Header
    records: list[bytes]
    truncated: bool  # the file is shorter than its header declares (a prefix of a file)
    header_bytes: int
    record_bytes: list[int]  # framed size of each complete record (length + payload + CRC)
    damage: Damage | None = None  # with ``salvage``: the corrupt record after ``records``


def unpack(data: bytes, *, salvage: bool = False) -> Unpacked:
    """Parse a file or a prefix of one: complete records are returned, a record cut by the end
    of the data is dropped and reported as truncation, a corrupt one raises ``FormatError``
    (with ``salvage``: ends the records, described in ``damage``).

    Records are read within the end the header declares, so a changed byte names the record it
    hit, also when the data is longer than declared (an inserted byte) or shorter (a deleted
    one, where that can be told from a cut: FORMAT.md §4.1)."""
    data = bytes(data)
    header, pos = Header.from_bytes(data)
    header_bytes = pos
    end = header_bytes + header.body_bytes
    truncated = len(data) < end
    available = min(len(data), end)
    body = memoryview(data)[:available]  # no copy: varints are read within the declared end
    records, sizes = [], []
    damage = None

    def unreadable(index: int, start: int, problem: str) -> Damage:  # its end is unknown: to the declared end
        return Damage(index, start, available - 1, f"{problem} (bytes {start}–{available - 1})")

    while pos < available:
        index = len(records)
        start = pos
        try:
            length, pos = read_varint(body, pos, f"the length of record {index}")
        except EOFError:
            if truncated:
                break
            damage = unreadable(index, start, f"record {index} is corrupt: its length runs past the end of the file")
            break
        except FormatError as e:
            damage = unreadable(index, start, str(e))
            break
        if pos + length + 2 > end:
            damage = unreadable(index, start, f"record {index} is corrupt: its length runs past the end of the file")
            break
        payload = data[pos:pos + length]
        crc = crc16(write_varint(index) + data[start:pos] + payload).to_bytes(2, "little")
        stored = data[pos + length:min(pos + length + 2, available)]
        if stored != crc[:len(stored)] and len(payload) == length:
            last = pos + length + 1
            damage = Damage(index, start, last, f"record {index} is corrupt (checksum mismatch in bytes {start}–{last})")
            break
        if len(stored) < 2:  # cut by the end of the data (what is left of its CRC matches)
            break
        records.append(payload)
        pos += length + 2
        sizes.append(pos - start)
    if damage is None and len(data) > end:
        damage = Damage(len(records), end, len(data) - 1,
                        f"{len(data) - end} unexpected bytes after the last record (bytes {end}–{len(data) - 1})")
    if damage is not None and not salvage:
        raise FormatError(damage.message)
    return Unpacked(header, records, truncated, header_bytes, sizes, damage)
