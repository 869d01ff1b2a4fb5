"""Where a --psnr or --bpp target lands: the end t of the last coded step, chosen inside a plan step.

A file ends after a record, and records end at the plan's boundaries, so a target met inside a
step once ended the file at the step's far side (``--psnr 30`` wrote 32.35 dB at 3.29 bpp on a
64×64 crop, whose COARSE records lie far apart).  Format version 6 names the t its last step ends
at (``end_t``, FORMAT.md §5): the encoder codes the plan's steps as always, and when a step
t → s crosses the target, it codes that step again towards ends t' strictly between s and t, by
bisection (one channel simulation and one network pass each), and keeps the nearest end on the
target's safe side: the largest t' whose x̂_0 reaches the PSNR, or the smallest t' whose file fits
the budget.  The steps before it are untouched, so nothing else is re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Attempt:
    """The last step coded towards ``end_t``: what the file and its stats need if it ends there."""

    end_t: int
    psnr: float  # of x̂_0 at end_t
    file_bytes: int  # the whole file ending there, header included
    state: Any = None  # the encoder's own record of the attempt (record bytes, chain state, step stats)


def enough(attempt: Attempt, psnr: float | None, budget_bytes: float | None) -> bool:
    """Whether ending at this attempt has coded enough: the PSNR target reached, or the budget spent."""
    if psnr is not None:
        return attempt.psnr >= psnr
    return attempt.file_bytes > budget_bytes


def land(t: int, at_s: Attempt, attempt: Callable[[int], Attempt], psnr: float | None,
         budget_bytes: float | None, at_t: Attempt | None = None) -> Attempt:
    """The end of a step t → s that crosses the target (``enough(at_s)``, not at t).

    ``attempt(t')`` codes the step towards t'; ``at_t`` (the file ending at t, before the step) is
    the answer for a budget that even the shortest attempt exceeds.  Bisection over the integers keeps
    ``lo`` enough and ``hi`` not: a PSNR target takes ``lo`` (the fewest bits that reach it), a budget
    takes ``hi`` (the most bits within it)."""
    lo, hi = at_s, at_t
    lo_t, hi_t = at_s.end_t, t
    while hi_t - lo_t > 1:
        mid = attempt((lo_t + hi_t) // 2)
        if enough(mid, psnr, budget_bytes):
            lo, lo_t = mid, mid.end_t
        else:
            hi, hi_t = mid, mid.end_t
    if psnr is not None or hi is None:
        return lo
    return hi
