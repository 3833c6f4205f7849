"""AEDAT 2.0 and 3.1 event files (jAER / iniVation), read and written byte for byte.

**AEDAT 2.0** (the CIFAR10-DVS release of Li et al. 2017, "CIFAR10-DVS: an event-stream dataset
for object classification", Front. Neurosci. 11:309; recorded with jAER on a DVS128): an ASCII
header of lines starting with ``#`` (the first is ``#!AER-DAT2.0``), then 8 bytes per event, two
**big-endian** unsigned 32-bit words: the address, then the timestamp in microseconds. The
DVS128 address of CIFAR10-DVS has ``p_raw = a & 0x1``, ``x_raw = (a & 0xFE) >> 1``,
``y_raw = (a & 0x7F00) >> 8``; SpikingJelly's reader (``spikingjelly/datasets/cifar10_dvs.py``,
``_load_origin_data``) turns them into ``x = 127 - y_raw``, ``y = 127 - x_raw``,
``p = 1 - p_raw``, and so does :func:`read_aedat2`: the conventions of every event this package
returns. The header is skipped as SpikingJelly does: lines are consumed while their stripped
text starts with ``#``.

**AEDAT 3.1** (cAER / DV): an ASCII header ending with ``#!END-HEADER\\r\\n``, then packets of a
28-byte little-endian header (``int16 type, int16 source, int32 event_size, int32 ts_offset,
int32 ts_overflow, int32 capacity, int32 number, int32 valid``) and ``capacity * event_size``
bytes of events; polarity events (type 1, 8 bytes) are ``uint32 data`` (bit 0 valid, bit 1
polarity, bits 2-16 y, bits 17-31 x) and ``int32 t``, full time ``t | ts_overflow << 31``.
:func:`read_aedat3` returns ``x, y, p`` as stored (no flips), as SpikingJelly's
``datasets.utils.load_aedat_v3`` does (it, too, keeps invalid events).
"""

from __future__ import annotations

import os
import struct
from typing import Dict

import numpy as np

from spikedistill.data import limits
from spikedistill.errors import DataError

AEDAT2_MAGIC = b"#!AER-DAT2.0"
AEDAT3_MAGIC = b"#!AER-DAT3.1"
AEDAT3_END = b"#!END-HEADER\r\n"
AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
    b"# created by spikedistill (emulated events)\r\n"
)
SENSOR = 128
_PACKET = struct.Struct("<hhiiiiii")


def _header_end(data: bytes) -> int:
    """Byte offset of the first event after the ``#`` lines (SpikingJelly's ``_skip_header``)."""
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        line = data[pos:] if nl < 0 else data[pos:nl + 1]
        try:
            text = line.decode().strip()
        except UnicodeDecodeError:
            break
        if not text or text[0] != "#":
            break
        pos += len(line)
    return pos


def read_aedat2(data: bytes, name: str = "<bytes>") -> Dict[str, np.ndarray]:
    """Events of an AEDAT 2.0 CIFAR10-DVS recording: ``t`` (us), ``x``, ``y``, ``p`` in
    SpikingJelly's conventions (see the module docstring). DataError on another format or a
    truncated body."""
    if not data.startswith(b"#!AER-DAT2"):
        raise DataError(f"{name}: not an AEDAT 2.0 file (expected the header line "
                        f"'#!AER-DAT2.0', got {data[:16]!r})")
    start = _header_end(data)
    body = len(data) - start
    if body % 8:
        raise DataError(f"{name}: truncated AEDAT 2.0 file ({body} bytes of events after the "
                        "header is not a whole number of 8-byte events)")
    limits.check(name, "the number of AEDAT 2.0 events", body // 8, "SPIKEDISTILL_MAX_EVENTS")
    words = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2)
    addr, t = words[:, 0], words[:, 1]
    x_raw = (addr & 0xFE) >> 1
    y_raw = (addr & 0x7F00) >> 8
    p_raw = addr & 0x1
    return {"t": t.astype(np.int64), "x": (127 - y_raw.astype(np.int64)),
            "y": (127 - x_raw.astype(np.int64)), "p": (1 - p_raw.astype(np.int64))}


def encode_aedat2(events: Dict[str, np.ndarray]) -> bytes:
    """Bytes of an AEDAT 2.0 file holding ``events`` (SpikingJelly conventions; the inverse of
    :func:`read_aedat2`: ``x_raw = 127 - y``, ``y_raw = 127 - x``, ``p_raw = 1 - p``)."""
    t, x, y, p = (np.asarray(events[k]).astype(np.int64) for k in "txyp")
    if len(t) and (x.min() < 0 or x.max() > 127 or y.min() < 0 or y.max() > 127):
        raise DataError("AEDAT 2.0 (DVS128) events need 0 <= x, y <= 127")
    if len(t) and (t.min() < 0 or t.max() >= 2 ** 32):
        raise DataError("AEDAT 2.0 timestamps are unsigned 32-bit microseconds")
    addr = ((127 - x) << 8) | ((127 - y) << 1) | (1 - (p != 0).astype(np.int64))
    words = np.empty((len(t), 2), dtype=">u4")
    words[:, 0], words[:, 1] = addr, t
    return AEDAT2_HEADER + words.tobytes()


def read_aedat3(data: bytes, name: str = "<bytes>") -> Dict[str, np.ndarray]:
    """Polarity events of an AEDAT 3.1 file, ``x, y, p`` as stored, ``t`` in us."""
    if not data.startswith(AEDAT3_MAGIC):
        raise DataError(f"{name}: not an AEDAT 3.1 file (expected '#!AER-DAT3.1', got {data[:16]!r})")
    end = data.find(AEDAT3_END)
    if end < 0:
        raise DataError(f"{name}: AEDAT 3.1 header has no '#!END-HEADER' line")
    pos = end + len(AEDAT3_END)
    parts = {k: [] for k in "txyp"}
    total = 0
    while pos < len(data):
        if len(data) - pos < _PACKET.size:
            raise DataError(f"{name}: truncated AEDAT 3.1 packet header at byte {pos}")
        e_type, _, e_size, _, overflow, capacity, _, _ = _PACKET.unpack_from(data, pos)
        if capacity < 0 or e_size <= 0 or (e_type == 1 and e_size < 8):
            raise DataError(f"{name}: corrupt AEDAT 3.1 packet header at byte {pos} (capacity "
                            f"{capacity}, event size {e_size} bytes; expected capacity >= 0 and "
                            f"event size >= {8 if e_type == 1 else 1})")
        pos += _PACKET.size
        length = capacity * e_size
        if len(data) - pos < length:
            raise DataError(f"{name}: truncated AEDAT 3.1 packet at byte {pos} "
                            f"({capacity} events of {e_size} bytes announced)")
        if e_type == 1:
            rec = np.frombuffer(data, dtype=np.dtype([("d", "<u4"), ("t", "<u4")] +
                                                      ([("pad", f"V{e_size - 8}")] if e_size > 8 else [])),
                                count=capacity, offset=pos)
            d = rec["d"].astype(np.int64)
            parts["x"].append((d >> 17) & 0x7FFF)
            parts["y"].append((d >> 2) & 0x7FFF)
            parts["p"].append((d >> 1) & 0x1)
            parts["t"].append(rec["t"].astype(np.int64) | (int(overflow) << 31))
            total += capacity
            limits.check(name, "the number of AEDAT 3.1 events", total, "SPIKEDISTILL_MAX_EVENTS")
        pos += length
    return {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in parts.items()}


def encode_aedat3(events: Dict[str, np.ndarray], packet_events: int = 4096) -> bytes:
    """Bytes of an AEDAT 3.1 file of polarity packets (all events valid, ``x, y, p`` as given;
    ``t`` split into ``ts_overflow << 31 | t31``; a packet never spans two overflow epochs)."""
    t, x, y, p = (np.asarray(events[k]).astype(np.int64) for k in "txyp")
    out = [AEDAT3_MAGIC + b"\r\n", b"#Format: RAW\r\n", b"#Source 1: emulated (spikedistill)\r\n",
           AEDAT3_END]
    overflow = t >> 31
    start = 0
    while start < len(t):
        stop = min(start + packet_events, len(t))
        same = np.flatnonzero(overflow[start:stop] != overflow[start])
        if len(same):
            stop = start + int(same[0])
        n = stop - start
        rec = np.empty(n, dtype=[("d", "<u4"), ("t", "<u4")])
        rec["d"] = (x[start:stop] << 17) | (y[start:stop] << 2) | ((p[start:stop] != 0) << 1) | 1
        rec["t"] = t[start:stop] & 0x7FFFFFFF
        out.append(_PACKET.pack(1, 1, 8, 4, int(overflow[start]), n, n, n) + rec.tobytes())
        start = stop
    return b"".join(out)


def read_file_bytes(path: os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()
