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

import numpy as np

from spikedistill.atomic import atomic_write
from spikedistill.data.readers import RawDataset

CACHE_ENV = "SPIKEDISTILL_CACHE"
CACHE_FORMAT = 1
_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


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


def load_cached(path: Path, key: str) -> RawDataset | None:
    """Return the cached dataset at ``path`` if it exists, is intact and was made for ``key``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            arrays = {name: npz[name] for name in _ARRAYS}
            class_names = [str(c) for c in npz["class_names"].tolist()]
        if arrays["train_images"].dtype != np.uint8 or arrays["test_images"].dtype != np.uint8:
            raise ValueError("images are not uint8")
        return RawDataset(class_names=class_names, source=str(path), **arrays)
    except Exception as exc:  # corrupt, truncated, wrong fields: rebuild
        warnings.warn(f"ignoring unreadable dataset cache {path} ({type(exc).__name__}: {exc}); rebuilding it",
                      stacklevel=2)
        return None


def save_cached(path: Path, key: str, data: RawDataset) -> None:
    """Write ``data`` to ``path`` atomically (:func:`spikedistill.atomic.atomic_write`);
    failures only warn."""
    def write(handle):
        np.savez(handle, key=np.array(key), class_names=np.array(data.class_names, dtype=str),
                 **{name: getattr(data, name) for name in _ARRAYS})

    try:
        atomic_write(path, write)
    except (OSError, zipfile.BadZipFile) as exc:
        warnings.warn(f"could not write dataset cache {path}: {exc}", stacklevel=2)
