"""Atomic file writes: nothing the package writes is ever left half-written under its name.

Every writer (checkpoints, the decoded-data cache, ``config.yaml``, ``metrics.csv``,
``teacher.json``, reports, compare results and charts, NIR files) goes through
:func:`atomic_write`: the bytes go to a temporary file ``.NAME.XXXXXXXX.tmp`` in the destination
folder, are flushed and ``fsync``-ed, then renamed over ``NAME`` with :func:`os.replace`. On any
failure, ``KeyboardInterrupt`` included, the temporary file is removed and the previous ``NAME``
(if any) is left untouched. A file-system error (a full disk, a read-only or missing folder) is
a :class:`WriteError`: one line naming the file and the error. The file gets the permissions a
plain ``open(NAME, "wb")`` would give it (:func:`plain_open_mode`: those of the file it replaces,
else ``0o666 & ~umask``), not the ``0600`` of :func:`tempfile.mkstemp`. Temporary files of a process
that was killed outright (``SIGKILL``, power loss) are what :func:`sweep_temp_files` removes.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, List, Optional, Union

from spikedistill.errors import SpikeDistillError

PathLike = Union[str, os.PathLike]

#: glob pattern of the temporary files :func:`atomic_write` creates
TEMP_GLOB = ".*.tmp"


class WriteError(SpikeDistillError, OSError):
    """A file could not be written (full disk, permissions, a folder that is a file, ...).

    Also an :class:`OSError` (``errno`` is the original one), so callers that treat a failed
    write as optional (the dataset cache) keep catching it as before.
    """

    def __init__(self, message: str, errno: Optional[int] = None):
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0])


def fsync_dir(directory: PathLike) -> None:
    """Flush a directory entry to disk (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _RecordingFile:
    """A binary file wrapper that remembers the first :class:`OSError` of ``write``: torch and
    numpy writers turn it into their own exceptions (``RuntimeError: ... file write failed``),
    and the cause (``ENOSPC``) is what the user needs to see."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            if self.error is None:
                self.error = exc
            raise

    def __getattr__(self, name):
        return getattr(self._handle, name)


def describe_os_error(exc: OSError) -> str:
    """``"No space left on device (ENOSPC)"``: the error of ``exc`` without its file name."""
    if exc.errno is not None:
        code = _errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{exc.strerror or os.strerror(exc.errno)} ({code})"
    return str(exc) or type(exc).__name__


def current_umask() -> int:
    """The process's umask: from ``/proc/self/status`` (Linux, no side effect), else by setting
    and restoring it (``os.umask``)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_open_mode(path: PathLike) -> int:
    """The permission bits ``open(path, "wb")`` leaves on ``path``: an existing file keeps its
    own, a new one gets ``0o666 & ~umask``."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(binary_file)`` on a temporary file and rename it over ``path``.

    Returns ``path``. Raises :class:`WriteError` (one line: the file and the error) when the
    file system refuses (``ENOSPC``, ``EACCES``, ``ENOTDIR``, ...); other exceptions of
    ``write`` propagate unchanged. The temporary file never survives a failure.
    """
    path = Path(path)
    tmp: Optional[str] = None
    recorder: Optional[_RecordingFile] = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                if hasattr(os, "fchmod"):
                    os.fchmod(handle.fileno(), plain_open_mode(path))
                recorder = _RecordingFile(handle)
                write(recorder)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            tmp = None
        except BaseException:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                tmp = None
            raise
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(f"cannot write '{path}': {describe_os_error(exc)}", exc.errno) from None
    except Exception:
        if recorder is not None and recorder.error is not None:
            cause = recorder.error
            raise WriteError(f"cannot write '{path}': {describe_os_error(cause)}", cause.errno) from None
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def list_temp_files(directory: PathLike) -> List[Path]:
    """Leftover temporary files of interrupted atomic writes directly in ``directory``."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob(TEMP_GLOB) if p.is_file())


def sweep_temp_files(directory: PathLike) -> List[Path]:
    """Remove the leftover temporary files of :func:`atomic_write` directly in ``directory``
    (a process killed mid-write leaves them) and return the ones removed. Call it only where no
    other live process writes (a run directory whose lock is held)."""
    removed = []
    for p in list_temp_files(directory):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed
