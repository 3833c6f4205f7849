"""Fuzz tests of the binary event readers (issue 17, part 8): random truncations and bit flips
of valid small generated files (AEDAT 2.0, AEDAT 3.1, AEDAT 4.0 plain / LZ4 / ZSTD, events
.npz), seeded. Every outcome is a result (four int64 arrays of one length) or one DataError
line naming the file, each case within a time bound. The limits are lowered so that a flipped
size can never allocate much."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from spikedistill.data.events import decode_events, encode_events
from spikedistill.errors import DataError

CASES = 300            # per reader: 1/3 truncations, 1/3 bit flips, 1/3 both
TIME_BOUND_S = 1.0     # one case (typical: well under a millisecond)


def _valid(fmt: str, compression: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    n = 40
    ev = {"t": np.sort(rng.integers(0, 10 ** 6, n)), "x": rng.integers(0, 128, n),
          "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)}
    if fmt == "aedat3":
        from spikedistill.data.events.aedat import encode_aedat3
        return encode_aedat3(ev, packet_events=16)
    if fmt == "aedat4":
        from spikedistill.data.events.aedat4 import encode_aedat4
        return encode_aedat4(ev, packet_events=16, compression=compression)
    return encode_events(ev, fmt)


def _mutate(data: bytes, rng: np.random.Generator, case: int) -> bytes:
    buf = bytearray(data)
    kind = case % 3
    if kind in (1, 2):                                   # flip 1-4 bits
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(0, len(buf)))
            buf[i] ^= 1 << int(rng.integers(0, 8))
    if kind in (0, 2):                                   # cut
        buf = buf[:int(rng.integers(0, len(buf)))]
    return bytes(buf)


def fuzz(fmt: str, compression: str = "none", cases: int = CASES, seed: int = 0):
    """``(Counter of outcomes, slowest case in s)``; raises AssertionError on any other outcome."""
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    slowest = 0.0
    for case in range(cases):
        data = _mutate(_valid(fmt, compression, case % 5), rng, case)
        name = f"case{case}.{fmt}"
        start = time.perf_counter()
        try:
            ev = decode_events(data, name)
        except DataError as exc:
            text = str(exc)
            assert "\n" not in text and name in text, (case, text)
            outcomes["DataError"] += 1
        except Exception as exc:            # noqa: BLE001 - what the test is looking for
            raise AssertionError(f"{fmt}/{compression} case {case}: {type(exc).__name__}: {exc}") from exc
        else:
            assert sorted(ev) == ["p", "t", "x", "y"]
            assert len({len(v) for v in ev.values()}) == 1
            assert all(v.dtype == np.int64 for v in ev.values())
            outcomes["result"] += 1
        took = time.perf_counter() - start
        assert took < TIME_BOUND_S, (fmt, case, took)
        slowest = max(slowest, took)
    return outcomes, slowest


@pytest.fixture(autouse=True)
def _small_limits(monkeypatch):
    monkeypatch.setenv("SPIKEDISTILL_MAX_EVENTS", "100000")
    monkeypatch.setenv("SPIKEDISTILL_MAX_MEMBER_BYTES", str(1 << 20))


@pytest.mark.parametrize("fmt, compression", [
    ("aedat", "none"), ("aedat3", "none"), ("aedat4", "none"), ("aedat4", "lz4"),
    ("aedat4", "zstd"), ("npz", "none")])
def test_fuzzed_files_give_a_result_or_one_line(fmt, compression):
    pytest.importorskip({"lz4": "lz4", "zstd": "zstandard"}.get(compression, "numpy"))
    outcomes, slowest = fuzz(fmt, compression)
    assert sum(outcomes.values()) == CASES
    assert outcomes["DataError"] > 0           # the mutations do reach the error paths
    print(f"{fmt}/{compression}: {CASES} cases, {dict(outcomes)}, slowest {slowest * 1e3:.2f} ms")
