"""What an encode measured (``Encoded.stats``): each coded step's KL and coded bits, each
record's size, reconstruction quality and chain health, and the file's target.

Typed, so that callers read fields rather than dig in dicts; :meth:`EncodeStats.to_dict` is the
``--stats`` JSON. The chain's health is the z statistics of x_t against q(x_t|x_0): a selection
rule that drifts off q shows in them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass
class StepStats:
    """One coded step t → s: its KL, its channel-simulation calls and their ideal coded bits."""

    step: int
    t: int
    s: int
    kl_bits: float
    chunks: int
    ideal_coded_bits: float


@dataclass
class ChainHealth:
    """z = (x_t − √ᾱ x_0)/√(1−ᾱ), N(0, 1) per dimension if x_t ~ q(x_t|x_0): its mean, variance
    and Kolmogorov–Smirnov distance to N(0, 1) over its ``z_n`` dimensions."""

    z_mean: float
    z_var: float
    z_ks: float
    z_n: int

    @classmethod
    def of(cls, x_t: torch.Tensor, x0: torch.Tensor, abar: float) -> "ChainHealth":
        z = np.sort(((x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)).flatten().numpy())
        n = z.size
        cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        ks = float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))
        return cls(float(z.mean()), float(z.var()), ks, n)


@dataclass
class RecordStats:
    """The file after record ``record`` (it ends at ``t``; 0: the lossless record): its bytes,
    the PSNR, RMSE and MS-SSIM of its mean reconstruction x̂_0 (None, 0 and None for the
    lossless record), the chain's health there (None for the lossless record), and, when
    measured, the PSNR and MS-SSIM of its probability-flow reconstruction."""

    record: int
    t: int
    file_bytes: int
    psnr_mean: float | None
    rmse_0_255: float
    ms_ssim_mean: float | None = None  # None: the lossless record, or a side of 10 pixels or less
    health: ChainHealth | None = None
    psnr_flow: float | None = None  # the probability-flow reconstruction, when measured (flow_quality)
    ms_ssim_flow: float | None = None

    def to_dict(self) -> dict:
        """The record's --stats entry; the measures it lacks are left out."""
        first = {k: getattr(self, k) for k in ("record", "t", "file_bytes", "psnr_mean", "rmse_0_255")}
        optional = {k: getattr(self, k) for k in ("ms_ssim_mean", "psnr_flow", "ms_ssim_flow")}
        return (first | {k: v for k, v in optional.items() if v is not None}
                | (asdict(self.health) if self.health is not None else {}))


@dataclass
class Target:
    """Which target the stop set (bpp, psnr, upto_t or full_rate), its value, whether the file
    meets it and what it reached."""

    rule: str
    value: float | None
    met: bool
    reached: float | int | None


@dataclass
class FullRateRetry:
    """When only the lossless record met a lossy target, the full-rate file was encoded too:
    both sizes and which was kept (``full_rate`` or ``lossy_t_stop``)."""

    lossy_t_stop_bytes: int
    full_rate_bytes: int
    kept: str


@dataclass
class CodedSettings:
    """The settings the file was coded with, as its header gives them."""

    t_stop: int
    groups: int
    log2_candidates: int
    chunk_bits: float
    variance: str
    layout: str
    seed: int
    selection: str
    version: int
    end_t: int


@dataclass
class EncodeStats:
    """The whole encode: the file's size, every coded step, every record kept, the lossless
    record's guard figures (empty without one) and the target."""

    header_bytes: int
    file_bytes: int
    pixels: int
    bpp: float
    steps: list[StepStats]
    records: list[RecordStats]
    config: CodedSettings
    record_count: int  # the file's records, an RGBA image's alpha record included
    lossless: dict = field(default_factory=dict)
    target: Target | None = None
    full_rate_retry: FullRateRetry | None = None

    @property
    def dims(self) -> int:
        return 3 * self.pixels

    @property
    def last_record(self) -> RecordStats | None:
        return self.records[-1] if self.records else None

    def to_dict(self) -> dict:
        """The ``--stats`` JSON."""
        out = {"header_bytes": self.header_bytes, "file_bytes": self.file_bytes, "pixels": self.pixels,
               "dims": self.dims, "bpp": self.bpp, "steps": [asdict(s) for s in self.steps],
               "records": [r.to_dict() for r in self.records], "lossless": self.lossless,
               "config": asdict(self.config), "record_count": self.record_count}
        if self.full_rate_retry is not None:
            out["full_rate_retry"] = asdict(self.full_rate_retry)
        return out | {"target": None if self.target is None else asdict(self.target)}

