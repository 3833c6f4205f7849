"""Decode-once cache of datasets as uncompressed ``.npz`` files of uint8 arrays.

A cache entry is keyed by a fingerprint of the source (resolved path, size and mtime of the file;
for a folder the relative path, size and mtime of every file in it) plus the reader options that
change the pixels (e.g. ``image_size``). Entries are written atomically (a temp file in the same
folder, then ``os.replace``), so a crash never leaves a half-written entry under the final name.
An entry that cannot be read, has the wrong fields/dtypes, or carries another fingerprint is
ignored (and overwritten by the rebuilt one).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional, TypeVar

import numpy as np

from spikedistill.atomic import atomic_write
from spikedistill.data.readers import RawDataset

CACHE_ENV = "SPIKEDISTILL_CACHE"
CACHE_FORMAT = 1
_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$SPIKEDISTILL_CACHE`` if set, else ``~/.cache/spikedistill``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spikedistill"


def fingerprint(path: str | os.PathLike, **options) -> str:
    """A stable description of ``path``'s current content identity plus ``options``.

    For a file: resolved path, size, mtime (ns). For a folder: the same for every file below it
    (sorted), so adding, removing or touching any image changes the fingerprint.
    """
    path = Path(path).resolve()
    st = path.stat()
    parts: dict = {"format": CACHE_FORMAT, "path": str(path), "options": options}
    if path.is_dir():
        files = []
        for dirpath, _, names in os.walk(path):
            for name in names:
                f = Path(dirpath) / name
                fst = f.stat()
                files.append((f.relative_to(path).as_posix(), fst.st_size, fst.st_mtime_ns))
        files.sort()
        parts["files"] = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    else:
        parts["size"] = st.st_size
        parts["mtime_ns"] = st.st_mtime_ns
    return json.dumps(parts, sort_keys=True)


def cache_path(cache_dir: str | os.PathLike, tag: str, key: str) -> Path:
    """File name of the entry for ``key``: ``<cache_dir>/<tag>-<sha256(key)[:20]>.npz``."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / f"{tag}-{digest}.npz"


def load_entry(path: Path, key: str, what: str, build: Callable[[Dict[str, np.ndarray]], T]
               ) -> Optional[T]:
    """``build(arrays)`` of the ``.npz`` entry at ``path`` (every field but ``key``) if it exists
    and was made for ``key``; None otherwise. An entry that cannot be read or that ``build``
    rejects (any exception) is ignored with a warning naming ``what`` and the file: it is
    rebuilt."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            arrays = {name: npz[name] for name in npz.files if name != "key"}
        return build(arrays)
    except Exception as exc:  # corrupt, truncated, wrong fields: rebuild
        warnings.warn(f"ignoring unreadable {what} {path} ({type(exc).__name__}: {exc}); rebuilding it",
                      stacklevel=3)
        return None


def save_entry(path: Path, key: str, what: str, **arrays) -> None:
    """Write ``arrays`` and ``key`` to ``path`` as one ``.npz`` atomically
    (:func:`spikedistill.atomic.atomic_write`); failures only warn, naming ``what``."""
    def write(handle):
        np.savez(handle, key=np.array(key), **arrays)

    try:
        atomic_write(path, write)
    except (OSError, zipfile.BadZipFile) as exc:
        warnings.warn(f"could not write {what} {path}: {exc}", stacklevel=3)


def load_cached(path: Path, key: str) -> RawDataset | None:
    """Return the cached dataset at ``path`` if it exists, is intact and was made for ``key``."""
    def build(arrays):
        if arrays["train_images"].dtype != np.uint8 or arrays["test_images"].dtype != np.uint8:
            raise ValueError("images are not uint8")
        return RawDataset(class_names=[str(c) for c in arrays["class_names"].tolist()],
                          source=str(path), **{name: arrays[name] for name in _ARRAYS})

    return load_entry(path, key, "dataset cache", build)


def save_cached(path: Path, key: str, data: RawDataset) -> None:
    """Write ``data`` to ``path`` atomically (:func:`save_entry`); failures only warn."""
    save_entry(path, key, "dataset cache", class_names=np.array(data.class_names, dtype=str),
               **{name: getattr(data, name) for name in _ARRAYS})
