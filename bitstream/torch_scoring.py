"""Channel-simulation scoring on a torch device: the index ``bitstream.channel.simulate`` selects.

``TorchScorer`` is a strategy for ``simulate`` like ``bitstream.kernels.CompiledScorer``:
for candidates n < 2**k it computes ln w_n = Σ_i a_i u_{n,i}² + b_i u_{n,i} + c from the shared
normals (``bitstream.torch_noise``, the same Philox words as the CPU path) and the arrival
times T_n from the arrival lane, and returns argmin_n ln T_n − ln w_n.  ``best_indices``
scores several calls at once, e.g. all chunks of one coded step (their dimensions may
differ; shorter ones are padded with zero coefficients), so that a GPU gets one batch of
work per step instead of one small launch per chunk.

What equals the CPU path: the words and uniforms bit for bit; the normals, log-weights and
arrival times up to rounding (the device's log/cos/sin, the order of the sum over
dimensions, and on CUDA a parallel cumulative sum).  Those differences are ~1e-16 relative,
so the selected index agrees unless two candidates' scores lie that close; it need not agree
for decoding, since the decoder reads the index and never scores candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import scoring
from .noise import stream_key
from .torch_noise import arrival_exponentials, as_int64, box_muller, normal_lane_words

# bytes of work arrays per Philox word of a pass (words, round temporaries, normals, terms) and
# per candidate (arrival lane, log-weight, score); CPU peaks measured within ~20 % of the budget
_BYTES_PER_WORD = 192
_BYTES_PER_CANDIDATE = 512


@dataclass(frozen=True)
class TorchScorer:
    """A ``bitstream.scoring.Scorer`` on ``device``, in passes of at most ``work_bytes`` of work
    arrays (None: 64 MiB on a CPU, 2 GiB on a GPU)."""

    device: str = "cpu"
    work_bytes: int | None = None

    def budget(self) -> int:
        if self.work_bytes is not None:
            return int(self.work_bytes)
        return (2 << 30) if torch.device(self.device).type == "cuda" else (64 << 20)

    def best_index(self, seed: int, stream, a: np.ndarray, b: np.ndarray, c: float, log2_candidates: int) -> int:
        return self.best_indices(seed, [stream], [(a, b, c)], log2_candidates)[0]

    def best_indices(self, seed: int, streams: Sequence, coefficients: Sequence, log2_candidates: int) -> list[int]:
        """The index of each call: ``streams[j]`` (an int or ``(step, chunk)``) with
        ``coefficients[j] = (a, b, c)``, all with 2**log2_candidates candidates."""
        k = scoring.check_log2_candidates(log2_candidates)
        if not 0 <= int(seed) < 2**64:
            raise ValueError("seed must fit in 64 bits")
        if len(streams) != len(coefficients):
            raise ValueError("need one stream per set of coefficients")
        calls = [_coefficients(a, b, c) for a, b, c in coefficients]
        if not calls:
            return []
        keys = [as_int64(stream_key(s)) for s in streams]
        # as many calls as fit with all their candidates in one pass (at least one), then
        # as many candidates as fit for those calls
        per_candidate = 4 * max(-(-a.size // 4) for a, _, _ in calls) * _BYTES_PER_WORD + _BYTES_PER_CANDIDATE
        group = max(1, min(len(calls), self.budget() // (per_candidate << k)))
        per_pass = max(1, min(1 << k, self.budget() // (group * per_candidate)))
        out: list[int] = []
        for first in range(0, len(calls), group):
            out += self._best_of_group(seed, keys[first : first + group], calls[first : first + group], k, per_pass)
        return out

    def _best_of_group(self, seed: int, keys: list[int], calls: list, k: int, per_pass: int) -> list[int]:
        dev = torch.device(self.device)
        width = max(-(-a.size // 4) for a, _, _ in calls)
        d_max = max(a.size for a, _, _ in calls)
        streams = torch.tensor(keys, dtype=torch.int64, device=dev)
        blocks = torch.tensor([-(-a.size // 4) for a, _, _ in calls], dtype=torch.int64, device=dev)
        a_pad = torch.zeros(len(calls), d_max, dtype=torch.float64)
        b_pad = torch.zeros(len(calls), d_max, dtype=torch.float64)
        for j, (a, b, _) in enumerate(calls):
            a_pad[j, : a.size] = torch.from_numpy(a)
            b_pad[j, : b.size] = torch.from_numpy(b)
        a_pad, b_pad = a_pad[:, None, :].to(dev), b_pad[:, None, :].to(dev)
        c = torch.tensor([c for _, _, c in calls], dtype=torch.float64, device=dev)[:, None]

        n_total = 1 << k
        best_score = torch.full((len(calls),), torch.inf, dtype=torch.float64, device=dev)
        best_index = torch.zeros(len(calls), dtype=torch.int64, device=dev)
        t_offset = torch.zeros(len(calls), 1, dtype=torch.float64, device=dev)
        segment = scoring.CANDIDATES_PER_BLOCK  # simulate's passes define the arrival times' sums
        for seg_start in range(0, n_total, segment):
            seg_end = min(seg_start + segment, n_total)
            running = torch.zeros(len(calls), 1, dtype=torch.float64, device=dev)  # cumsum within the segment
            for start in range(seg_start, seg_end, per_pass):
                count = min(per_pass, seg_end - start)
                z = box_muller(normal_lane_words(seed, streams, blocks, start, count, width))[..., :d_max]
                logw = ((a_pad * z) * z + b_pad * z).sum(dim=-1) + c
                del z
                e = arrival_exponentials(seed, streams, start, count)
                sums = torch.cumsum(torch.cat((running, e), dim=1), dim=1)[:, 1:]
                running = sums[:, -1:]
                score = torch.log(t_offset + sums) - logw
                i = torch.argmin(score, dim=1)  # the first of equal minima
                s = score.gather(1, i[:, None])[:, 0]
                better = s < best_score
                best_score = torch.where(better, s, best_score)
                best_index = torch.where(better, i + start, best_index)
            t_offset = t_offset + running
        return best_index.tolist()


def _coefficients(a, b, c):
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError("a and b must be non-empty 1-D arrays of the same length")
    return a, b, float(c)

