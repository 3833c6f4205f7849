"""Atomic file writes: nothing the package writes is ever left half-written under its name.

Every writer (checkpoints, the decoded-data cache, ``config.yaml``, ``metrics.csv``, compare
results and charts) goes through :func:`atomic_write`: the bytes go to a temporary file
``.NAME.XXXX.tmp`` in the destination folder, are flushed and ``fsync``-ed, then renamed over
``NAME`` with :func:`os.replace`. On any failure the temporary file is removed and the previous
``NAME`` (if any) is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathLike = Union[str, os.PathLike]


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


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(binary_file)`` on a temporary file and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
