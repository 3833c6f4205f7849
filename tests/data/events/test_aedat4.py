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


# ---- compressed packets (LZ4 / ZSTD): every packet one independent frame, as dv-processing's
# Lz4CompressionSupport / ZstdCompressionSupport write it and the aedat decoder reads it

CODES = {"none": 0, "lz4": 1, "lz4_high": 2, "zstd": 3, "zstd_high": 4}
LZ4_MAGIC, ZSTD_MAGIC = b"\x04\x22\x4d\x18", b"\x28\xb5\x2f\xfd"


def _packets(data):
    """``[(stream id, payload)]`` of an AEDAT 4.0 file, walked here from the byte layout."""
    (hsize,) = struct.unpack_from("<I", data, 14)
    pos, out = 18 + hsize, []
    while pos < len(data):
        sid, n = struct.unpack_from("<iI", data, pos)
        out.append((sid, data[pos + 8:pos + 8 + n]))
        pos += 8 + n
    return out


def _frame_decode(payload, code):
    if code in (1, 2):
        import lz4.frame

        return lz4.frame.decompress(payload)
    import zstandard

    return zstandard.ZstdDecompressor().decompress(payload)


@pytest.mark.parametrize("compression", ["lz4", "lz4_high", "zstd", "zstd_high"])
def test_compressed_round_trip_of_a_multi_packet_file(tmp_path, compression):
    pytest.importorskip("lz4.frame" if compression.startswith("lz4") else "zstandard")
    code = CODES[compression]
    ev = _events(10_000, seed=4)
    path = write_events(tmp_path / f"{compression}.aedat4", ev, format="aedat4", compression=compression)
    data = path.read_bytes()
    plain = encode_aedat4(ev)
    # the IOHeader's compression field (table at 24, field at +4) holds the DV enum value
    assert struct.unpack_from("<i", data, 18 + 28)[0] == code
    assert f'<attr key="compression" type="string">{compression.upper()}</attr>'.encode() in data
    packets, plain_packets = _packets(data), _packets(plain)
    assert len(packets) == len(plain_packets) == 3                       # 4096 + 4096 + 1808 events
    for (sid, payload), (_, raw) in zip(packets, plain_packets):
        assert sid == 0 and len(payload) < len(raw)
        if code in (1, 2):
            # LZ4 frame header: FLG 0x40 (version 01, linked blocks, no block / content checksum,
            # no content size), BD 0x40 (64 KiB blocks): dv-processing's LZ4F preferences
            assert payload[:4] == LZ4_MAGIC and payload[4:6] == b"\x40\x40"
        else:
            assert payload[:4] == ZSTD_MAGIC
        # each packet decodes on its own (no state shared between packets) to the plain flatbuffer
        assert _frame_decode(payload, code) == raw
    got = read_events(path)
    for k in "txyp":
        assert np.array_equal(got[k], ev[k]), k


@pytest.mark.parametrize("compression", ["lz4", "zstd", "zstd_high"])
def test_the_aedat_decoder_reads_our_compressed_files(tmp_path, compression):
    aedat = pytest.importorskip("aedat")
    pytest.importorskip("lz4.frame" if compression.startswith("lz4") else "zstandard")
    ev = _events(9_000, seed=5)
    path = write_events(tmp_path / "c.aedat4", ev, format="aedat4", compression=compression)
    peer = np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])
    assert len(peer) == 9_000
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        assert np.array_equal(peer[theirs].astype(np.int64), ev[ours]), ours


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_packets_of_another_writer(tmp_path, compression):
    """The ``aedat`` package has no writer; this is another writer's file instead: the vtable
    layout of ``_other_writer_file`` (trigger packet, stream 7, a data table) with its packets
    compressed under other frame settings than ours (LZ4: content checksum, stored content size,
    independent 256 KiB blocks; zstd: level 1 with a checksum). Ours and the aedat decoder agree."""
    ev = _events(3_000, seed=6)
    code = CODES[compression]
    if code == 1:
        lz4f = pytest.importorskip("lz4.frame")

        def pack(b):
            return lz4f.compress(b, block_size=lz4f.BLOCKSIZE_MAX256KB, block_linked=False,
                                 content_checksum=True, store_size=True)
    else:
        zstandard = pytest.importorskip("zstandard")

        def pack(b):
            return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(b)

    from spikedistill.data.events.aedat4 import encode_ioheader

    plain = _other_writer_file(ev)
    (hsize,) = struct.unpack_from("<I", plain, 14)
    body = []
    pos = 18 + hsize
    while True:
        sid, n = struct.unpack_from("<iI", plain, pos)
        if sid not in (3, 7):
            break                                              # the data table
        p = pack(plain[pos + 8:pos + 8 + n])
        body.append(struct.pack("<iI", sid, len(p)) + p)
        pos += 8 + n
    header = encode_ioheader(XML, compression=code, table_pos=0)
    start = 18 + len(header)
    table_pos = start + sum(map(len, body))
    header = encode_ioheader(XML, compression=code, table_pos=table_pos)
    data = MAGIC + struct.pack("<I", len(header)) + header + b"".join(body) + b"\xde\xad\xbe\xef" * 4
    path = tmp_path / "other.aedat4"
    path.write_bytes(data)
    got = read_events(path)
    for k in "txyp":
        assert np.array_equal(got[k], np.asarray(ev[k], np.int64)), k
    aedat = pytest.importorskip("aedat")
    peer = np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])
    assert np.array_equal(peer["t"], got["t"]) and np.array_equal(peer["x"], got["x"])
    assert np.array_equal(peer["on"].astype(np.int64), got["p"])


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_a_corrupt_or_cut_compressed_packet_is_one_line_naming_the_file(tmp_path, compression):
    pytest.importorskip("lz4.frame" if compression == "lz4" else "zstandard")
    data = encode_aedat4(_events(5_000, seed=7), compression=compression)
    (hsize,) = struct.unpack_from("<I", data, 14)
    second = 18 + hsize + 8 + len(_packets(data)[0][1])          # the second packet's header
    (n,) = struct.unpack_from("<I", data, second + 4)
    frame = data[second + 8:second + 8 + n]
    # bytes garbled inside the frame's header (LZ4: FLG reserved bit; zstd: the frame header)
    bad = bytearray(data)
    bad[second + 8 + 4] ^= 0x03 if compression == "lz4" else 0xff
    bad[second + 8 + 5:second + 8 + 9] = b"\xff\xff\xff\xff"
    # the frame cut short, the packet's size field consistent with the shorter payload
    cut = frame[:len(frame) // 2]
    short = data[:second] + struct.pack("<iI", 0, len(cut)) + cut + data[second + 8 + n:]
    name = {"lz4": "LZ4", "zstd": "ZSTD"}[compression]
    for what, blob in (("garbled", bytes(bad)), ("cut", short)):
        path = tmp_path / f"{what}.aedat4"
        path.write_bytes(blob)
        with pytest.raises(DataError, match=rf"{what}\.aedat4: the packet at byte {second} is not a "
                                            rf"valid {name} frame") as info:
            read_events(path)
        assert "\n" not in str(info.value), what


def test_without_the_compression_package_one_line_naming_it(tmp_path, monkeypatch):
    pytest.importorskip("lz4.frame")
    pytest.importorskip("zstandard")
    import sys

    ev = _events(100, seed=8)
    lz = write_events(tmp_path / "lz.aedat4", ev, format="aedat4", compression="lz4")
    zs = write_events(tmp_path / "zs.aedat4", ev, format="aedat4", compression="zstd_high")
    monkeypatch.setitem(sys.modules, "lz4.frame", None)            # import lz4.frame now fails
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(DataError, match=r"lz\.aedat4: AEDAT 4.0 packets are LZ4-compressed; install "
                                        r"the optional package 'lz4'") as info:
        read_events(lz)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"zs\.aedat4: .* ZSTD_HIGH-compressed; .* package 'zstandard'"):
        read_events(zs)
    with pytest.raises(DataError, match=r"package 'lz4'"):
        write_events(tmp_path / "w.aedat4", ev, format="aedat4", compression="lz4_high")
    assert not (tmp_path / "w.aedat4").exists()
    # uncompressed files need neither
    assert len(read_events(write_events(tmp_path / "n.aedat4", ev, format="aedat4"))["t"]) == 100


def test_bad_compression_arguments_one_line(tmp_path):
    ev = _events(10)
    with pytest.raises(DataError, match=r"unknown AEDAT 4.0 compression 'lz5' \(expected one of none, lz4, "
                                        r"lz4_high, zstd, zstd_high\)"):
        write_events(tmp_path / "a.aedat4", ev, format="aedat4", compression="lz5")
    with pytest.raises(DataError, match=r"compression 'lz4' is for format 'aedat4' only \(format is 'npz'\)"):
        write_events(tmp_path / "a.npz", ev, format="npz", compression="lz4")
    # names are case-insensitive; "NONE" writes what the default writes
    assert encode_aedat4(ev, compression="NONE") == encode_aedat4(ev)
