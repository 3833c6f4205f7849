"""Hostile input (issue 17, part 1): every reader of untrusted bytes checks declared sizes against
the limits of :mod:`spikedistill.data.limits` before allocating, never loops without progress,
and reports one DataError naming the file. The limits are lowered in every test, so no test
allocates more than a few MB."""

from __future__ import annotations

import io
import struct
import tarfile
import time
import zipfile

import numpy as np
import pytest

from spikedistill.data import limits
from spikedistill.data.events import decode_events
from spikedistill.data.events.aedat import AEDAT3_END, AEDAT3_MAGIC, encode_aedat2, encode_aedat3
from spikedistill.data.events.aedat4 import _info_xml, encode_aedat4
from spikedistill.data.events.npz import encode_events_npz, read_frames_npz
from spikedistill.errors import DataError
from spikedistill.plugins import DATASETS


def _events(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"t": np.sort(rng.integers(0, 10 ** 6, n)), "x": rng.integers(0, 128, n),
            "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)}


def _one_line(exc_info, *words):
    text = str(exc_info.value)
    assert "\n" not in text
    for w in words:
        assert w in text, text
    return text


# ---- limits ------------------------------------------------------------------------------------

def test_limits_read_the_environment_and_refuse_a_bad_value(monkeypatch):
    monkeypatch.delenv("SPIKEDISTILL_MAX_EVENTS", raising=False)
    assert limits.max_events() == 1 << 24
    monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", "1_000")
    assert limits.max_events() == 1000
    for bad in ("abc", "0", "-5"):
        monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", bad)
        with pytest.raises(DataError) as e:
            limits.max_events()
        _one_line(e, "SPIKEDISTILL_MAX_EVENTS", "positive integer")


# ---- AEDAT 3.1 -----------------------------------------------------------------------------------

def _aedat3_packet(e_size, capacity, body=b""):
    head = AEDAT3_MAGIC + b"\r\n" + AEDAT3_END
    return head + struct.pack("<hhiiiiii", 1, 1, e_size, 4, 0, capacity, capacity, capacity) + body


@pytest.mark.parametrize("e_size, capacity", [(8, -3), (8, -(2 ** 31)), (4, 2), (0, 5), (-8, 1)])
def test_aedat3_negative_capacity_or_small_event_size_is_one_line_at_once(e_size, capacity):
    data = _aedat3_packet(e_size, capacity, b"\0" * 48)
    start = time.perf_counter()
    with pytest.raises(DataError) as e:
        decode_events(data, "bad.aedat")
    assert time.perf_counter() - start < 1.0
    _one_line(e, "bad.aedat", "AEDAT 3.1")


def test_aedat_event_counts_are_bounded(monkeypatch):
    ev = _events(300)
    monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", "299")
    for data in (encode_aedat2(ev), encode_aedat3(ev, packet_events=100)):
        with pytest.raises(DataError) as e:
            decode_events(data, "big.aedat")
        _one_line(e, "big.aedat", "SPIKEDISTILL_MAX_EVENTS")
    monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", "300")
    assert len(decode_events(encode_aedat3(ev, packet_events=100))["t"]) == 300


# ---- AEDAT 4.0 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_aedat4_decompression_is_bounded_by_the_event_limit(monkeypatch, compression):
    pytest.importorskip("lz4" if compression == "lz4" else "zstandard")
    zeros = {k: np.zeros(20000, np.int64) for k in "txyp"}        # compresses ~1000:1
    data = encode_aedat4(zeros, packet_events=20000, compression=compression)
    monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", "1000")
    with pytest.raises(DataError) as e:
        decode_events(data, "bomb.aedat4")
    _one_line(e, "bomb.aedat4", "SPIKEDISTILL_MAX_EVENTS")
    monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", "20000")
    assert len(decode_events(data)["t"]) == 20000


def test_aedat4_decompression_stops_near_the_bound(monkeypatch):
    """A zstd frame without a declared content size is fed in slices: the output that is refused
    stays within a few blocks of the bound (a 3.2 MB bomb with a 100-event limit is not inflated)."""
    zstandard = pytest.importorskip("zstandard")
    from spikedistill.data.events import aedat4

    payload = b"\0" * (3_200_000)
    frame = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(payload)
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    seen = []
    real = zstandard.ZstdDecompressor

    class Spy:
        def __init__(self):
            self.inner = real()

        def decompressobj(self):
            obj = self.inner.decompressobj()

            class Obj:
                eof = property(lambda _: obj.eof)

                def decompress(_, chunk):
                    out = obj.decompress(chunk)
                    seen.append(len(out))
                    return out
            return Obj()
    monkeypatch.setattr(zstandard, "ZstdDecompressor", Spy)
    with pytest.raises(DataError):
        aedat4._decompress(frame, 3, "x.aedat4", 0, bound=1600)
    assert sum(seen) < 1600 + (1 << 19) + (1 << 17)


def test_aedat4_non_numeric_size_is_one_line():
    data = encode_aedat4(_events(10))
    good = _info_xml(128, 128).encode()
    bad = good.replace(b'<attr key="sizeX" type="int">128</attr>', b'<attr key="sizeX" type="int">abc</attr>')
    assert bad != good
    from spikedistill.data.events.aedat4 import encode_ioheader
    head_good, head_bad = encode_ioheader(good.decode()), encode_ioheader(bad.decode())
    hacked = data.replace(struct.pack("<I", len(head_good)) + head_good,
                          struct.pack("<I", len(head_bad)) + head_bad)
    assert hacked != data
    with pytest.raises(DataError) as e:
        decode_events(hacked, "size.aedat4")
    _one_line(e, "size.aedat4", "sizeX", "'abc'")


# ---- events .npz -----------------------------------------------------------------------------------

def _npz_with(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, raw in members.items():
            z.writestr(name + ".npy", raw)
    return buf.getvalue()


def _npy_header(shape, descr="<i8", version=(1, 0)):
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def test_npz_declared_shape_is_checked_before_allocation(monkeypatch):
    monkeypatch.setenv("SPIKEDISTILL_MAX_MEMBER_BYTES", str(1 << 20))
    ok = {k: _npy_header((4,)) + b"\0" * 32 for k in "txyp"}
    assert len(decode_events(_npz_with(ok))["t"]) == 4
    huge = dict(ok, t=_npy_header((1 << 40,)) + b"\0" * 32)       # 8 TiB declared, 32 B held
    with pytest.raises(DataError) as e:
        decode_events(_npz_with(huge), "huge.npz")
    _one_line(e, "huge.npz", "'t'", "SPIKEDISTILL_MAX_MEMBER_BYTES")
    # a 1 MB deflated member of zeros that declares 2 MiB: refused, not inflated
    bomb = dict(ok, x=_npy_header((1 << 18,)) + b"\0" * (1 << 21))
    with pytest.raises(DataError) as e:
        decode_events(_npz_with(bomb), "bomb.npz")
    _one_line(e, "bomb.npz", "'x'", "SPIKEDISTILL_MAX_MEMBER_BYTES")


@pytest.mark.parametrize("member, word", [
    (_npy_header((4,), descr="|O"), "dtype"),                     # object arrays
    (_npy_header((4,)) + b"\0" * 8, "truncated"),                  # data shorter than the shape
    (b"\x93NUMPY\x09\x00" + b"\0" * 40, "unsupported"),            # unknown .npy version
    (b"garbage, not an npy member", "corrupt"),
])
def test_npz_corrupt_or_unsupported_member_is_one_line(member, word):
    members = {k: _npy_header((4,)) + b"\0" * 32 for k in "txyp"}
    members["p"] = member
    with pytest.raises(DataError) as e:
        decode_events(_npz_with(members), "odd.npz")
    _one_line(e, "odd.npz", "'p'", word)


def test_frames_npz_still_round_trips_and_bounds(monkeypatch):
    frames = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames)
    np.testing.assert_array_equal(read_frames_npz(buf.getvalue()), frames)
    monkeypatch.setenv("SPIKEDISTILL_MAX_MEMBER_BYTES", "100")
    with pytest.raises(DataError):
        read_frames_npz(buf.getvalue(), "f.npz")
    assert encode_events_npz(_events(3))[:2] == b"PK"


# ---- archives ----------------------------------------------------------------------------------

def _png(width=4, height=4, color=(10, 20, 30)):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def _tree(extra=None):
    files = {f"{s}/{c}/{i}.png": _png() for s in ("train", "test") for c in ("a", "b") for i in range(2)}
    files.update(extra or {})
    return files


def _write_zip(path, files):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, raw in files.items():
            z.writestr(name, raw)


def _write_tar(path, files, mode="w:gz"):
    with tarfile.open(path, mode) as t:
        for name, raw in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar"])
def test_an_archive_member_above_the_limit_is_refused_before_reading(tmp_path, monkeypatch, suffix):
    from spikedistill.data.readers import read_image_folder

    big = _png() + b"\0" * (2 << 20)                  # 2 MiB, deflates to a few KB
    root = tmp_path / f"tree{suffix}"
    (_write_zip if suffix == ".zip" else _write_tar)(root, _tree({"train/a/big.png": big}),
                                                      **({} if suffix == ".zip" else
                                                         {"mode": "w:gz" if suffix == ".tar.gz" else "w"}))
    assert root.stat().st_size < (1 << 20) or suffix == ".tar"
    monkeypatch.setenv("SPIKEDISTILL_MAX_MEMBER_BYTES", str(1 << 20))
    with pytest.raises(DataError) as e:
        read_image_folder(root)
    _one_line(e, str(root), "train/a/big.png", "SPIKEDISTILL_MAX_MEMBER_BYTES")
    monkeypatch.setenv("SPIKEDISTILL_MAX_MEMBER_BYTES", str(4 << 20))
    assert len(read_image_folder(root).train_labels) == 5      # within the limit: read


def test_event_archive_members_are_bounded_and_escaping_names_skipped(tmp_path, monkeypatch):
    from spikedistill.data.events.layout import discover

    rec = encode_aedat2(_events(50))
    root = tmp_path / "dvs.zip"
    _write_zip(root, {"airplane/a.aedat": rec, "cat/b.aedat": rec + b"\0" * 8 * 200,
                      "../../evil/c.aedat": rec, "/abs/d/e.aedat": rec})
    recs, _ = discover(root)
    assert sorted(r.key for r in recs) == ["airplane/a", "cat/b"]
    monkeypatch.setenv("SPIKEDISTILL_MAX_MEMBER_BYTES", str(len(rec) + 100))
    assert len(recs[0].read_bytes()) == len(rec)
    with pytest.raises(DataError) as e:
        recs[1].read_bytes()
    _one_line(e, "cat/b.aedat", "SPIKEDISTILL_MAX_MEMBER_BYTES")


# ---- images --------------------------------------------------------------------------------------

def test_an_image_bomb_is_refused_before_decoding_in_both_decoders(monkeypatch):
    from spikedistill.data.readers import decode_image
    from spikedistill.data.stream import decode_rgb

    data = _png(300, 200)
    monkeypatch.setenv("SPIKEDISTILL_MAX_IMAGE_PIXELS", "50000")       # 300 x 200 = 60000
    import torchvision.io

    def must_not_decode(*a, **k):
        raise AssertionError("decoded before the pixel check")
    monkeypatch.setattr(torchvision.io, "decode_image", must_not_decode)
    for decode in (decode_rgb, decode_image):
        with pytest.raises(DataError) as e:
            decode(data, "bomb.png")
        _one_line(e, "bomb.png", "300 x 200", "SPIKEDISTILL_MAX_IMAGE_PIXELS")
    monkeypatch.setenv("SPIKEDISTILL_MAX_IMAGE_PIXELS", "60000")
    assert decode_image(data, "ok.png").shape == (3, 200, 300)


def test_the_pixel_check_reads_only_the_header_of_a_forged_png(monkeypatch):
    """A PNG whose IHDR says 16000 x 16000 (its data is 0.x KB): refused at the default limit
    from the header alone (Pillow's own check would only come after torchvision decoded it)."""
    from spikedistill.data.readers import image_pixels

    monkeypatch.delenv("SPIKEDISTILL_MAX_IMAGE_PIXELS", raising=False)
    data = bytearray(_png(4, 4))
    import zlib
    ihdr = struct.pack(">II", 16000, 16000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(DataError) as e:
        image_pixels(bytes(data), "forged.png")
    _one_line(e, "forged.png", "16000 x 16000", "SPIKEDISTILL_MAX_IMAGE_PIXELS")
    assert image_pixels(b"not an image", "x") == -1


# ---- devkit meta.mat ------------------------------------------------------------------------------

def _mat_header(version=0x0100):
    return b"MATLAB 5.0 MAT-file".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", version) + b"IM"


@pytest.mark.parametrize("content, word", [
    (b"", "not an ILSVRC2012 devkit meta.mat"),
    (_mat_header(), "not an ILSVRC2012 devkit meta.mat"),
    (_mat_header(0x0200), "v7.3"),
    (_mat_header() + b"\x0e\0\0\0\xff\xff\xff\x7f" + b"\x01" * 40, "not an ILSVRC2012 devkit meta.mat"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 300, "not an ILSVRC2012 devkit meta.mat"),
])
def test_a_malformed_meta_mat_is_one_line(tmp_path, content, word):
    pytest.importorskip("scipy")
    DATASETS.names()   # built-ins registered in their own order before a set is imported
    from spikedistill.data.sets.imagenet import read_meta_mat

    path = tmp_path / "meta.mat"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_meta_mat(path)
    _one_line(e, str(path), word)
