"""The probability-flow reconstruction's quality at every record of a file (``encode --stats
--stats-flow``).

The flow picture of a prefix integrates the probability-flow ODE from the decoded x_t, which
assumes x_t ~ q(x_t|x_0). A selection rule that leaves q (greedy pulls x_t towards the prior's
mean) can keep its mean pictures x̂_0 and still spoil its flow pictures, so both are measured:
the encoder gives the mean's PSNR and MS-SSIM of every record, and this the flow's, from one
decode of the file (``steps`` network passes a record).
"""

from __future__ import annotations

from ..checkpoint import Model
from ..images import CodecImage
from ..quality import ms_ssim_or_none, psnr_rgb
from ..reconstruct import Reconstruction
from .decoder import decompress
from .stats import EncodeStats


def measure_flow(stats: EncodeStats, data: bytes, model: Model, image: CodecImage, steps: int = 50) -> None:
    """Fill ``psnr_flow`` and ``ms_ssim_flow`` of every lossy record of ``stats`` (the encode of
    ``image`` into ``data``) from the flow reconstruction a decoder shows there."""
    decoded = decompress(data, model, None, Reconstruction.FLOW, steps=steps, frames=True, max_pixels=None)
    shown = dict(decoded.frames)  # t → the picture after the record ending there
    for record in stats.records:
        if record.t != 0:
            record.psnr_flow = psnr_rgb(image.rgb, shown[record.t].rgb)
            record.ms_ssim_flow = ms_ssim_or_none(image.rgb, shown[record.t].rgb)
