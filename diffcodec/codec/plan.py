"""Which timesteps a ``.ddc`` file codes, and where its records end.

A file codes the chain T = b_0 > b_1 > … > b_n = t_stop with one channel-simulation step per
pair (b_{i−1} → b_i), then x_0 losslessly given x_{t_stop}.  The boundaries are derived from
two header fields so they cost no bits: ``groups`` + 1 points spaced evenly in log t from
t_stop to T, rounded to integers, duplicates removed.  Log spacing puts most steps at small t,
where the rate is; it keeps x̂_0's error changing by a similar factor within every step, which
is what makes a coarse step cost more than the fine steps it replaces.

Records (the unit a decoder can stop at) end after the steps named by the record layout:
COARSE ends one at the first boundary at or below each of t = 500, 200, 100, 50, 20 (the
paper's Table 4 rows 500, 800, 900 reverse steps done, and two more) and one at t_stop; EVERY_STEP ends one after every step.

A file that ends early (format version 6's ``end_t``, where a --psnr or --bpp target is met) keeps the
plan's steps down to the last boundary above ``end_t``, then one step to ``end_t`` itself, which ends
its last record; it has no lossless record.  Its earlier steps are the plan's, unchanged, so an
encoder picks ``end_t`` after coding them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitstream.container import RecordLayout

COARSE_RECORD_TARGETS = (500, 200, 100, 50, 20)


def step_boundaries(num_timesteps: int, t_stop: int, groups: int) -> list[int]:
    """Descending timesteps b_0 = T, …, b_n = t_stop."""
    T = int(num_timesteps)
    if not 1 <= t_stop < min(100, T):
        raise ValueError(f"t_stop must be in 1..{min(99, T - 1)}")
    if groups < 1:
        raise ValueError("groups must be >= 1")
    points = np.round(t_stop * (T / t_stop) ** (np.arange(groups + 1) / groups)).astype(np.int64)
    return sorted({int(t) for t in points} | {T, int(t_stop)}, reverse=True)


@dataclass(frozen=True)
class StepPlan:
    boundaries: tuple[int, ...]  # b_0 = T > … > b_n = t_stop
    record_ends: tuple[int, ...]  # for each channel record, the number of steps coded when it ends
    lossless: bool = True  # a lossless record may follow the channel records (not in a file that ends early)

    @property
    def num_steps(self) -> int:
        return len(self.boundaries) - 1

    @property
    def t_stop(self) -> int:
        return self.boundaries[-1]

    def steps(self) -> list[tuple[int, int, int]]:
        """(step number i ≥ 1, t = b_{i−1}, s = b_i) for every coded step."""
        b = self.boundaries
        return [(i, b[i - 1], b[i]) for i in range(1, len(b))]

    def record_steps(self) -> list[list[tuple[int, int, int]]]:
        """The coded steps of each channel record."""
        steps, out, start = self.steps(), [], 0
        for end in self.record_ends:
            out.append(steps[start:end])
            start = end
        return out

    def t_after_record(self, r: int) -> int:
        """The timestep the chain has reached after channel record ``r`` (0-based)."""
        return self.boundaries[self.record_ends[r]]


def make_plan(num_timesteps: int, t_stop: int, groups: int, layout: RecordLayout, end_t: int = 0) -> StepPlan:
    """The plan of (T, t_stop, groups, layout), ended at ``end_t`` when it is nonzero (t_stop ≤ end_t < T)."""
    b = step_boundaries(num_timesteps, t_stop, groups)
    n = len(b) - 1
    if RecordLayout(layout) is RecordLayout.EVERY_STEP:
        ends = list(range(1, n + 1))
    else:
        ends = set()
        for target in COARSE_RECORD_TARGETS:
            first = next((i for i in range(1, n + 1) if b[i] <= target), None)
            if first is not None:
                ends.add(first)
        ends.add(n)
        ends = sorted(ends)
    if not end_t:
        return StepPlan(tuple(b), tuple(ends))
    if not t_stop <= end_t < num_timesteps:
        raise ValueError(f"end_t must be in {t_stop}..{num_timesteps - 1}")
    last = max(i for i in range(n + 1) if b[i] > end_t)  # the last boundary above end_t
    return StepPlan(tuple(b[:last + 1]) + (int(end_t),), tuple(e for e in ends if e <= last) + (last + 1,), False)
