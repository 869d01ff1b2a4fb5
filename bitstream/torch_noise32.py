"""Format version 4's shared noise and candidate scoring in torch, on any device: the same
float32 normals as ``bitstream.noise32`` bit for bit, and the log-weights of
``bitstream.kernels32.log_weights_step`` up to the order of the float64 sums.

torch has no uint32 arithmetic, so the words live in int64 tensors holding values below 2**32:
a product of two of them wraps as uint64 does, its high word is ``(p >> 32) & 0xFFFFFFFF`` (the
arithmetic shift's sign bits are masked off) and its low word ``p & 0xFFFFFFFF``.  The float32
steps are single elementwise operations on float32 tensors (constants too), which every device
rounds exactly as IEEE-754 says; nothing here can fuse a multiply-add.

Scoring flattens a step's chunks into one list of (chunk, block) pairs and works through it in
passes of at most ``budget`` candidate-blocks, so a GPU gets a few large launches whether the step
has one big chunk or thousands of small ones.
"""

from __future__ import annotations

import numpy as np
import torch

from . import noise32
from .scoring import check_step_inputs

_M32 = 0xFFFFFFFF


def _philox(c0, c1, c2, c3, k0: int, k1: int):
    """Philox4x32-10 on int64 tensors of uint32 values (broadcast together)."""
    for r in range(10):
        if r:
            k0, k1 = (k0 + noise32.W0) & _M32, (k1 + noise32.W1) & _M32
        p0 = c0 * noise32.M0
        p1 = c2 * noise32.M1
        c0, c1, c2, c3 = ((p1 >> 32) & _M32) ^ c1 ^ k0, p1 & _M32, ((p0 >> 32) & _M32) ^ c3 ^ k1, p0 & _M32
    return c0, c1, c2, c3


class _Constants:
    """The recipe's float32 constants as 0-d tensors on one device."""

    def __init__(self, device):
        names = ("LN2", "M_SPLIT", "L3", "L5", "L7", "L9", "ANGLE_STEP", "S3", "S5", "S7", "S9", "C2", "C4", "C6", "C8",
                 "TWO_POW_23", "MINUS_TWO", "ONE", "ZERO", "HALF")
        for name in names:
            setattr(self, name, torch.tensor(float(getattr(noise32, name)), dtype=torch.float32, device=device))


def log_uniform(w: torch.Tensor, c: _Constants) -> torch.Tensor:
    """ln u of recipe step 4 (float32)."""
    k = ((w >> 8) + 1).to(torch.float32)  # exact: k ≤ 2**24
    mant, exp = torch.frexp(k)
    m = mant * (c.ONE + c.ONE)
    e = exp.to(torch.int64) - 1
    big = m > c.M_SPLIT
    m = torch.where(big, m * c.HALF, m)
    e = e + big.to(torch.int64)
    r = (m - c.ONE) / (m + c.ONE)
    s = r * r
    p = (((c.L9 * s + c.L7) * s + c.L5) * s + c.L3) * s + c.ONE
    return (e - 24).to(torch.float32) * c.LN2 + (r + r) * p


def box_muller(w_rad: torch.Tensor, w_ang: torch.Tensor, c: _Constants) -> tuple[torch.Tensor, torch.Tensor]:
    """The normal pair of recipe steps 4–5 (float32)."""
    # float32's square root rounded correctly: torch's own float32 sqrt is not, on some CPUs (AVX-512
    # builds: 17 % of values one ulp off); a float64 root rounded to float32 is exact (53 ≥ 2·24 + 2)
    rad = torch.sqrt(torch.clamp_min(c.MINUS_TWO * log_uniform(w_rad, c), c.ZERO).double()).float()
    q = w_ang >> 30
    g = ((w_ang >> 6) & 0xFFFFFF).to(torch.float32)
    theta = (g - c.TWO_POW_23) * c.ANGLE_STEP
    t = theta * theta
    sin = theta * ((((c.S9 * t + c.S7) * t + c.S5) * t + c.S3) * t) + theta
    cos = (((c.C8 * t + c.C6) * t + c.C4) * t + c.C2) * t + c.ONE
    odd = (q & 1) == 1
    x = torch.where(odd, sin, cos)
    y = torch.where(odd, cos, sin)
    x = torch.where((q == 1) | (q == 2), -x, x)
    y = torch.where(q >= 2, -y, y)
    return rad * x, rad * y


def _block_normals(words, c: _Constants) -> torch.Tensor:
    w0, w1, w2, w3 = words
    z0, z1 = box_muller(w0, w1, c)
    z2, z3 = box_muller(w2, w3, c)
    return torch.stack([z0, z1, z2, z3], dim=-1)


def normals32(seed: int, step: int, chunk: int, start: int, count: int, d: int, device="cpu") -> torch.Tensor:
    """float32 (count, d): candidates ``start .. start+count-1`` of stream ``(step, chunk)``."""
    noise32.split_stream((step, chunk))
    c = _Constants(device)
    j = torch.arange(-(-int(d) // 4), dtype=torch.int64, device=device)[None, :]
    n = torch.arange(int(start), int(start) + int(count), dtype=torch.int64, device=device)[:, None]
    zero = torch.zeros((), dtype=torch.int64, device=device)
    words = _philox(j, n, zero + int(chunk), zero + int(step), int(seed) & _M32, int(seed) >> 32)
    return _block_normals(words, c).reshape(int(count), -1)[:, :int(d)]


def default_budget(device) -> int:
    """Candidate-blocks of one pass: about 40 MiB of work arrays on a CPU, 2.5 GiB on a GPU."""
    return (1 << 24) if torch.device(device).type == "cuda" else (1 << 18)


def log_weights_step(seed: int, step: int, a: float, b: np.ndarray, offsets, chunk_ids, log2_candidates: int,
                     device="cpu", budget: int | None = None) -> np.ndarray:
    """``bitstream.kernels32.log_weights_step`` on ``device``: (chunks, 2**k) float64 numpy."""
    _, _, _, b, offsets, ids, k = check_step_inputs(seed, step, 0.0, b, offsets, chunk_ids, log2_candidates)
    ids = ids.astype(np.int64)
    n_cand = 1 << k
    budget = int(budget or default_budget(device))
    c = _Constants(device)
    sizes = np.diff(offsets)
    blocks = -(-sizes // 4)
    owner = np.repeat(np.arange(ids.size), blocks)  # the chunk of every block
    first = np.concatenate([[0], np.cumsum(blocks)[:-1]])
    j = np.arange(owner.size) - first[owner]
    dim = offsets[owner][:, None] + 4 * j[:, None] + np.arange(4)[None, :]  # each block's four dimensions
    real = dim < offsets[owner + 1][:, None]  # the last block of a chunk may hold padding
    coeff = np.where(real, b[np.minimum(dim, b.size - 1)], 0).astype(np.float32)
    owner_t = torch.from_numpy(owner).to(device)
    j_t = torch.from_numpy(j).to(device)
    chunk_t = torch.from_numpy(ids[owner]).to(device)
    coeff_t = torch.from_numpy(coeff).to(device)
    real_t = torch.from_numpy(real).to(device)
    a_t = torch.tensor(float(np.float32(a)), dtype=torch.float32, device=device)
    zero = torch.zeros((), dtype=torch.int64, device=device)
    key = (int(seed) & _M32, int(seed) >> 32)
    out = torch.zeros((n_cand, ids.size), dtype=torch.float64, device=device)
    cand_step = min(n_cand, budget)
    block_step = max(1, budget // cand_step)
    for n0 in range(0, n_cand, cand_step):
        n = torch.arange(n0, min(n_cand, n0 + cand_step), dtype=torch.int64, device=device)[:, None]
        for b0 in range(0, owner.size, block_step):
            sl = slice(b0, b0 + block_step)
            words = _philox(j_t[sl][None, :], n, chunk_t[sl][None, :], zero + int(step), *key)
            z = _block_normals(words, c)  # (candidates, blocks, 4)
            term = (z * (a_t * z + coeff_t[sl])).to(torch.float64)
            per_block = torch.where(real_t[sl], term, torch.zeros((), dtype=torch.float64, device=device)).sum(-1)
            out[n0:n0 + n.shape[0]].index_add_(1, owner_t[sl], per_block)
    return out.T.contiguous().cpu().numpy()
