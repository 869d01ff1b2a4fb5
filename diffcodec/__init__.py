"""diffcodec: a progressive image codec built on a denoising diffusion model (DDPM).

``compress`` and ``decompress`` (``diffcodec.api``), and the errors and warnings of damaged
input they give, are loaded on first use, so that importing the package, and with it the
command line's ``--help``, does not import torch.
"""

__all__ = ["CodecError", "DamagedFileWarning", "PixelMismatchError", "PixelMismatchWarning", "SalvagedFileWarning",
           "TruncatedFileWarning", "compress", "decompress"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
