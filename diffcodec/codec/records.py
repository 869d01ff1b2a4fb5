"""The range-coded stream inside one channel record: level changes and candidate indices."""

from __future__ import annotations

import constriction
import numpy as np

from bitstream import chunks as chunking
from bitstream.index_law import IndexModel

from .chain import CodecError

class RecordWriter:
    """One range-coded stream per record: level changes and candidate indices, in order."""

    def __init__(self, prev_level: int = 0):
        self._enc = constriction.stream.queue.RangeEncoder()
        self._prev_level = prev_level  # version 4: the previous record's last level; else 0

    def copy(self) -> "RecordWriter":
        """An independent writer in this one's state (to try a step two ways)."""
        other = RecordWriter(self._prev_level)
        other._enc = self._enc.clone()
        return other

    @property
    def last_level(self) -> int:
        return self._prev_level

    def level(self, lm: chunking.LevelModel, level: int) -> float:
        delta = level - self._prev_level
        self._prev_level = level
        self._enc.encode(np.array([lm.symbol(delta)], dtype=np.int32), lm.model)
        return lm.ideal_bits(delta)

    def index(self, im: IndexModel, n: int) -> float:
        self._enc.encode(np.array([n], dtype=np.int32), im.model)
        return im.ideal_bits(n)

    def finish(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes().rstrip(b"\0")

    def bytes_at_least(self) -> int:
        """A lower bound of ``len(finish())`` now and after any further symbols: the words
        written so far, less two for the sealing word and zero bytes the finish strips."""
        return 4 * max(0, self._enc.num_words() - 2)


class RecordReader:
    def __init__(self, payload: bytes, record: int, prev_level: int = 0):
        data = payload + b"\0" * (-len(payload) % 4)
        self._dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        self._prev_level = prev_level
        self.record = record

    def _decode(self, model) -> int:
        try:
            return int(self._dec.decode(model, 1)[0])
        except (AssertionError, ValueError, KeyError) as e:
            raise CodecError(f"record {self.record} does not decode ({e})") from None

    def level(self, lm: chunking.LevelModel, dims: int) -> int:
        level = self._prev_level + lm.delta(self._decode(lm.model))
        if not 0 <= level <= chunking.MAX_LEVEL or chunking.chunk_count(level) > dims:
            raise CodecError(f"record {self.record} does not decode (level {level} out of range)")
        self._prev_level = level
        return level

    def index(self, im: IndexModel) -> int:
        return self._decode(im.model)


def read_steps(payload: bytes, record: int, steps, chain, prev_level: int = 0) -> tuple[list, int]:
    """The symbols of one channel record: ``(step, t, s, level, indices)`` for each of its plan's
    ``steps``, and its last level (where version 4's next record starts; ``chain.Chain`` says which
    law codes the indices at each level)."""
    reader = RecordReader(payload, record, prev_level if chain.levels_carry_over else 0)
    out, level = [], prev_level
    for step, t, s in steps:
        level = reader.level(chain.level_model, chain.dims)
        index_model = chain.index_model_for(level)
        out.append((step, t, s, level, [reader.index(index_model) for _ in range(chunking.chunk_count(level))]))
    return out, level
