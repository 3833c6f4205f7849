"""Processes (issue 17, part 3): worker pools die with their parent (kill -9 included), stop on
Ctrl-C, and a worker's error reaches the user as its one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spikedistill.data.workers import worker_message
from spikedistill.errors import DataError

SRC = str(Path(__file__).resolve().parents[2] / "src")

PARENT = textwrap.dedent("""
    import importlib.util, os, sys, time
    spec = importlib.util.spec_from_file_location("workers", sys.argv[1])  # without torch: fast
    workers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workers)
    pool_map = workers.pool_map

    def spin(_):
        os.write(1, f"{os.getpid()}\\n".encode())   # one write: the two workers' lines never interleave
        while True:          # a worker stuck in Python code (as read_aedat3 was)
            pass

    if __name__ == "__main__":
        print("parent", os.getpid(), flush=True)
        for _ in pool_map(spin, range(2), 2, "test"):
            pass
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _start(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), f"{SRC}/spikedistill/data/workers.py"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1"))
    parent = int(proc.stdout.readline().split()[1])
    workers = [int(proc.stdout.readline()) for _ in range(2)]
    return proc, parent, workers


def _gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_spinning_workers_die_with_their_parent(tmp_path, sig):
    proc, parent, workers = _start(tmp_path)
    try:
        assert all(_alive(p) for p in workers)
        os.kill(parent, sig)
        proc.wait(timeout=10)
        assert _gone_within(workers, 5), "a worker outlived its parent"
    finally:
        proc.kill()
        for p in [parent] + workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_of_the_parent_alone_stops_the_pool_at_once(tmp_path):
    proc, parent, workers = _start(tmp_path)
    try:
        os.kill(parent, signal.SIGINT)                 # only the parent gets it
        # a liveness bound, not a speed target: 10 s timed out once on a loaded 2-core machine
        # (load 6, the test niced), while the exit takes well under a second on a quiet one
        proc.wait(timeout=30)
        assert proc.returncode != 0
        assert _gone_within(workers, 5)
    finally:
        proc.kill()
        for p in [parent] + workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_dataloader_worker_error_is_the_workers_one_line(tmp_path):
    from spikedistill.data.stream import FileList, StreamLoader

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    loader = StreamLoader(FileList.from_files([str(bad)] * 2, [0, 0]), 2, shuffle=False,
                          image_size=8, workers=1, persistent_workers=False)
    with pytest.raises(DataError) as e:
        next(iter(loader))
    text = str(e.value)
    assert "\n" not in text and text.startswith("cannot decode image") and str(bad) in text


def test_worker_message_keeps_a_plain_message():
    assert worker_message(DataError("x: y")) == "x: y"
    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback "
                        "(most recent call last):\n  File ...\nspikedistill.errors.DataError: a: b")
    assert worker_message(wrapped) == "a: b"


def test_a_plugin_config_class_defined_in_a_function_travels_as_plain_data(monkeypatch):
    """compare / ablate --jobs send ``cfg.to_dict()``: a plugin's config dataclass defined in a
    function (as docs/examples/plugin.md shows) cannot be pickled, its values can."""
    import pickle
    from dataclasses import dataclass

    from spikedistill.config import Config, build_config, from_dict
    from spikedistill.distill.registry import register_method

    @dataclass
    class LocalConfig:
        tau: float = 2.0

    from spikedistill.distill.methods.kd import KD   # any Distiller

    from spikedistill.plugins import METHODS

    register_method("local_test_method", config=LocalConfig)(type("LocalKD", (KD,), {}))
    try:
        cfg = build_config({"distill": {"method": "local_test_method",
                                        "local_test_method": {"tau": 3.0}}})
        assert isinstance(cfg.distill.local_test_method, LocalConfig)
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            pickle.dumps(cfg)
        back = from_dict(Config, pickle.loads(pickle.dumps(cfg.to_dict())))
        assert back.to_dict() == cfg.to_dict() and back.distill.local_test_method.tau == 3.0
    finally:
        METHODS.unregister("local_test_method")
