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
import zlib
from typing import Dict

import numpy as np

from spikedistill.data import limits
from spikedistill.errors import DataError

EVENT_KEYS = ("t", "x", "y", "p")
#: what zipfile / zlib / numpy.lib.format raise on corrupt bytes (each becomes one DataError)
_ZIP_ERRORS = (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
               NotImplementedError, TypeError, SyntaxError, KeyError, IndexError, OverflowError)


def _member_header(handle, name: str, key: str):
    """``(shape, fortran_order, dtype)`` the ``.npy`` header of member ``key`` declares (``numpy.lib.format``)."""
    version = np.lib.format.read_magic(handle)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    return read(handle)


def _read_arrays(data: bytes, name: str, keys) -> Dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` bytes ``data``: each member's declared shape and dtype
    are checked (numbers only, ``prod(shape) * itemsize`` within
    ``SPIKEDISTILL_MAX_MEMBER_BYTES``, :mod:`spikedistill.data.limits`) before its array is
    allocated; anything unreadable is one DataError naming the file and member."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise DataError(f"{name}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    out: Dict[str, np.ndarray] = {}
    with archive:
        members = {n[:-4] if n.endswith(".npy") else n: n for n in archive.namelist()}
        missing = [k for k in keys if k not in members]
        if missing:
            raise DataError(f"{name}: expected the arrays {', '.join(keys)}; missing "
                            f"{', '.join(missing)} (has {', '.join(members) or 'none'})")
        for key in keys:
            try:
                with archive.open(members[key]) as handle:
                    shape, fortran, dtype = _member_header(handle, name, key)
                    if dtype.kind not in "biuf" or dtype.hasobject:
                        raise DataError(f"{name}: array '{key}' has dtype {dtype}, expected numbers")
                    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    limits.check(f"{name}: array '{key}'", f"its declared size {tuple(shape)} x "
                                 f"{dtype.itemsize} B", declared, "SPIKEDISTILL_MAX_MEMBER_BYTES")
                    raw = handle.read(declared + 1)
                if len(raw) != declared:
                    raise ValueError(f"{len(raw)} bytes of data for a declared {declared}")
                out[key] = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")
            except DataError:
                raise
            except _ZIP_ERRORS as exc:
                raise DataError(f"{name}: truncated, corrupt or unsupported .npz member '{key}' "
                                f"({type(exc).__name__}: {exc})") from None
    return out


def read_events_npz(data: bytes, name: str = "<bytes>") -> Dict[str, np.ndarray]:
    """``t, x, y, p`` of a SpikingJelly ``events_np`` file (int64 arrays)."""
    arrays = _read_arrays(data, name, EVENT_KEYS)
    out = {k: arrays[k].astype(np.int64).reshape(-1) for k in EVENT_KEYS}
    if len({len(v) for v in out.values()}) != 1:
        raise DataError(f"{name}: t, x, y, p have different lengths "
                        f"{[len(out[k]) for k in EVENT_KEYS]}")
    limits.check(name, "the number of events", len(out["t"]), "SPIKEDISTILL_MAX_EVENTS")
    return out


def encode_events_npz(events: Dict[str, np.ndarray], compressed: bool = True) -> bytes:
    """Bytes of a SpikingJelly ``events_np`` file (``np.savez_compressed`` as its default)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(
        buf, **{k: np.asarray(events[k]) for k in EVENT_KEYS})
    return buf.getvalue()


def read_frames_npz(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """``frames`` ``[T, 2, H, W]`` of a SpikingJelly frames file."""
    frames = _read_arrays(data, name, ("frames",))["frames"]
    if frames.ndim != 4 or frames.shape[1] != 2:
        raise DataError(f"{name}: frames must be [T, 2, H, W], got shape {tuple(frames.shape)}")
    return frames


def encode_frames_npz(frames: np.ndarray, compressed: bool = True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, frames=np.asarray(frames))
    return buf.getvalue()
