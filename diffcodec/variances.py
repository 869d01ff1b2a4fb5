"""Optimal reverse variances: the σ² of p_θ that gives the fewest bits with a given network.

For a step t → s, q(x_s|x_t, x_0) = N(μ̃, β̃'I) and p_θ(x_s|x_t) = N(μ_θ, σ²I), where μ_θ is μ̃
with the network's clipped x̂_0 in place of x_0, so μ̃ − μ_θ = c·(x_0 − x̂_0) with c the
x_0-coefficient of μ̃.  The expected KL, d/2·[ln(σ²/β̃') + (β̃' + c²·e_t)/σ² − 1], is smallest at

    σ*² = β̃' + c²·e_t,    e_t = E‖x_0 − x̂_0(x_t)‖² / d,

the network's mean squared error per dimension at t.  This is the optimum of Analytic-DPM
(Bao et al. 2022) with the error measured against the true x_0, which also accounts for the
network's imperfect mean (as NPR-DPM does); it never goes below β̃'.  At t = 1 (c = 1, β̃ = 0) it
is the decoder's variance σ*² = e_1.  One table of e_t, t = 1..T, serves every respacing.

This module holds the table and its file: it is estimated once per model on a sample of its
training data (``diffcodec.variance_estimation``) and stored beside the model's weights as
``reverse_variances.json``; files coded with it name the first bytes of its SHA-256 (the float64
little-endian bytes of e_1..e_T), so a file never decodes under another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .files import write_file
from .schedule import Schedule

TABLE_FILE = "reverse_variances.json"
FORMAT = "diffcodec-reverse-variances"


@dataclass(frozen=True)
class ErrorTable:
    """e_t for t = 1..T (float64, on the [−1, 1] scale) and how it was estimated."""

    mse: np.ndarray  # (T,)
    stderr: np.ndarray  # (T,) Monte Carlo standard error of each e_t
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        mse = np.ascontiguousarray(self.mse, dtype=np.float64)
        stderr = np.ascontiguousarray(self.stderr, dtype=np.float64)
        if mse.ndim != 1 or mse.shape != stderr.shape or mse.size == 0:
            raise ValueError("mse and stderr must be equal-length non-empty 1-D arrays")
        if not (np.all(np.isfinite(mse)) and np.all(mse >= 0) and np.all(np.isfinite(stderr))):
            raise ValueError("mse must be finite and >= 0")
        object.__setattr__(self, "mse", mse)
        object.__setattr__(self, "stderr", stderr)

    @property
    def num_timesteps(self) -> int:
        return int(self.mse.size)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.mse.astype("<f8").tobytes()).hexdigest()

    @property
    def short_hash(self) -> bytes:
        """The 4 bytes a .ddc header names the table by."""
        return bytes.fromhex(self.sha256)[:4]

    def variances(self, schedule: Schedule) -> np.ndarray:
        """σ*² of every step of ``schedule`` (the full chain or any respacing of it)."""
        if int(schedule.timesteps[-1]) > self.num_timesteps:
            raise ValueError("the schedule has timesteps beyond the table")
        e = self.mse[schedule.timesteps - 1]
        return schedule.posterior_variance + schedule.posterior_mean_coef_x0**2 * e

    def shifted(self, sigmas: float) -> "ErrorTable":
        """The table moved by ``sigmas`` standard errors (for the estimate's effect on a bound)."""
        return ErrorTable(np.maximum(self.mse + sigmas * self.stderr, 0.0), self.stderr, self.meta)

    # ---- files ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": 1, "sha256": self.sha256, "meta": self.meta,
                "mse": [float.hex(float(v)) for v in self.mse], "stderr": self.stderr.tolist()}

    @classmethod
    def from_json(cls, doc: dict, where: str = "table") -> "ErrorTable":
        try:
            if doc.get("format") != FORMAT or doc.get("format_version") != 1:
                raise ValueError("not a reverse-variance table of format version 1")
            table = cls(np.array([float.fromhex(v) for v in doc["mse"]]), np.array(doc["stderr"], dtype=np.float64),
                        doc.get("meta", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where} is not a valid reverse-variance table ({e})") from None
        if table.sha256 != doc.get("sha256"):
            raise CheckpointError(f"{where} does not match its own hash: the file is corrupt or edited")
        return table

    def save(self, path: Path) -> None:
        write_file(Path(path), (json.dumps(self.to_json(), indent=1) + "\n").encode(), force=True)

    @classmethod
    def load(cls, path: Path) -> "ErrorTable":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not a readable reverse-variance table ({e})") from None
        return cls.from_json(doc, str(path))
