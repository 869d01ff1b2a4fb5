"""What every candidate scorer of channel simulation shares: the two protocols the encoder picks a
scorer by, the pass size that defines the arrival times' sums, and the checks of their inputs.

* Versions 1–3 (``bitstream.channel.simulate``): a :class:`Scorer` finds the PFR index of one call
  (or of several) from the coefficients (a, b, c) of its log-weights; the compiled CPU one is
  ``bitstream.kernels.CompiledScorer``, the torch one ``bitstream.torch_scoring.TorchScorer``.
* Version 4 (``bitstream.selection.select_step``): a :class:`StepLogWeights` function returns the
  log-weights of every candidate of a step's chunks; ``bitstream.kernels32.log_weights_step``
  (compiled) or ``bitstream.torch_noise32.log_weights_step`` (torch).

numpy only, so that a torch scorer never loads numba and the decoder, which never scores, loads
neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .noise32 import MAX_STEP

# candidates scored per pass (their log-weights and arrival times are held in memory at once);
# the arrival times of a call are summed pass by pass, so every version-3 scorer uses this size
CANDIDATES_PER_BLOCK = 1 << 20
MAX_LOG2_CANDIDATES = 30  # versions 1–3: 2**0 … 2**30 candidates a call
MAX_LOG2_CANDIDATES_STEP = 20  # version 4: 2**1 … 2**20 candidates a call


class Scorer(Protocol):
    """Finds the PFR index of a version-1–3 call: argmin over n < 2**k of ln T_n − ln w_n."""

    def best_index(self, seed: int, stream, a: np.ndarray, b: np.ndarray, c: float, log2_candidates: int) -> int:
        ...

    def best_indices(self, seed: int, streams: Sequence, coefficients: Sequence, log2_candidates: int) -> list[int]:
        """``best_index`` of each ``(a, b, c)`` in ``coefficients`` with the stream at the same place."""
        ...


class StepLogWeights(Protocol):
    """(chunks, 2**k) float64 log-weights of version 4 (``bitstream.kernels32.log_weights_reference``
    specifies them)."""

    def __call__(self, seed: int, step: int, a: float, b: np.ndarray, offsets, chunk_ids,
                 log2_candidates: int) -> np.ndarray:
        ...


def check_log2_candidates(log2_candidates) -> int:
    """k of a version-1–3 call, in [0, MAX_LOG2_CANDIDATES]."""
    k = int(log2_candidates)
    if not 0 <= k <= MAX_LOG2_CANDIDATES:
        raise ValueError(f"log2_candidates must be in [0, {MAX_LOG2_CANDIDATES}]")
    return k


def check_step_inputs(seed, step, a, b, offsets, chunk_ids, log2_candidates):
    """Validated (seed, step, a32, b32, offsets, chunk_ids, k) of a :class:`StepLogWeights` call."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError("seed must fit in 64 bits")
    if isinstance(log2_candidates, (bool, np.bool_)) or int(log2_candidates) != log2_candidates:
        raise ValueError("log2_candidates must be an integer")
    k = int(log2_candidates)
    if not 1 <= k <= MAX_LOG2_CANDIDATES_STEP:
        raise ValueError(f"log2_candidates must be in 1..{MAX_LOG2_CANDIDATES_STEP}, not {k}")
    if int(step) != step or not 0 <= int(step) <= MAX_STEP:
        raise ValueError(f"step must be an integer in [0, 2**30), not {step}")
    step = int(step)
    a_arr = np.asarray(a)
    if a_arr.ndim != 0:
        raise ValueError("a must be a scalar (one for the whole step)")
    a32 = np.float32(a_arr)
    if not np.isfinite(a32):
        raise ValueError("a must be finite in float32")
    b_arr = np.asarray(b)
    if b_arr.ndim != 1:
        raise ValueError("b must be a 1-D array of all chunks' coefficients")
    if b_arr.size and not np.issubdtype(b_arr.dtype, np.floating):
        raise ValueError(f"b must be a float array, not {b_arr.dtype}")
    b32 = np.ascontiguousarray(b_arr, dtype=np.float32)
    if not np.all(np.isfinite(b32)):
        raise ValueError("b must be finite in float32")
    offs = np.asarray(offsets)
    if offs.ndim != 1 or offs.size < 1 or (offs.size and not np.issubdtype(offs.dtype, np.integer)):
        raise ValueError("offsets must be a 1-D integer array of length chunks + 1")
    offs = np.ascontiguousarray(offs, dtype=np.int64)
    if offs[0] < 0 or offs[-1] > b32.size:
        raise ValueError(f"offsets must lie in [0, len(b)] = [0, {b32.size}]")
    if np.any(np.diff(offs) <= 0):
        raise ValueError("offsets must be strictly increasing (every chunk has d >= 1)")
    ids = np.asarray(chunk_ids)
    if ids.ndim != 1 or ids.size != offs.size - 1:
        raise ValueError(f"chunk_ids must be 1-D with one entry per chunk ({offs.size - 1})")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError("chunk_ids must be integers")
    if ids.size and (ids.min() < 0 or ids.max() > 0xFFFFFFFF):
        raise ValueError("chunk_ids must be in [0, 2**32)")
    ids = np.ascontiguousarray(ids, dtype=np.uint32)
    return seed, step, a32, b32, offs, ids, k
