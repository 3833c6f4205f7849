"""Event-camera data: readers and writers of the CIFAR10-DVS forms, events to frames, the split,
the frame cache and the emulator of recordings from images.

    read_events(path) -> {"t", "x", "y", "p"}       (int64 numpy arrays, SpikingJelly's conventions)
    write_events(path, events, format="aedat")     (aedat | aedat3 | aedat4 | npz; atomic)
    write_events(path, events, format="aedat4", compression="lz4")   (none | lz4 | lz4_high | zstd | zstd_high)
    events_to_frames(events, T, split_by="number", sensor_size=(128, 128)) -> [T, 2, H, W]

Formats are recognised by their bytes: ``#!AER-DAT2.x`` (the CIFAR10-DVS release, see
:mod:`.aedat`), ``#!AER-DAT3.1``, ``#!AER-DAT4.0`` (DV; tonic's ``CIFAR10DVS`` copy, see
:mod:`.aedat4`), a ``.npz`` (zip) of SpikingJelly's ``events_np``.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from spikedistill.atomic import atomic_write
from spikedistill.data.events.aedat import encode_aedat2, encode_aedat3, read_aedat2, read_aedat3
from spikedistill.data.events.aedat4 import encode_aedat4, read_aedat4
from spikedistill.data.events.frames import SPLIT_BY, events_to_frames, resize_counts
from spikedistill.data.events.npz import encode_events_npz, read_events_npz
from spikedistill.errors import DataError

FORMATS = ("aedat", "aedat3", "aedat4", "npz")
SUFFIX = {"aedat": ".aedat", "aedat3": ".aedat", "aedat4": ".aedat4", "npz": ".npz"}


def decode_events(data: bytes, name: str = "<bytes>") -> Dict[str, np.ndarray]:
    """Events of the bytes of one recording in any supported format (module docstring)."""
    if data.startswith(b"#!AER-DAT2"):
        return read_aedat2(data, name)
    if data.startswith(b"#!AER-DAT3"):
        return read_aedat3(data, name)
    if data.startswith(b"#!AER-DAT4"):
        return read_aedat4(data, name)
    if data.startswith(b"PK"):
        return read_events_npz(data, name)
    raise DataError(f"{name}: unknown event file format (expected an AEDAT 2.0/3.1/4.0 header "
                    f"'#!AER-DAT2.0' / '#!AER-DAT3.1' / '#!AER-DAT4.0' or a SpikingJelly .npz), "
                    f"starts with {data[:12]!r}")


def read_events(path: os.PathLike, data: Optional[bytes] = None) -> Dict[str, np.ndarray]:
    """``{"t", "x", "y", "p"}`` of the recording at ``path`` (or of its bytes ``data``)."""
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise DataError(f"{path}: cannot read the event file ({exc.strerror})") from None
    return decode_events(data, str(path))


def encode_events(events: Dict[str, np.ndarray], format: str = "aedat", compression: str = "none") -> bytes:
    """The bytes of ``events`` as ``format``; ``compression`` (of the AEDAT 4.0 packets, see
    :mod:`.aedat4`) is for ``aedat4`` only."""
    if format != "aedat4" and str(compression).lower() != "none":
        raise DataError(f"compression {compression!r} is for format 'aedat4' only (format is {format!r})")
    if format == "aedat":
        return encode_aedat2(events)
    if format == "aedat3":
        return encode_aedat3(events)
    if format == "aedat4":
        return encode_aedat4(events, compression=compression)
    if format == "npz":
        return encode_events_npz(events)
    raise DataError(f"unknown event format {format!r} (expected one of {', '.join(FORMATS)})")


def write_events(path: os.PathLike, events: Dict[str, np.ndarray], format: str = "aedat",
                 compression: str = "none"):
    """Write ``events`` as ``format`` (AEDAT 4.0 packets compressed as ``compression``) to ``path``
    atomically; returns the path."""
    payload = encode_events(events, format, compression)
    return atomic_write(path, lambda handle: handle.write(payload))


__all__ = ["FORMATS", "SPLIT_BY", "decode_events", "encode_events", "events_to_frames",
           "read_events", "resize_counts", "write_events"]
