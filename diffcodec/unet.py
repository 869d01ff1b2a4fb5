"""The ε-prediction U-Net of Ho et al. 2020 and named smaller configurations.

Residual blocks with GroupNorm and a projected sinusoidal time embedding, single-head
self-attention at chosen levels, stride-2 convolutions down and nearest-neighbour ×2 up.
Fully convolutional: any input whose sides are divisible by ``downsampling_factor`` runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of an ε-U-Net. ``attention_levels`` index ``channel_mult`` (0 = full size)."""

    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1,)
    dropout: float = 0.1
    num_groups: int = 32
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        if not self.channel_mult or self.num_res_blocks < 1 or self.base_channels < 1:
            raise ValueError("channel_mult must be non-empty, num_res_blocks and base_channels >= 1")
        if any(not 0 <= a < len(self.channel_mult) for a in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} outside 0..{len(self.channel_mult) - 1}")
        if any((self.base_channels * m) % self.num_groups for m in self.channel_mult):
            raise ValueError("every level's channel count must be divisible by num_groups")
        if self.base_channels % 2:
            raise ValueError("base_channels must be even (sinusoidal embedding)")

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown U-Net config fields: {sorted(unknown)}")
        return cls(**d)


# The paper's CIFAR-10 network (35.7M parameters) and smaller ones for CPU work.
CONFIGS: dict[str, UNetConfig] = {
    "ddpm-cifar10": UNetConfig(),
    "small": UNetConfig(base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(1,)),
    "tiny": UNetConfig(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,)),
    "micro": UNetConfig(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), num_groups=8),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [sin, cos] with frequencies max_period^(−i/(dim/2 − 1))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1)
    angles = t.to(torch.float32)[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, cfg: UNetConfig):
        super().__init__()
        self.norm1 = nn.GroupNorm(cfg.num_groups, in_ch, eps=cfg.norm_eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(cfg.num_groups, out_ch, eps=cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all positions, with a residual connection."""

    def __init__(self, ch: int, cfg: UNetConfig):
        super().__init__()
        self.norm = nn.GroupNorm(cfg.num_groups, ch, eps=cfg.norm_eps)
        self.q = nn.Linear(ch, ch)
        self.k = nn.Linear(ch, ch)
        self.v = nn.Linear(ch, ch)
        self.proj = nn.Linear(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = (layer(tokens)[:, None] for layer in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Stride-2 3×3 convolution, padded on the bottom/right only (as the reference network)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder or decoder path: residual blocks, optional attention, resampling."""

    def __init__(self, blocks: list[ResBlock], attentions: list[AttentionBlock], resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList(attentions)
        self.resample = resample


class UNet(nn.Module):
    """ε_θ(x_t, t): images (B, C, H, W) and timesteps (B,) in 0..T−1 to noise predictions."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch = cfg.base_channels
        emb_dim = 4 * ch
        self.emb_in = nn.Linear(ch, emb_dim)
        self.emb_out = nn.Linear(emb_dim, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        skips = [ch]  # channels of every skip tensor, in push order
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.channel_mult):
            out = cfg.base_channels * mult
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(ch, out, emb_dim, cfg))
                if level in cfg.attention_levels:
                    attns.append(AttentionBlock(out, cfg))
                ch = out
                skips.append(ch)
            last = level == len(cfg.channel_mult) - 1
            self.down.append(Level(blocks, attns, None if last else Downsample(ch)))
            if not last:
                skips.append(ch)

        self.mid_block1 = ResBlock(ch, ch, emb_dim, cfg)
        self.mid_attention = AttentionBlock(ch, cfg)
        self.mid_block2 = ResBlock(ch, ch, emb_dim, cfg)

        self.up = nn.ModuleList()
        for level in reversed(range(len(cfg.channel_mult))):
            out = cfg.base_channels * cfg.channel_mult[level]
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), out, emb_dim, cfg))
                if level in cfg.attention_levels:
                    attns.append(AttentionBlock(out, cfg))
                ch = out
            self.up.append(Level(blocks, attns, Upsample(ch) if level > 0 else None))
        assert not skips

        self.norm_out = nn.GroupNorm(cfg.num_groups, ch, eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"expected (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        f = cfg.downsampling_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"height and width must be divisible by {f}, got {tuple(x.shape[2:])}")
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"expected timesteps shaped ({x.shape[0]},), got {tuple(t.shape)}")

        emb = timestep_embedding(t, cfg.base_channels).to(x.dtype)
        emb = self.emb_out(F.silu(self.emb_in(emb)))

        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for i, block in enumerate(level.blocks):
                h = block(h, emb)
                if len(level.attentions):
                    h = level.attentions[i](h)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)

        h = self.mid_block2(self.mid_attention(self.mid_block1(h, emb)), emb)

        for level in self.up:
            for i, block in enumerate(level.blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
                if len(level.attentions):
                    h = level.attentions[i](h)
            if level.resample is not None:
                h = level.resample(h)

        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
