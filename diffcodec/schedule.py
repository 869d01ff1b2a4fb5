"""Noise schedules of the forward process, in float64.

A :class:`Schedule` is a Markov chain x_0 → x_1 → … → x_K fixed by its cumulative
products ᾱ_k and by the original timestep t that each of its steps stands for
(``timesteps``, used to condition the network). The full DDPM chain has K = T = 1000
with ``timesteps = 1..T``; :meth:`Schedule.respace` keeps a decreasing subsequence of
timesteps and yields the chain whose marginals q(x_t|x_0) are exactly those of the
original at the kept steps, with its own per-step β'_k = 1 − ᾱ_k/ᾱ_{k−1} and posteriors.

Schedules are named (:class:`ScheduleKind`); a named schedule never changes once released,
because compressed files refer to it by name.

Indexing: step k ∈ {1..K} is stored at array index k−1; ᾱ_0 = 1 is implicit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy as np


class ScheduleKind(str, enum.Enum):
    """Released β schedules. Never change an existing member: files depend on it."""

    LINEAR = "linear"  # Ho et al. 2020: β linear from beta_start to beta_end over T steps


@dataclass(frozen=True)
class ScheduleConfig:
    """Data that fixes a schedule; stored in checkpoints and compressed files."""

    kind: ScheduleKind = ScheduleKind.LINEAR
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ScheduleKind(self.kind))
        if self.num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {self.num_timesteps}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind.value,
            "num_timesteps": self.num_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleConfig":
        return cls(ScheduleKind(d["kind"]), int(d["num_timesteps"]), float(d["beta_start"]), float(d["beta_end"]))

    def build(self) -> "Schedule":
        if self.kind is ScheduleKind.LINEAR:
            betas = np.linspace(self.beta_start, self.beta_end, self.num_timesteps, dtype=np.float64)
        else:  # pragma: no cover - enum is exhaustive
            raise ValueError(f"unknown schedule kind {self.kind}")
        return Schedule(np.cumprod(1.0 - betas), np.arange(1, self.num_timesteps + 1))


class Schedule:
    """A forward chain given by ᾱ_1 > … > ᾱ_K (float64) and the original timestep of each step."""

    def __init__(self, alphas_cumprod: np.ndarray, timesteps: np.ndarray):
        abar = np.asarray(alphas_cumprod, dtype=np.float64)
        ts = np.asarray(timesteps, dtype=np.int64)
        if abar.ndim != 1 or abar.shape != ts.shape or abar.size == 0:
            raise ValueError("alphas_cumprod and timesteps must be equal-length non-empty 1-D arrays")
        if not (np.all(abar > 0) and np.all(abar < 1) and np.all(np.diff(abar) < 0)):
            raise ValueError("alphas_cumprod must decrease strictly inside (0, 1)")
        if not (ts[0] >= 1 and np.all(np.diff(ts) > 0)):
            raise ValueError("timesteps must increase strictly from >= 1")
        self.alphas_cumprod = abar
        self.timesteps = ts

    def __len__(self) -> int:
        return int(self.alphas_cumprod.size)

    @property
    def num_steps(self) -> int:
        return len(self)

    # ---- per-step coefficients (array index k-1 for step k) -------------------------------
    @cached_property
    def alphas_cumprod_prev(self) -> np.ndarray:
        """ᾱ_{k−1}, with ᾱ_0 = 1."""
        return np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    @cached_property
    def alphas(self) -> np.ndarray:
        """α_k = ᾱ_k / ᾱ_{k−1}."""
        return self.alphas_cumprod / self.alphas_cumprod_prev

    @cached_property
    def betas(self) -> np.ndarray:
        """β_k = 1 − α_k."""
        return 1.0 - self.alphas

    @cached_property
    def posterior_variance(self) -> np.ndarray:
        """β̃_k = (1 − ᾱ_{k−1}) / (1 − ᾱ_k) · β_k (zero at k = 1)."""
        return (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod) * self.betas

    @cached_property
    def posterior_mean_coef_x0(self) -> np.ndarray:
        """Coefficient of x_0 in μ̃_k: √ᾱ_{k−1} β_k / (1 − ᾱ_k)."""
        return np.sqrt(self.alphas_cumprod_prev) * self.betas / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef_xt(self) -> np.ndarray:
        """Coefficient of x_k in μ̃_k: √α_k (1 − ᾱ_{k−1}) / (1 − ᾱ_k)."""
        return np.sqrt(self.alphas) * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    # ---- respacing --------------------------------------------------------------------------
    def respace(self, timesteps) -> "Schedule":
        """The chain that keeps only the given original timesteps (any order, no repeats).

        Its marginals at the kept steps equal this chain's; its step k goes from the k-th
        smallest kept timestep to the (k−1)-th, with the exact β', β̃' that implies.
        """
        ts = np.unique(np.asarray(timesteps, dtype=np.int64))
        if ts.size != np.asarray(timesteps).size:
            raise ValueError("respaced timesteps must not repeat")
        index = {int(t): i for i, t in enumerate(self.timesteps)}
        missing = [int(t) for t in ts if int(t) not in index]
        if missing:
            raise ValueError(f"timesteps {missing[:5]} are not steps of this schedule")
        rows = np.array([index[int(t)] for t in ts])
        return Schedule(self.alphas_cumprod[rows], self.timesteps[rows])

    def evenly_spaced(self, count: int) -> "Schedule":
        """Respace to ``count`` timesteps spread evenly over 1..T, always keeping t = 1 and T."""
        if not 1 <= count <= len(self):
            raise ValueError(f"count must be in 1..{len(self)}, got {count}")
        if count == 1:
            return self.respace([self.timesteps[-1]])
        picks = np.round(np.linspace(0, len(self) - 1, count)).astype(np.int64)
        return self.respace(self.timesteps[np.unique(picks)])
