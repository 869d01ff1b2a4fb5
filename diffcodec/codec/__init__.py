"""The codec: where the diffusion model meets the bitstream (Algorithms 3 and 4 of the paper).

Encoding an image x_0 (``compress``):

1. x_T is drawn from the shared seed (p(x_T) = N(0, I); KL to q(x_T|x_0) ≈ 1e-5 bits/dim).
2. For each coded step t → s of the plan (``diffcodec.codec.plan``), x_s ~ q(x_s|x_t, x_0) is sent
   by channel simulation against p_θ(x_s|x_t) = N(μ̃(x̂_0(x_t), x_t), σ²) (``bitstream.channel``):
   the step's dimensions are shuffled and split into chunks of about B bits of KL each
   (``bitstream.chunks``), one candidate index per chunk, chosen by the file's selection rule
   (``bitstream.selection``: greedy by default, or exact PFR), all range-coded.
3. x_0 is sent losslessly given x_{t_stop}: integer residuals around the rounded x̂_0 of the
   float64 reference chain, each
   predicted from its checkerboard neighbours and the planes before it, with a Gaussian law whose
   σ is chosen per half-plane (``bitstream.interlaced``; version-1 files: ``bitstream.residual``).

Every ε̂ of the chain is the network's output on the whole image, or, above 512×512 pixels, on
overlapping tiles (``diffcodec.tiling``; the header names them, format version 5), so that
memory and time grow linearly with the pixels.

Decoding (``decompress``) replays the chain from the indices; any prefix of records gives
x_t for some t, shown through a :class:`~diffcodec.reconstruct.Reconstruction`.

Network outputs differ in their last bits between machines, thread counts and precisions.
Channel decoding never depends on them (the decoder reads indices); the lossless step's rounded
prediction does, so it is computed from the chain replayed with the network in float64 and
rounded with a guard (``chain`` module docstring, FORMAT.md §7, §9), and a CRC of the pixels
checks the result.
"""

from .chain import SCHEDULES, CodecError, model_hash
from .cost import EncodeEstimate, estimate_encode
from .damage import (DamagedFileWarning, PixelMismatchError, PixelMismatchWarning, SalvagedFileWarning,
                     TruncatedFileWarning, damage_warnings)
from .decoder import Decoded, check_model, decompress, describe, model_for_file, read_header
from .config import (CPU_CALLS, DEFAULT_STOP, FULL_RATE_T_STOP, GPU_CALLS, LOSSY_T_STOP, CodecConfig, Stop, call_size,
                     choose_stop, resolve_t_stop)
from .encoder import Encoded, compress
from .flow_quality import measure_flow
from .stats import EncodeStats, RecordStats, StepStats
from .limits import DEFAULT_MAX_PIXELS, ImageTooLarge, check_pixels

__all__ = ["CPU_CALLS", "DEFAULT_MAX_PIXELS", "GPU_CALLS", "SCHEDULES", "CodecConfig", "CodecError", "DEFAULT_STOP",
           "DamagedFileWarning", "Decoded", "EncodeEstimate", "EncodeStats", "Encoded", "FULL_RATE_T_STOP", "ImageTooLarge",
           "LOSSY_T_STOP", "PixelMismatchError", "PixelMismatchWarning", "RecordStats", "SalvagedFileWarning", "StepStats", "Stop",
           "TruncatedFileWarning", "call_size", "check_model", "choose_stop", "check_pixels", "compress", "damage_warnings",
           "decompress", "describe", "estimate_encode", "measure_flow", "model_for_file", "model_hash", "read_header", "resolve_t_stop"]
