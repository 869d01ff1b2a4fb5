"""Laws of the index a channel-simulation call sends, and their range coding (constriction).

* **Zipf** (the PFR rules): P(n) ~ (n+1)^-s over n < 2**k, s = 1 + 1/(B + ln(e+1)/e), with B the
  KL budget in bits known to both sides; an exact-PFR index costs about B + log2(B + 1) + O(1)
  bits under it.
* **uniform** (the greedy rule of format version 4): k bits exactly.

``bitstream.channel`` selects the index; this module gives its law (what it costs) and codes it,
a model apart from its coder as in constriction.
"""

from __future__ import annotations

import functools

import constriction
import numpy as np

from . import portable_math

ZIPF_OFFSET = 0.48312197571606913  # ln(e + 1)/e, as a constant so that s is the same on every machine


def zipf_exponent(kl_budget_bits: float) -> float:
    """s = 1 + 1/(B + ln(e+1)/e) (basic operations only)."""
    b = max(0.0, float(kl_budget_bits))
    return 1.0 + 1.0 / (b + ZIPF_OFFSET)


@functools.lru_cache(maxsize=64)
def _zipf_model(k: int, budget_key: float, portable: bool):
    n = np.arange(1, (1 << k) + 1, dtype=np.float64)
    s = zipf_exponent(budget_key)
    if portable:  # format version 3: identical probabilities on every machine
        p = portable_math.normalised(portable_math.exp(-s * portable_math.log(n)))
    else:  # versions 1 and 2: numpy's exp and log (machine-dependent in the last ulp)
        logp = -s * np.log(n)
        p = np.exp(logp - logp.max())
        p /= p.sum()
    model = constriction.stream.model.Categorical(p, perfect=False)
    return model, p


@functools.lru_cache(maxsize=8)
def _uniform_model(k: int):
    return constriction.stream.model.Uniform(1 << k)


class IndexModel:
    """Law of the selected index over ``2**log2_candidates`` candidates: a truncated Zipf law for a
    KL budget in bits (the PFR rules), or with ``uniform`` the uniform law, k bits exactly (the
    greedy rule of format version 4, ``bitstream.selection``).

    ``B`` is rounded to 1e-6 bits for caching; both sides must derive the same B.  ``portable``
    (format version 3) builds the law from :mod:`bitstream.portable_math`; False gives the law of
    versions 1 and 2.
    """

    def __init__(self, log2_candidates: int, kl_budget_bits: float, *, portable: bool = True, uniform: bool = False):
        self.k = int(log2_candidates)
        if not 1 <= self.k <= 24:
            raise ValueError("log2_candidates must be in [1, 24] (one candidate carries no information)")
        self.budget = round(float(kl_budget_bits), 6)
        self.uniform = bool(uniform)
        if self.uniform:
            self.model, self.probs = _uniform_model(self.k), None
        else:
            self.model, self.probs = _zipf_model(self.k, self.budget, bool(portable))

    @property
    def size(self) -> int:
        return 1 << self.k

    def ideal_bits(self, index: int) -> float:
        if self.uniform:
            return float(self.k)
        return float(-np.log2(self.probs[int(index)]))


def _models_for(models, count: int):
    if isinstance(models, IndexModel):
        return [models] * count
    models = list(models)
    if len(models) != count:
        raise ValueError("need one IndexModel per index")
    return models


def encode_indices(indices, models) -> bytes:
    """Range-code (FIFO) a sequence of indices; ``models``: one IndexModel or one per index."""
    indices = [int(i) for i in indices]
    models = _models_for(models, len(indices))
    enc = constriction.stream.queue.RangeEncoder()
    for i, m in zip(indices, models):
        if not 0 <= i < m.size:
            raise ValueError(f"index {i} outside [0, {m.size})")
        enc.encode(np.array([i], dtype=np.int32), m.model)
    return enc.get_compressed().astype("<u4").tobytes()


def decode_indices(data: bytes, models, count: int | None = None) -> list[int]:
    """Inverse of ``encode_indices``; pass ``count`` when ``models`` is a single IndexModel."""
    if isinstance(models, IndexModel):
        if count is None:
            raise ValueError("count is required with a single IndexModel")
        models = [models] * int(count)
    else:
        models = list(models)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    return [int(dec.decode(m.model, 1)[0]) for m in models]
