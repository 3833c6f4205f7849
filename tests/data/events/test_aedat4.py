"""AEDAT 4.0 (DV / tonic's CIFAR10DVS copy): bytes laid out by hand, round trips, a reader that
follows the flatbuffer vtables of another writer's layout, and the ``aedat`` decoder (the one
tonic's ``read_aedat4`` uses) on the same files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikedistill.data import load_dataset
from spikedistill.data.events import read_events, write_events
from spikedistill.data.events.aedat4 import encode_aedat4, read_aedat4
from spikedistill.errors import DataError

MAGIC = b"#!AER-DAT4.0\r\n"
XML = ('<dv version="2.0"><node name="outInfo" path="/mainModule/output/">'
       '<node name="3" path="/mainModule/output/3/"><attr key="typeIdentifier" type="string">TRIG</attr></node>'
       '<node name="7" path="/mainModule/output/7/"><attr key="typeIdentifier" type="string">EVTS</attr>'
       '<node name="info" path="/mainModule/output/7/info/"><attr key="sizeX" type="int">128</attr>'
       '<attr key="sizeY" type="int">128</attr></node></node></node></dv>')


def _events(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"t": np.sort(rng.integers(0, 2_000_000, n)), "x": rng.integers(0, 128, n),
            "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)}


def test_the_bytes_of_a_two_event_file_laid_out_by_hand():
    ev = {"t": [5, 1 << 40], "x": [1, 127], "y": [2, 0], "p": [1, 0]}
    got = encode_aedat4(ev)
    assert got[:14] == MAGIC
    (hsize,) = struct.unpack_from("<I", got, 14)
    header = got[18:18 + hsize]
    # IOHeader: root uoffset 24, "IOHE", vtable (10, 20 | 4, 8, 16) at 8, table at 24: soffset 16,
    # compression 0, dataTablePosition -1, uoffset 4 -> the XML string at 44
    assert header[:8] == b"\x18\x00\x00\x00IOHE"
    assert header[8:18] == bytes([10, 0, 20, 0, 4, 0, 8, 0, 16, 0])
    assert header[24:44] == (b"\x10\x00\x00\x00" + b"\x00" * 4 + b"\xff" * 8 + b"\x04\x00\x00\x00")
    (xml_len,) = struct.unpack_from("<I", header, 44)
    assert b"typeIdentifier" in header[48:48 + xml_len] and header[48 + xml_len] == 0
    assert hsize % 8 == 0
    packet = got[18 + hsize:]
    # stream 0, 8 + 16 + 4 + 2 * 16 = 64 payload bytes: size prefix 60, root 16, "EVTS",
    # vtable (6, 8 | 4), table (soffset 8, uoffset 4), count 2, then t int64, x int16, y int16, on, pad
    assert packet[:8] == b"\x00\x00\x00\x00\x40\x00\x00\x00"
    want = (b"\x3c\x00\x00\x00" + b"\x10\x00\x00\x00" + b"EVTS" + b"\x06\x00\x08\x00\x04\x00\x00\x00"
            + b"\x08\x00\x00\x00" + b"\x04\x00\x00\x00" + b"\x02\x00\x00\x00"
            + b"\x05" + b"\x00" * 7 + b"\x01\x00" + b"\x02\x00" + b"\x01" + b"\x00" * 3
            + b"\x00" * 5 + b"\x01" + b"\x00" * 2 + b"\x7f\x00" + b"\x00\x00" + b"\x00" + b"\x00" * 3)
    assert packet[8:] == want
    back = read_aedat4(got)
    assert back["t"].tolist() == [5, 1 << 40] and back["x"].tolist() == [1, 127]
    assert back["y"].tolist() == [2, 0] and back["p"].tolist() == [1, 0]


def _other_writer_file(ev):
    """An AEDAT 4.0 file in a layout unlike ours: IOHeader with its vtable *after* the table and
    the fields in another order, a stream-3 (trigger) packet skipped by the reader, event packets
    of stream 7 whose vtable follows the table and has a trailing absent slot, and a data table
    at ``dataTablePosition`` (garbage here) where the packets end."""
    from spikedistill.data.events.aedat4 import EVENT_DTYPE

    text = XML.encode()
    # IOHeader: root -> table at 8; soffset 8 - 24 (the vtable after the table); the infoNode
    # uoffset at +4 (-> 36), dataTablePosition (int64) at +8; the compression slot absent (0)
    body = bytearray(struct.pack("<I", 8) + b"IOHE")
    body += struct.pack("<i", 8 - 24) + struct.pack("<I", 36 - 12) + struct.pack("<q", -1)
    body += struct.pack("<5H", 10, 16, 0, 8, 4) + b"\0\0"
    assert len(body) == 36
    body += struct.pack("<I", len(text)) + text + b"\0"
    body += b"\0" * (-len(body) % 8)

    def event_payload(chunk, ident=b"EVTS"):
        # size-prefixed: 0 size, 4 root (-> 12), 8 EVTS, 12 table (vtable after the events, with
        # a second, absent slot), 16 the vector's uoffset (-> 28), 28 count, 32 the events
        n = len(chunk)
        table, field, count = 12, 16, 28
        vt = count + 4 + 16 * n
        b = bytearray(8)
        b[4:8] = struct.pack("<I", table - 4)
        b += ident
        b += struct.pack("<i", table - vt) + struct.pack("<I", count - field) + b"\0" * 8
        assert len(b) == count
        b += struct.pack("<I", n) + chunk.tobytes()
        b += struct.pack("<4H", 8, 8, 4, 0)
        b[0:4] = struct.pack("<I", len(b) - 4)
        return bytes(b)

    arr = np.zeros(len(ev["t"]), EVENT_DTYPE)
    arr["t"], arr["x"], arr["y"], arr["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
    out = bytearray(MAGIC + struct.pack("<I", len(body)) + bytes(body))
    # a trigger packet (stream 3, "TRIG"): one 16-byte Trigger (int64 t, int8 source), skipped
    trig = event_payload(np.zeros(1, EVENT_DTYPE), b"TRIG")
    out += struct.pack("<iI", 3, len(trig)) + trig
    half = len(arr) // 2
    for chunk in (arr[:half], arr[half:]):
        p = event_payload(chunk)
        out += struct.pack("<iI", 7, len(p)) + p
    table_pos = len(out)
    out += b"\xde\xad\xbe\xef" * 4                         # the data table: not packets
    # dataTablePosition sits at the IOHeader's table (8) + 8, after the magic and the length
    out[18 + 16:18 + 24] = struct.pack("<q", table_pos)
    return bytes(out)


def test_the_reader_follows_the_vtables_of_another_layout_and_stops_at_the_data_table():
    ev = _events(37, seed=1)
    data = _other_writer_file(ev)
    got = read_aedat4(data, "other.aedat4")
    for k in "txyp":
        assert np.array_equal(got[k], np.asarray(ev[k], np.int64)), k


def test_round_trip_through_write_and_read_events_in_several_packets(tmp_path):
    ev = _events(10_000, seed=2)
    path = write_events(tmp_path / "r.aedat4", ev, format="aedat4")
    data = path.read_bytes()
    hsize = struct.unpack_from("<I", data, 14)[0]
    assert data.startswith(MAGIC) and data[18 + hsize:].count(b"EVTS") == 3      # 4096 + 4096 + 1808
    got = read_events(path)
    for k in "txyp":
        assert np.array_equal(got[k], ev[k]), k
    empty = read_aedat4(encode_aedat4({k: np.zeros(0, np.int64) for k in "txyp"}))
    assert all(len(v) == 0 for v in empty.values())


def test_same_events_as_the_aedat_decoder_that_tonic_uses(tmp_path):
    aedat = pytest.importorskip("aedat")
    ev = _events(5_000, seed=3)
    files = {"ours": write_events(tmp_path / "ours.aedat4", ev, format="aedat4")}
    other = tmp_path / "other.aedat4"
    other.write_bytes(_other_writer_file(ev))
    files["other"] = other
    for what, path in files.items():
        packets = [p["events"] for p in aedat.Decoder(str(path)) if "events" in p]
        peer = np.concatenate(packets)
        ours = read_events(path)
        assert len(peer) == len(ours["t"]) == 5_000, what
        assert np.array_equal(peer["t"], ours["t"]) and np.array_equal(peer["x"], ours["x"]), what
        assert np.array_equal(peer["y"], ours["y"]), what
        assert np.array_equal(peer["on"].astype(np.int64), ours["p"]), what


def test_bad_aedat4_one_line(tmp_path):
    good = encode_aedat4(_events(20))
    with pytest.raises(DataError, match="truncated AEDAT 4.0 packet"):
        read_aedat4(good[:-5], "cut.aedat4")
    with pytest.raises(DataError, match="truncated AEDAT 4.0 header"):
        read_aedat4(MAGIC + b"\x40\x00\x00\x00abc", "h.aedat4")
    # LZ4-compressed packets: the optional lz4 package, else a clear refusal
    (hsize,) = struct.unpack_from("<I", good, 14)
    lz = bytearray(good)
    lz[18 + 28:18 + 32] = struct.pack("<i", 1)
    try:
        import lz4.frame  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="LZ4-compressed.*'lz4'"):
            read_aedat4(bytes(lz), "lz.aedat4")
    with pytest.raises(DataError, match="x as int16"):
        encode_aedat4({"t": [0], "x": [-1], "y": [0], "p": [0]})


def test_a_tonic_style_cifar10dvs_folder_loads(tmp_path):
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    root = tmp_path / "CIFAR10DVS"
    for c, cls in enumerate(classes):
        for i in range(10):
            write_events(root / cls / f"{i}.aedat4", _events(64, seed=10 * c + i), format="aedat4")
    ds = load_dataset("cifar10dvs", root, image_size=8, cache_dir=tmp_path / "cache", options={"T": 2})
    assert ds.info["format"] == "aedat4"
    assert len(ds.train) == 90 and len(ds.test) == 10 and ds.train.images.shape[1:] == (2, 2, 8, 8)
    # every event counted: 64 per recording in the 2 x 128 x 128 frames before resizing
    from spikedistill.data.events import events_to_frames

    assert int(events_to_frames(read_events(root / "cat" / "3.aedat4"), 2).sum()) == 64
