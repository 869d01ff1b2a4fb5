"""The exact variational bound of a DDPM, term by term, as the paper measured it.

For one batch of images x_0 ∈ {0..255} scaled to [−1, 1]:

* prior L_T = KL(q(x_K|x_0) ‖ N(0, I)),
* for each step k ≥ 2: KL(q(x_{k−1}|x_k, x_0) ‖ p_θ(x_{k−1}|x_k)) in closed form, with a fresh
  x_k ~ q(x_k|x_0) per step (not a chain),
* L_0 = −log p_θ(x_0|x_1) under the discretised Gaussian decoder with the exact normal CDF,
* the MSE of x̂_0 (eq. 15, clipped to [−1, 1]) from every x_k.

Rate is L_T + Σ_{k≥2} KL, distortion is L_0. All terms are float64 and in bits per image;
both fixed reverse variances, and any further per-step variances given by name (the optimal ones
of :mod:`diffcodec.variances`), are evaluated from the same network outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion import EpsFn, GaussianDiffusion, ReverseVariance

LN2 = math.log(2.0)
BIN_HALF_WIDTH = 1.0 / 255.0  # half the spacing of the 256 levels on [−1, 1]


def variance_key(variance) -> str:
    """The name a variance's terms are stored under: a :class:`ReverseVariance`'s value, or the
    name of an extra table."""
    return variance.value if isinstance(variance, ReverseVariance) else str(variance)


def gaussian_kl(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) ‖ N(mean2, var2)) per element, in nats."""
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log_diff_ndtr(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) − Φ(lo)) for lo < hi, accurate in both tails."""
    upper = lo > 0  # both in the upper tail: use Φ(−lo) − Φ(−hi) instead
    a = torch.where(upper, -hi, lo)
    b = torch.where(upper, -lo, hi)
    log_b = torch.special.log_ndtr(b)
    return log_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_b))


def discretized_gaussian_log_prob(x0: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log p(x_0) per element for the 256-level decoder of eq. 13, in nats (float64).

    Each level x owns [x − 1/255, x + 1/255]; the bins of −1 and +1 extend to ∓∞.
    """
    x0, mean, std = (v.to(torch.float64) for v in torch.broadcast_tensors(x0, mean, std))
    lo = (x0 - BIN_HALF_WIDTH - mean) / std
    hi = (x0 + BIN_HALF_WIDTH - mean) / std
    lo = torch.where(x0 < -1 + 1e-9, torch.full_like(lo, -math.inf), lo)
    hi = torch.where(x0 > 1 - 1e-9, torch.full_like(hi, math.inf), hi)
    return _log_diff_ndtr(lo, hi)


@dataclass
class BoundTerms:
    """Per-image, per-step terms of the bound for one batch (float64, bits per image).

    ``step_bits[v][:, k−1]`` is the KL of step k ≥ 2, and L_0 at k = 1, for reverse variance v
    (a :class:`ReverseVariance` value, or the name of an extra variance table).
    ``mse[:, k−1]`` is the MSE of clipped x̂_0 from x_k on the [−1, 1] scale.
    """

    prior_bits: np.ndarray  # (B,)
    step_bits: dict[str, np.ndarray]  # (B, K) each
    mse: np.ndarray  # (B, K)
    dims: int  # C·H·W

    def rate_bits(self, variance: str) -> np.ndarray:
        """L_T + Σ_{k≥2} KL_k per image."""
        return self.prior_bits + self.step_bits[variance_key(variance)][:, 1:].sum(axis=1)

    def distortion_bits(self, variance: str) -> np.ndarray:
        """L_0 per image."""
        return self.step_bits[variance_key(variance)][:, 0].copy()


def prior_kl_bits(diffusion: GaussianDiffusion, x0: torch.Tensor) -> np.ndarray:
    """L_T = KL(q(x_K|x_0) ‖ N(0, I)) per image, in bits."""
    x0 = x0.to(torch.float64)
    k = torch.full((x0.shape[0],), diffusion.num_steps, dtype=torch.long, device=x0.device)
    mean, std = diffusion.q_mean_std(x0, k)
    kl = gaussian_kl(mean, std**2, torch.zeros_like(mean), torch.ones_like(mean))
    return (kl.flatten(1).sum(1) / LN2).cpu().numpy()


class _StepTables:
    """The bound's per-step constants as float64 tensors on one device, indexed by step − 1,
    so that evaluating a step reads nothing from the host and nothing back."""

    def __init__(self, diffusion: GaussianDiffusion, device: torch.device, extra: dict[str, np.ndarray]):
        s = diffusion.schedule

        def put(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(device)

        self.sqrt_abar = put(np.sqrt(s.alphas_cumprod))
        self.sqrt_one_minus_abar = put(np.sqrt(1.0 - s.alphas_cumprod))
        self.coef_x0 = put(s.posterior_mean_coef_x0)
        self.coef_xt = put(s.posterior_mean_coef_xt)
        self.posterior_variance = put(s.posterior_variance)
        self.variance = {v.value: put(diffusion.reverse_variances(v)) for v in ReverseVariance}
        for name, values in extra.items():
            if np.shape(values) != (diffusion.num_steps,) or not np.all(np.asarray(values) > 0):
                raise ValueError(f"variance table {name!r} must hold {diffusion.num_steps} positive values")
            self.variance[name] = put(values)
        self.network_timesteps = torch.from_numpy(s.timesteps - 1).to(device)


@torch.no_grad()
def evaluate_bound(
    diffusion: GaussianDiffusion,
    eps_fn: EpsFn,
    x0: torch.Tensor,
    *,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
    steps=None,
    progress=None,
    steps_per_call: int = 1,
    variances: dict[str, np.ndarray] | None = None,
) -> BoundTerms:
    """All terms of the bound for a batch ``x0`` (B, C, H, W) on the 256 levels of [−1, 1].

    ``clip_denoised`` clips x̂_0 to [−1, 1] before forming μ_θ, as the reference evaluation
    does. ``steps`` restricts evaluation to some step indices (each once; others stay NaN);
    ``progress`` is called once per step evaluated.

    Steps are taken from K down to 1, ``steps_per_call`` at a time: their x_k go through the
    network in one call of B · steps_per_call images, so a small network fills a large device.
    The noise of each step is drawn on its own, in that order, from ``generator``: the terms do
    not depend on ``steps_per_call`` (up to the network's own rounding at another batch size).
    All terms stay on x0's device until the end, so no step waits for the host.
    ``variances`` adds named per-step reverse variances (σ² of steps 1..K, the first being the
    decoder's) to the two fixed ones.
    """
    if x0.ndim != 4:
        raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(x0.shape)}")
    if steps_per_call < 1:
        raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
    x0 = x0.to(torch.float64)
    levels = torch.round((x0 + 1) * 127.5)
    on_levels = (levels >= 0) & (levels <= 255) & ((levels / 127.5 - 1 - x0).abs() <= 1e-6)
    if not torch.all(on_levels):  # written so that NaN fails it too
        raise ValueError("x0 must lie on the 256 levels of [-1, 1]")
    B, K = x0.shape[0], diffusion.num_steps
    order = list(range(K, 0, -1)) if steps is None else sorted({int(k) for k in steps}, reverse=True)
    if order and not 1 <= order[-1] <= order[0] <= K:
        raise ValueError(f"step index out of range 1..{K}")
    dims = int(np.prod(x0.shape[1:]))
    tables = _StepTables(diffusion, x0.device, dict(variances or {}))
    variances = list(tables.variance)
    rows = torch.tensor([k - 1 for k in order], dtype=torch.long).to(x0.device)  # step − 1, evaluation order
    bits_parts: dict[str, list[torch.Tensor]] = {v: [] for v in variances}
    mse_parts: list[torch.Tensor] = []
    x0e = x0.unsqueeze(0)  # (1, B, C, H, W) against the (m, B, C, H, W) of m steps
    for start in range(0, len(order), steps_per_call):
        ks = order[start : start + steps_per_call]
        m = len(ks)
        idx = rows[start : start + m]

        def per_step(table: torch.Tensor) -> torch.Tensor:
            return table[idx].view(m, 1, 1, 1, 1)

        noise = torch.empty((m, *x0.shape), dtype=torch.float64, device=x0.device)
        for j in range(m):  # one draw per step, in the order of the one-step-per-call evaluation
            noise[j].normal_(generator=generator)
        sqrt_abar, sqrt_one_minus = per_step(tables.sqrt_abar), per_step(tables.sqrt_one_minus_abar)
        x_k = sqrt_abar * x0e + sqrt_one_minus * noise
        net_in = x_k.to(torch.float32).reshape(m * B, *x0.shape[1:])
        eps = eps_fn(net_in, tables.network_timesteps[idx].view(m, 1).expand(m, B).reshape(-1))
        if eps.shape != net_in.shape:
            raise ValueError(f"ε-predictor returned {tuple(eps.shape)} for input {tuple(net_in.shape)}")
        eps = eps.to(torch.float64).view(x_k.shape)
        x0_hat = (x_k - sqrt_one_minus * eps) / sqrt_abar
        if clip_denoised:
            x0_hat = x0_hat.clamp(-1, 1)
        coef_x0, coef_xt = per_step(tables.coef_x0), per_step(tables.coef_xt)
        mean_p = coef_x0 * x0_hat + coef_xt * x_k
        mse_parts.append(((x0_hat.clamp(-1, 1) - x0e) ** 2).flatten(2).mean(2))
        kl_steps = m - 1 if ks[-1] == 1 else m  # steps ≥ 2 come first; step 1 (L_0) can only be last
        mean_q = coef_x0[:kl_steps] * x0e + coef_xt[:kl_steps] * x_k[:kl_steps]
        var_q = per_step(tables.posterior_variance)[:kl_steps]
        for v in variances:
            var_p = per_step(tables.variance[v])
            parts = [(gaussian_kl(mean_q, var_q, mean_p[:kl_steps], var_p[:kl_steps]).flatten(2).sum(2) / LN2)]
            if kl_steps < m:
                nll = -discretized_gaussian_log_prob(x0, mean_p[-1], var_p[-1].sqrt())
                parts.append(nll.flatten(1).sum(1)[None] / LN2)
            bits_parts[v].append(torch.cat(parts))
        if progress is not None:
            for _ in ks:
                progress()
    step_bits = {v: np.full((B, K), np.nan) for v in variances}
    mse = np.full((B, K), np.nan)
    if order:
        columns = np.array(order) - 1
        for v in variances:
            step_bits[v][:, columns] = torch.cat(bits_parts[v]).cpu().numpy().T
        mse[:, columns] = torch.cat(mse_parts).cpu().numpy().T
    return BoundTerms(prior_kl_bits(diffusion, x0), step_bits, mse, dims)
