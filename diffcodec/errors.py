"""Errors a user can cause and fix: the CLI prints their message on one line and exits non-zero."""


class DiffcodecError(Exception):
    """Base class of every error caused by bad input rather than by a bug."""


class DataError(DiffcodecError):
    """Missing, unreadable or malformed input images or data sets."""


class CheckpointError(DiffcodecError):
    """Missing, malformed or mismatched model checkpoints."""


class OutputError(DiffcodecError):
    """An output that cannot be written (no space, too large, no permission, a closed pipe):
    nothing partial is left and an existing file is untouched."""


class StdoutError(OutputError):
    """Standard output cannot be written (a full disk, a closed pipe)."""


class OptionError(DiffcodecError, ValueError):
    """Settings that contradict each other or are out of range (a ValueError too, as the API's
    callers expect of bad arguments)."""
