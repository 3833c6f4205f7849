"""SpikingJelly's converted CIFAR10-DVS files.

``events_np/<class>/<stem>.npz``: ``t, x, y, p`` (SpikingJelly's ``_read_aedat_save_to_np``
writes them with ``np.savez_compressed`` by default, ``datasets/utils.py: np_savez``), already in
the conventions of its AEDAT reader. ``frames_number_<T>_split_by_<how>/<class>/<stem>.npz`` (and
``duration_<D>/``): key ``frames``, ``[T, 2, H, W]`` float event counts of
``integrate_events_by_fixed_frames_number``.
"""

from __future__ import annotations

import io
import zipfile
from typing import Dict

import numpy as np

from spikedistill.errors import DataError

EVENT_KEYS = ("t", "x", "y", "p")


def _load(data: bytes, name: str):
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{name}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def read_events_npz(data: bytes, name: str = "<bytes>") -> Dict[str, np.ndarray]:
    """``t, x, y, p`` of a SpikingJelly ``events_np`` file (int64 arrays)."""
    npz = _load(data, name)
    with npz:
        missing = [k for k in EVENT_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{name}: an events .npz needs the arrays t, x, y, p; missing "
                            f"{', '.join(missing)} (has {', '.join(npz.files) or 'none'})")
        try:
            out = {k: np.asarray(npz[k]).astype(np.int64).reshape(-1) for k in EVENT_KEYS}
        except (ValueError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DataError(f"{name}: truncated or corrupt .npz ({type(exc).__name__}: {exc})") from None
    if len({len(v) for v in out.values()}) != 1:
        raise DataError(f"{name}: t, x, y, p have different lengths "
                        f"{[len(out[k]) for k in EVENT_KEYS]}")
    return out


def encode_events_npz(events: Dict[str, np.ndarray], compressed: bool = True) -> bytes:
    """Bytes of a SpikingJelly ``events_np`` file (``np.savez_compressed`` as its default)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(
        buf, **{k: np.asarray(events[k]) for k in EVENT_KEYS})
    return buf.getvalue()


def read_frames_npz(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """``frames`` ``[T, 2, H, W]`` of a SpikingJelly frames file."""
    npz = _load(data, name)
    with npz:
        if "frames" not in npz.files:
            raise DataError(f"{name}: a SpikingJelly frames .npz holds the array 'frames'; "
                            f"this one has {', '.join(npz.files) or 'none'}")
        try:
            frames = np.asarray(npz["frames"])
        except (ValueError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DataError(f"{name}: truncated or corrupt .npz ({type(exc).__name__}: {exc})") from None
    if frames.ndim != 4 or frames.shape[1] != 2:
        raise DataError(f"{name}: frames must be [T, 2, H, W], got shape {tuple(frames.shape)}")
    return frames


def encode_frames_npz(frames: np.ndarray, compressed: bool = True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, frames=np.asarray(frames))
    return buf.getvalue()
