"""diffcodec: a progressive image codec built on a denoising diffusion model (DDPM)."""

from .api import compress, decompress

__all__ = ["compress", "decompress"]
