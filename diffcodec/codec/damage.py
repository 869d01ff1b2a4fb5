"""What a decode says about damaged input, in the same words for the command line (``warning:``
and ``error:`` lines) and the Python API (warnings and exceptions), so that the two agree on
every file: a truncated file, a corrupt record decoded around (salvage), and a lossless record
whose pixels do not match the checksum the encoder stored."""

from __future__ import annotations

from .chain import CodecError
from .decoder import Decoded


class DamagedFileWarning(UserWarning):
    """The input is damaged, and an image was decoded all the same."""


class TruncatedFileWarning(DamagedFileWarning):
    """The data ends inside (or before) a record: the complete records before it were decoded."""


class SalvagedFileWarning(DamagedFileWarning):
    """A record is corrupt: with salvage, the intact records before it were decoded."""


class PixelMismatchWarning(DamagedFileWarning):
    """The lossless record does not reproduce the encoder's pixels, and the image was accepted."""


class PixelMismatchError(CodecError):
    """The lossless record does not reproduce the encoder's pixels (their checksum fails)."""


def damage_warnings(decoded: Decoded, name: str, accept_mismatch: bool, how_to_accept: str) -> list[DamagedFileWarning]:
    """The warnings a decode of ``name`` gives; PixelMismatchError (its message ending in
    ``how_to_accept``) for pixels that miss their checksum, unless ``accept_mismatch``."""
    found: list[DamagedFileWarning] = []
    if decoded.damage is not None:
        found.append(SalvagedFileWarning(f"{name}: {decoded.damage.message}; salvaged the image of "
                                         f"{decoded.records_used} intact records before it (t = {decoded.t})"))
    if decoded.truncated and decoded.records_used == decoded.records_available:
        found.append(TruncatedFileWarning(f"{name} is truncated; decoded its {decoded.records_used} complete records "
                                          f"(t = {decoded.t}); record {decoded.records_used} is cut off"))
    if decoded.exact is False:
        mismatch = (f"{name} does not decode to the image that was encoded: its pixels do not match the checksum "
                    f"the encoder stored")
        if not accept_mismatch:
            raise PixelMismatchError(f"{mismatch} ({how_to_accept})")
        found.append(PixelMismatchWarning(mismatch))
    return found
