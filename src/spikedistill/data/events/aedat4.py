"""AEDAT 4.0 event files (iniVation DV; tonic's ``CIFAR10DVS`` copy), read and written byte for byte.

Layout (iniVation's "AEDAT 4.0" file format page; the flatbuffer schemas ``ioheader.fbs`` and
``events.fbs`` of DV / dv-processing, also in the ``aedat`` decoder of neuromorphicsystems that
tonic's ``read_aedat4`` uses). Every integer is **little-endian**:

1. the 14 bytes ``#!AER-DAT4.0\\r\\n``;
2. ``uint32 L`` and ``L`` bytes: the ``IOHeader`` flatbuffer (identifier ``IOHE``): table fields
   ``compression: int32 = 0`` (0 none, 1 LZ4, 2 LZ4_HIGH, 3 ZSTD, 4 ZSTD_HIGH),
   ``dataTablePosition: int64 = -1`` (file offset of a trailing data table, where the packets end),
   ``infoNode: string`` (XML: ``<dv><node name="outInfo"><node name="<stream id>">`` with
   ``<attr key="typeIdentifier">EVTS</attr>`` and an ``info`` node with ``sizeX``/``sizeY``);
3. packets until the data table or the end of the file: ``int32 stream_id, int32 size`` and
   ``size`` bytes, a **size-prefixed** flatbuffer (``uint32`` size, ``uint32`` root offset,
   the identifier ``EVTS`` at bytes 8..12), compressed as the header says;
4. an ``EventPacket`` table has one field ``elements: [Event]``; ``Event`` is a 16-byte struct
   ``int64 t (us), int16 x, int16 y, bool on`` (3 padding bytes).

A flatbuffer table at offset ``P`` starts with ``int32 s``; its vtable is at ``P - s``:
``uint16 vtable_size, uint16 table_size, uint16 field_offset[...]`` (0: field absent, its default
applies); an offset field holds a ``uint32`` relative to its own position; a vector is a ``uint32``
count followed by its elements; a string likewise, then a NUL. :func:`read_aedat4` follows these
rules for any writer's layout; :func:`encode_aedat4` writes one fixed, aligned layout.

Events come back as stored: ``x, y`` the sensor coordinates, ``p = on`` (1 ON, 0 OFF), which is
what tonic's ``CIFAR10DVS`` returns for its ``.aedat4`` files (``tonic/datasets/cifar10dvs.py``).
How tonic's copy maps the coordinates of the original AEDAT 2.0 release is not documented by
tonic; SpikingJelly does not read AEDAT 4.0.

Compression (the header's ``compression`` applies to every packet; the packet's ``size`` is that of
the compressed bytes). As dv-processing writes it (``io/compression/compression_support.hpp``,
``Lz4CompressionSupport`` / ``ZstdCompressionSupport``) and the ``aedat`` decoder reads it
(``lz4::Decoder`` / ``zstd::stream::Decoder`` over each packet), every packet is **one independent
frame**: LZ4 (1) an LZ4 *frame* (magic ``04 22 4D 18``; 64 KiB linked blocks, no content checksum,
no content size; level 0, LZ4_HIGH (2) the HC level 9), ZSTD (3) a zstd frame (magic
``28 B5 2F FD``; ``ZSTD_compressCCtx`` at level 3, ZSTD_HIGH (4) at ``ZSTD_maxCLevel()`` = 22).
Uncompressed files are decoded by this module alone; LZ4/ZSTD packets need the ``lz4`` /
``zstandard`` packages (the optional extra ``events``), else a DataError naming the package.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

import numpy as np

from spikedistill.data import limits
from spikedistill.errors import DataError

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION = {0: "none", 1: "LZ4", 2: "LZ4_HIGH", 3: "ZSTD", 4: "ZSTD_HIGH"}
EVENT_DTYPE = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                        "offsets": [0, 8, 10, 12], "itemsize": 16})


class _Buf:
    """Little-endian reads of a flatbuffer ``data`` (bounds-checked; ``name`` in errors)."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name

    def unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise DataError(f"{self.name}: truncated AEDAT 4.0 flatbuffer (offset {pos} of {len(self.data)})")
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def field(self, table: int, index: int) -> int:
        """Absolute position of field ``index`` of the table at ``table``, or 0 when absent."""
        vtable = table - self.unpack("i", table)
        vt_size = self.unpack("H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return 0
        off = self.unpack("H", vtable + slot)
        return table + off if off else 0

    def indirect(self, pos: int) -> int:
        return pos + self.unpack("I", pos)


def _parse_ioheader(buf: _Buf) -> Tuple[int, int, str]:
    root = buf.unpack("I", 0)
    f = buf.field(root, 0)
    compression = buf.unpack("i", f) if f else 0
    f = buf.field(root, 1)
    table_pos = buf.unpack("q", f) if f else -1
    f = buf.field(root, 2)
    info = ""
    if f:
        s = buf.indirect(f)
        n = buf.unpack("I", s)
        info = buf.data[s + 4:s + 4 + n].decode("utf-8", errors="replace")
    return compression, table_pos, info


def _size_attr(attrs: Dict[str, str], key: str, name: str) -> int:
    """The integer ``sizeX`` / ``sizeY`` of a stream's ``info`` node (0 when absent)."""
    text = (attrs.get(key) or "0").strip()
    if not re.fullmatch(r"\d{1,9}", text):
        raise DataError(f"{name}: the AEDAT 4.0 header's {key} is {text[:40]!r}, expected a "
                        "non-negative integer")
    return int(text)


def _event_streams(info: str, name: str) -> Dict[int, Tuple[int, int]]:
    """``{stream id: (sizeX, sizeY)}`` of the ``EVTS`` streams in the header's XML."""
    try:
        root = ET.fromstring(info)
    except ET.ParseError as exc:
        raise DataError(f"{name}: the AEDAT 4.0 header's stream description is not XML ({exc})") from None
    out = {}
    for outinfo in root.iter("node"):
        if outinfo.get("name") != "outInfo":
            continue
        for stream in outinfo.findall("node"):
            attrs = {a.get("key"): (a.text or "") for a in stream.findall("attr")}
            if attrs.get("typeIdentifier") != "EVTS" or not re.fullmatch(r"\d+", stream.get("name", "")):
                continue
            size = {}
            for node in stream.findall("node"):
                if node.get("name") == "info":
                    size = {a.get("key"): (a.text or "") for a in node.findall("attr")}
            out[int(stream.get("name"))] = tuple(_size_attr(size, k, name) for k in ("sizeX", "sizeY"))
    return out


COMPRESSION_NAMES = {"none": 0, "lz4": 1, "lz4_high": 2, "zstd": 3, "zstd_high": 4}
_PACKET_OVERHEAD = 4096       # bytes of a packet's flatbuffer besides its 16-byte events (generous)
_PACKAGE = {1: "lz4", 2: "lz4", 3: "zstandard", 4: "zstandard"}


def _codec(compression: int, name: str):
    """The module that (de)compresses ``compression`` packets: ``lz4.frame`` or ``zstandard``."""
    try:
        if compression in (1, 2):
            import lz4.frame
            return lz4.frame
        import zstandard
        return zstandard
    except ImportError:
        raise DataError(f"{name}: AEDAT 4.0 packets are {COMPRESSION[compression]}-compressed; "
                        f"install the optional package '{_PACKAGE[compression]}' "
                        f"(pip install 'spikedistill[events]') to read or write them") from None


def _decompress(payload: bytes, compression: int, name: str, pos: int = -1,
                bound: int = -1) -> bytes:
    """The flatbuffer of one packet: ``payload`` as is (0), or its one LZ4 / zstd frame decoded,
    refused (DataError) as soon as it would exceed ``bound`` bytes (-1: no bound). A zstd frame that
    declares its content size is checked before decoding; its bytes are then fed in slices of 16
    (at most four 128 KiB blocks each) so that the output never grows more than 512 KiB past
    ``bound``; LZ4 output is taken 16 MiB at a time."""
    if compression == 0:
        return payload
    if compression not in _PACKAGE:
        raise DataError(f"{name}: AEDAT 4.0 header names an unknown compression {compression}")
    codec = _codec(compression, name)
    where = f"the packet at byte {pos}" if pos >= 0 else "a packet"
    errors = (RuntimeError, ValueError) + ((codec.ZstdError,) if compression > 2 else ())

    def too_big(size: int) -> None:
        if bound >= 0 and size > bound:
            raise DataError(f"{name}: {where} decompresses to more than {bound:,} bytes, past the "
                            f"limit of {limits.max_events():,} events per recording (raise it with "
                            "the environment variable SPIKEDISTILL_MAX_EVENTS)")
    try:
        if compression in (1, 2):
            frame = codec.LZ4FrameDecompressor()
            chunks, size, data = [], 0, payload
            while not frame.eof:        # 16 MiB at a time: past the bound by 16 MiB at most
                piece = frame.decompress(data, max_length=1 << 24)
                data = b""
                chunks.append(piece)
                size += len(piece)
                too_big(size)
                if not piece and frame.needs_input:
                    raise ValueError("the LZ4 frame is incomplete")
            return b"".join(chunks)
        declared = codec.get_frame_parameters(payload).content_size
        if declared != codec.CONTENTSIZE_UNKNOWN:
            too_big(declared)
        obj = codec.ZstdDecompressor().decompressobj()
        chunks, size = [], 0
        for start in range(0, len(payload), 16):
            chunks.append(obj.decompress(payload[start:start + 16]))
            size += len(chunks[-1])
            too_big(size)
            if obj.eof:
                break
        if not obj.eof:
            raise ValueError("the zstd frame is incomplete")
        return b"".join(chunks)
    except errors as exc:
        raise DataError(f"{name}: {where} is not a valid {COMPRESSION[compression]} frame "
                        f"({exc})") from None


def _compress(payload: bytes, compression: int) -> bytes:
    """One independent frame of ``payload`` with dv-processing's settings (module docstring)."""
    if compression == 0:
        return payload
    codec = _codec(compression, "AEDAT 4.0 writer")
    if compression in (1, 2):
        # LZ4F_compressBegin / Update / End as dv-processing calls them (lz4.frame.compress, i.e.
        # LZ4F_compressFrame, would mark a one-block frame's blocks independent)
        frame = codec.LZ4FrameCompressor(block_size=codec.BLOCKSIZE_MAX64KB, block_linked=True,
                                         compression_level=0 if compression == 1 else 9,
                                         content_checksum=False, auto_flush=False)
        return frame.begin() + frame.compress(payload) + frame.flush()
    return codec.ZstdCompressor(level=3 if compression == 3 else 22).compress(payload)


def _packet_events(payload: bytes, name: str) -> np.ndarray:
    buf = _Buf(payload, name)
    if payload[8:12] != b"EVTS":
        raise DataError(f"{name}: an AEDAT 4.0 event packet lacks the identifier 'EVTS' "
                        f"(got {payload[8:12]!r})")
    root = 4 + buf.unpack("I", 4)
    f = buf.field(root, 0)
    if not f:
        return np.zeros(0, EVENT_DTYPE)
    vec = buf.indirect(f)
    n = buf.unpack("I", vec)
    if vec + 4 + 16 * n > len(payload):
        raise DataError(f"{name}: an AEDAT 4.0 event packet says {n} events but holds "
                        f"{(len(payload) - vec - 4) // 16}")
    return np.frombuffer(payload, EVENT_DTYPE, count=n, offset=vec + 4).copy()


def read_aedat4(data: bytes, name: str = "<bytes>") -> Dict[str, np.ndarray]:
    """``{"t", "x", "y", "p"}`` (int64) of every event packet of an AEDAT 4.0 file (module docstring)."""
    if not data.startswith(AEDAT4_MAGIC):
        raise DataError(f"{name}: not an AEDAT 4.0 file (expected {AEDAT4_MAGIC!r}, got {data[:14]!r})")
    pos = len(AEDAT4_MAGIC)
    if pos + 4 > len(data):
        raise DataError(f"{name}: truncated AEDAT 4.0 header")
    size = struct.unpack_from("<I", data, pos)[0]
    header = data[pos + 4:pos + 4 + size]
    if len(header) != size:
        raise DataError(f"{name}: truncated AEDAT 4.0 header ({len(header)} of {size} bytes)")
    compression, table_pos, info = _parse_ioheader(_Buf(header, name))
    if compression not in COMPRESSION:
        raise DataError(f"{name}: AEDAT 4.0 header names an unknown compression {compression}")
    streams = _event_streams(info, name)
    if not streams:
        raise DataError(f"{name}: the AEDAT 4.0 header describes no event stream (typeIdentifier EVTS)")
    end = table_pos if table_pos > -1 else len(data)
    pos += 4 + size
    parts: List[np.ndarray] = []
    total, most = 0, limits.max_events()
    while pos < end:
        if pos + 8 > len(data):
            raise DataError(f"{name}: truncated AEDAT 4.0 packet header at byte {pos}")
        stream_id, n = struct.unpack_from("<iI", data, pos)
        payload = data[pos + 8:pos + 8 + n]
        if len(payload) != n:
            raise DataError(f"{name}: truncated AEDAT 4.0 packet at byte {pos} ({len(payload)} of {n} bytes)")
        pos += 8 + n
        if stream_id in streams:
            bound = 16 * (most - total) + _PACKET_OVERHEAD
            parts.append(_packet_events(_decompress(payload, compression, name, pos - 8 - n, bound), name))
            total += len(parts[-1])
            limits.check(name, "the number of AEDAT 4.0 events", total, "SPIKEDISTILL_MAX_EVENTS")
    ev = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
    return {"t": ev["t"].astype(np.int64), "x": ev["x"].astype(np.int64), "y": ev["y"].astype(np.int64),
            "p": ev["on"].astype(np.int64)}


def _info_xml(width: int, height: int, compression: int = 0) -> str:
    p = "/mainModule/output/0/"
    return (f'<dv version="2.0"><node name="outInfo" path="/mainModule/output/"><node name="0" path="{p}">'
            f'<attr key="compression" type="string">{COMPRESSION[compression].upper()}</attr>'
            '<attr key="originalModuleName" type="string">spikedistill</attr>'
            '<attr key="originalOutputName" type="string">events</attr>'
            '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
            '<attr key="typeIdentifier" type="string">EVTS</attr>'
            f'<node name="info" path="{p}info/"><attr key="sizeX" type="int">{int(width)}</attr>'
            f'<attr key="sizeY" type="int">{int(height)}</attr>'
            '<attr key="source" type="string">spikedistill</attr></node></node></node></dv>')


def encode_ioheader(info: str, compression: int = 0, table_pos: int = -1) -> bytes:
    """The ``IOHeader`` flatbuffer: root offset, ``IOHE``, a 10-byte vtable (3 fields), the
    table at 24 (``int32 soffset, int32 compression, int64 dataTablePosition, uint32 -> infoNode``),
    then the string; padded to 8 bytes."""
    text = info.encode("utf-8")
    vtable = struct.pack("<5H", 10, 20, 4, 8, 16)
    head = struct.pack("<I", 24) + b"IOHE" + vtable + b"\0" * 6        # 24 bytes
    table = struct.pack("<iiqI", 24 - 8, int(compression), int(table_pos), 44 - 40)
    string = struct.pack("<I", len(text)) + text + b"\0"
    out = head + table + string
    return out + b"\0" * (-len(out) % 8)


def encode_event_packet(ev: np.ndarray) -> bytes:
    """A size-prefixed ``EventPacket`` flatbuffer of the structured events ``ev``
    (:data:`EVENT_DTYPE`): ``uint32`` size, root offset 16, ``EVTS``, the vtable ``(6, 8, 4)`` at 12,
    the table at 20 (``int32 8``, ``uint32 4``), the vector at 28, its 16-byte events from 32."""
    body = (struct.pack("<I", 16) + b"EVTS" + struct.pack("<3H", 6, 8, 4) + b"\0\0"
            + struct.pack("<iI", 20 - 12, 28 - 24) + struct.pack("<I", len(ev)) + ev.tobytes())
    return struct.pack("<I", len(body)) + body


def compression_code(compression) -> int:
    """The header's ``compression`` enum of a name (``none | lz4 | lz4_high | zstd | zstd_high``)."""
    key = str(compression).lower()
    if key not in COMPRESSION_NAMES:
        raise DataError(f"unknown AEDAT 4.0 compression {compression!r} "
                        f"(expected one of {', '.join(COMPRESSION_NAMES)})")
    return COMPRESSION_NAMES[key]


def encode_aedat4(events: Dict[str, np.ndarray], *, sensor_size: Tuple[int, int] = (128, 128),
                  packet_events: int = 4096, compression: str = "none") -> bytes:
    """AEDAT 4.0 bytes of ``events`` (``x, y, p`` as stored, ``on = p``) in packets of up to
    ``packet_events`` events of stream 0, each packet compressed on its own as ``compression``
    says (``none | lz4 | lz4_high | zstd | zstd_high``: the header's enum 0..4, module docstring)."""
    code = compression_code(compression)
    if code:
        _codec(code, "AEDAT 4.0 writer")                  # fail before any work without the package
    n = len(events["t"])
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.asarray(events["t"], np.int64)
    for k in ("x", "y"):
        v = np.asarray(events[k], np.int64)
        if n and (v.min() < 0 or v.max() > 32767):
            raise DataError(f"AEDAT 4.0 stores {k} as int16; got values in [{v.min()}, {v.max()}]")
        ev[k] = v
    ev["on"] = np.asarray(events["p"], np.int64) != 0
    width, height = sensor_size
    header = encode_ioheader(_info_xml(width, height, code), compression=code)
    out = [AEDAT4_MAGIC, struct.pack("<I", len(header)), header]
    for start in range(0, n, max(1, int(packet_events))):
        payload = _compress(encode_event_packet(ev[start:start + packet_events]), code)
        out.append(struct.pack("<iI", 0, len(payload)) + payload)
    return b"".join(out)
