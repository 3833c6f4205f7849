"""Event file formats written byte for byte, read back, and read by SpikingJelly's own readers."""

from __future__ import annotations

import importlib
import os
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from spikedistill.data.events import decode_events, events_to_frames, read_events, write_events
from spikedistill.errors import DataError


def sj(module):
    """A module of ``spikingjelly.datasets`` without its package __init__ (which imports
    torchaudio): the real functions, loaded by file."""
    sjpkg = pytest.importorskip("spikingjelly")
    pytest.importorskip("loguru")
    name = "spikingjelly.datasets"
    if name not in sys.modules or not hasattr(sys.modules[name], "__path__"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(os.path.dirname(sjpkg.__file__), "datasets")]
        sys.modules[name] = pkg
    return importlib.import_module(f"{name}.{module}")


def _events(n=300, seed=0, tmax=50_000):
    rng = np.random.default_rng(seed)
    return {"t": np.sort(rng.integers(0, tmax, n)).astype(np.int64), "x": rng.integers(0, 128, n),
            "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)}


def test_aedat2_bytes_by_hand(tmp_path):
    # one event at sensor x=3, y=5, p=1, t=258: raw x = 127 - y = 122, raw y = 127 - x = 124,
    # raw p = 1 - p = 0 -> address = 124 << 8 | 122 << 1 | 0 = 0x7CF4, both words big-endian
    path = write_events(tmp_path / "a.aedat", {"t": [258], "x": [3], "y": [5], "p": [1]})
    raw = path.read_bytes()
    assert raw.startswith(b"#!AER-DAT2.0\r\n")
    assert raw.endswith(bytes([0, 0, 0x7C, 0xF4, 0, 0, 1, 2]))
    assert raw.count(b"\r\n") == 5 and len(raw.split(b"\r\n")[-1]) == 8
    ev = read_events(path)
    assert {k: ev[k].tolist() for k in "txyp"} == {"t": [258], "x": [3], "y": [5], "p": [1]}


def test_aedat2_matches_spikingjelly_reader(tmp_path):
    c = sj("cifar10_dvs")
    ev = _events()
    path = write_events(tmp_path / "cifar10_cat_0.aedat", ev)
    ours = read_events(path)
    ref = c._load_origin_data(str(path))
    for k in "txyp":
        assert np.array_equal(ours[k], np.asarray(ref[k]).astype(np.int64)), k
        assert np.array_equal(ours[k], ev[k]), k


def test_aedat3_bytes_and_spikingjelly(tmp_path):
    u = sj("utils")
    ev = _events(50)
    ev["t"][-5:] += 2 ** 31          # crosses the 31-bit overflow: a second packet
    path = write_events(tmp_path / "r.aedat", ev, format="aedat3")
    raw = path.read_bytes()
    body = raw[raw.index(b"#!END-HEADER\r\n") + 14:]
    head = struct.unpack("<hhiiiiii", body[:28])
    assert head[:3] == (1, 1, 8) and head[4] == 0 and head[5] == 45
    d, t = struct.unpack("<II", body[28:36])
    assert (d >> 17, (d >> 2) & 0x7FFF, (d >> 1) & 1, d & 1, t) == (ev["x"][0], ev["y"][0], ev["p"][0], 1, ev["t"][0])
    ours = read_events(path)
    ref = u.load_aedat_v3(str(path))
    for k in "txyp":
        assert np.array_equal(ours[k], ev[k]) and np.array_equal(ours[k], ref[k]), k


def test_spikingjelly_npz_events_and_frames(tmp_path):
    ev = _events()
    path = write_events(tmp_path / "e.npz", ev, format="npz")
    with np.load(path) as z:
        assert sorted(z.files) == ["p", "t", "x", "y"]
    ours = read_events(path)
    assert all(np.array_equal(ours[k], ev[k]) for k in "txyp")


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("T", [1, 4, 7])
def test_frames_equal_spikingjelly(split_by, T):
    u = sj("utils")
    ev = _events(500, seed=T)
    ours = events_to_frames(ev, T, split_by)
    ref = u.integrate_events_by_fixed_frames_number(ev, split_by, T, 128, 128)
    assert ours.shape == (T, 2, 128, 128) and np.array_equal(ours, ref)
    assert ours.sum() == 500


def test_frames_by_hand():
    ev = {"t": np.array([0, 1, 2, 10, 11]), "x": np.array([0, 1, 1, 2, 2]), "y": np.array([0, 0, 0, 3, 3]),
          "p": np.array([1, 0, 0, 1, 1])}
    f = events_to_frames(ev, 2, "number", (4, 4))      # floor(5/2)=2: [0,2) and [2,5)
    assert f[0, 1, 0, 0] == 1 and f[0, 0, 0, 1] == 1 and f[1, 0, 0, 1] == 1 and f[1, 1, 3, 2] == 2
    assert f.sum() == 5
    g = events_to_frames(ev, 2, "time", (4, 4))        # dT = 5: t < 5 in frame 0
    assert g[0].sum() == 3 and g[1, 1, 3, 2] == 2
    few = events_to_frames({k: v[:1] for k, v in ev.items()}, 3, "number", (4, 4))
    assert few[2].sum() == 1 and few[:2].sum() == 0     # N < T: SpikingJelly puts all in the last frame


def test_bad_inputs_one_line(tmp_path):
    bad = tmp_path / "bad.aedat"
    bad.write_bytes(b"#!AER-DAT9.9\r\nxxxx")
    with pytest.raises(DataError, match="unknown event file format"):
        read_events(bad)
    ok = write_events(tmp_path / "ok.aedat", _events(3))
    trunc = tmp_path / "trunc.aedat"
    trunc.write_bytes(ok.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated AEDAT 2.0"):
        read_events(trunc)
    with pytest.raises(DataError, match="AEDAT 4.0"):
        decode_events(b"#!AER-DAT4.0\r\n....")
    with pytest.raises(DataError, match="unknown event format"):
        write_events(tmp_path / "x", _events(3), format="hdf5")
    z = tmp_path / "z.npz"
    np.savez(z, a=np.zeros(3))
    with pytest.raises(DataError, match="missing t, x, y, p"):
        read_events(z)
    with pytest.raises(DataError, match="outside the 128x128 sensor"):
        events_to_frames({"t": [0], "x": [128], "y": [0], "p": [0]}, 2)
    with pytest.raises(DataError, match="data.kwargs.split_by"):
        events_to_frames(_events(3), 2, "random")
    with pytest.raises(DataError, match="cannot read"):
        read_events(tmp_path / "missing.aedat")
    assert zipfile.is_zipfile(write_events(tmp_path / "n.npz", _events(3), format="npz"))
