"""Reading inputs and writing outputs safely, and ``-`` for standard input or output as image
tools do.

A regular file is written atomically (a temporary file in its folder, renamed over it), never
over an existing one unless asked (``force``), and through a symlink to its target, not over the
link. A device or a FIFO is written in place, as ``> path`` would, without ``force``, and never
replaced; a terminal is refused as binary output. Every failure to write (no space, a file too
large, no permission, a folder gone, a closed pipe) is one :class:`~diffcodec.errors.OutputError`
line, with nothing partial left and an existing file untouched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DiffcodecError, OutputError, StdoutError

STDIO = "-"  # a file argument meaning standard input (inputs) or standard output (outputs)


def describe_source(arg: str) -> str:
    """How messages name an input argument."""
    return "standard input" if arg == STDIO else str(arg)


def describe_target(arg: str) -> str:
    """How messages name an output argument."""
    return "standard output" if arg == STDIO else str(arg)


def read_input(arg: str, kind: str = "file") -> bytes:
    """The bytes of an input file, or of standard input for ``-``; one-line errors for a
    missing file or a folder (``kind`` names what was expected, e.g. ".ddc file")."""
    if arg == STDIO:
        return sys.stdin.buffer.read()
    path = Path(arg)
    if path.is_dir():
        raise DiffcodecError(f"{path} is a folder, not a {kind}")
    if not path.is_file():
        raise DiffcodecError(f"no such file: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DiffcodecError(f"cannot read {path} ({e.strerror})") from None


def check_output(arg: str, force: bool) -> None:
    """Before any work: a binary output can be written (``-``: standard output), and is not a terminal."""
    if arg == STDIO:
        if sys.stdout.isatty():
            raise DiffcodecError("refusing to write binary data to a terminal; redirect standard output "
                                 "or give -o a file name")
        return
    path = check_writable(Path(arg), force)
    if _is_terminal(path):
        raise DiffcodecError(f"refusing to write binary data to the terminal {path}; give -o a file name")


def check_writable(path: Path, force: bool) -> Path:
    """Before any work: ``path`` can be written. An existing regular file is replaced only with
    ``force``; a device or FIFO is written in place and needs none; a folder, a socket, a
    missing folder and one this process may not write in are refused."""
    path = Path(path)
    mode = _mode(path)
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise DiffcodecError(f"{path} is a folder")
        if _in_place(mode):
            return path
        if not stat.S_ISREG(mode):
            raise DiffcodecError(f"{path} is not a regular file, a device or a FIFO; cannot write to it")
        if not force:
            raise DiffcodecError(f"{path} exists; pass --force to overwrite it")
    check_folder(_target(path).parent)
    return path


def check_folder(folder: Path, may_create: bool = False) -> None:
    """Before any work: files can be written in ``folder``, which exists (with ``may_create``:
    or can be made in the nearest folder above it that exists)."""
    folder = Path(folder)
    while may_create and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise DiffcodecError(f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in folder {folder} (it is not writable)")


def write_output(arg: str, data: bytes, force: bool = True) -> None:
    """Write ``data`` to the file ``arg`` (:func:`write_file`) or to standard output for ``-``."""
    with OutputSet(force) as outputs:
        outputs.add(arg, data)


def write_file(path: Path, data: bytes, force: bool = True) -> Path:
    """Write ``data`` to ``path`` as the module docstring says (checked by :func:`check_writable`)."""
    with OutputSet(force) as outputs:
        return outputs.add(Path(path), data)


class OutputSet:
    """Outputs written all or none: a checkpoint's weights and config, decode's image and its
    frames. Each regular file is staged in a temporary file beside its target as it is added;
    on leaving the block without an error every staged file is renamed over its target (a rename
    needs no space), and devices, FIFOs and standard output are written, in the order added. An
    error before then removes what was staged and the folders the set made, so that no existing
    output is touched and nothing partial is left.

        >>> with OutputSet() as outputs:                         # doctest: +SKIP
        ...     outputs.add(folder / "model.safetensors", weights)
        ...     outputs.add(folder / "config.json", config)       # both appear, or neither
    """

    def __init__(self, force: bool = True):
        self.force = force
        self._staged: list[tuple[str | Path, str | None, Path | bytes]] = []  # (name, temporary, target or data)
        self._folders: list[Path] = []  # made by this set, outermost first

    def folder(self, path: Path) -> Path:
        """An output folder, made (with its parents) if missing, and removed again on failure."""
        path = Path(path)
        missing = [p for p in (path, *path.parents) if not p.exists()]
        make_folder(path)
        self._folders += reversed(missing)
        return path

    def add(self, arg: str | Path, data: bytes) -> str | Path:
        """Stage ``data`` for the file ``arg`` (``-``: standard output), checked as
        :func:`check_writable` checks it."""
        if arg == STDIO:
            self._staged.append((STDIO, None, data))
            return arg
        path = check_writable(Path(arg), self.force)
        mode = _mode(path)
        if mode is not None and _in_place(mode):
            self._staged.append((path, None, data))
        else:
            target = _target(path)
            self._staged.append((path, _stage(target, data, path), target))
        return path

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, kind, error, trace) -> bool:
        if error is not None:
            self._discard()
            return False
        try:
            for name, tmp, where in self._staged:
                if tmp is not None:
                    _replace(tmp, where, name)
                elif name == STDIO:
                    _write_stdout(where)
                else:
                    _write_in_place(name, where)
        except BaseException:
            self._discard()
            raise
        return False

    def _discard(self) -> None:
        for _, tmp, _ in self._staged:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        for folder in reversed(self._folders):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: nothing of anyone else's goes


def make_folder(path: Path) -> Path:
    """Create an output folder (and its parents); an OutputError if that fails."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {path} ({e.strerror or e})") from None
    return path


class _GuardedStream:
    """A text stream whose failed writes are StdoutErrors (see :func:`guarded_stdout`)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as e:
            raise _cannot_write("standard output", e, StdoutError) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            raise _cannot_write("standard output", e, StdoutError) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdout():
    """While a command runs, a failed write to standard output (a full disk, a closed pipe) is a
    StdoutError, whichever part of the command printed. When one ends the command, what is
    left of standard output goes to the null device, so that the flush at exit does not fail
    a second time."""
    stream = sys.stdout
    sys.stdout = _GuardedStream(stream)
    try:
        yield
        sys.stdout.flush()
    except StdoutError:
        _discard(stream)
        raise
    finally:
        sys.stdout = stream


class _QuietStream:
    """A text stream for messages: once a write fails (a full disk, a closed pipe) the rest of its
    writes go to the null device (see :func:`guarded_stderr`)."""

    def __init__(self, stream):
        self._stream = stream
        self.failed = False

    def write(self, text):
        if not self.failed:
            try:
                return self._stream.write(text)
            except OSError:
                self._fail()
        return len(text)

    def flush(self):
        if not self.failed:
            try:
                self._stream.flush()
            except OSError:
                self._fail()

    def _fail(self) -> None:
        self.failed = True
        _discard(self._stream)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stderr():
    """While a command runs, standard error that cannot be written (``2>/dev/full``) loses its
    messages and progress bars, not the command: the work and its outputs go on, and the exit
    status still says whether it succeeded."""
    stream = sys.stderr
    sys.stderr = _QuietStream(stream)
    try:
        yield
        sys.stderr.flush()
    finally:
        sys.stderr = stream


def _discard(stream) -> None:
    """Point ``stream``'s file descriptor at the null device (if it has one: not a test runner's capture)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def _cannot_write(what, e: OSError, kind: type[OutputError] = OutputError) -> OutputError:
    return kind(f"cannot write to {what} ({e.strerror or e})")


def _mode(path: Path) -> int | None:
    """The file type and permissions of what ``path`` names (through symlinks), None if nothing."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _cannot_write(path, e) from None


def _in_place(mode: int) -> bool:
    """Devices and FIFOs are written in place, never replaced."""
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _target(path: Path) -> Path:
    """The file a write to ``path`` replaces: a symlink's target, not the link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _is_terminal(path: Path) -> bool:
    """Whether ``path`` is a terminal; asked of character devices only (opening a FIFO waits
    for its reader)."""
    mode = _mode(path)
    if mode is None or not stat.S_ISCHR(mode):
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def _write_in_place(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)  # no O_CREAT: a node that went away is an error
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise _cannot_write(path, e) from None


def _write_stdout(data: bytes) -> None:
    out = sys.stdout.buffer
    try:
        out.write(data)
        out.flush()
    except OSError as e:
        raise _cannot_write("standard output", e, StdoutError) from None


def _stage(target: Path, data: bytes, name: Path) -> str:
    """``data`` in a temporary file beside ``target`` (its path returned); messages say ``name``."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        return tmp
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise _cannot_write(name, e) from None
        raise


def _replace(tmp: str, target: Path, name: Path) -> None:
    try:
        os.replace(tmp, target)
    except OSError as e:
        raise _cannot_write(name, e) from None


def png_bytes(image: torch.Tensor) -> bytes:
    """uint8 (C, H, W) with C = 1 or 3 → PNG bytes."""
    if image.ndim != 3 or image.dtype != torch.uint8 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected uint8 (1|3, H, W), got {tuple(image.shape)} {image.dtype}")
    array = image.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, image: torch.Tensor, force: bool = False) -> Path:
    return write_file(path, png_bytes(image), force)


def write_json(path: Path, doc: dict, force: bool = False) -> Path:
    return write_file(path, (json.dumps(doc, indent=1) + "\n").encode(), force)
