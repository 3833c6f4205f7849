"""The streaming pipeline under two gloo processes (torchrun): every sample once per epoch
across ranks, equal steps per rank, identical replicas after streamed DDP training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "data"))
from engine_helpers import torchrun_two_processes  # noqa: E402
from fake_imagenet import make_tree  # noqa: E402


@pytest.mark.slow
def test_two_process_streaming(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, per_class=6, val_per_class=3)          # 18 train / 9 val images
    proc = torchrun_two_processes(HERE / "stream_ddp_worker.py", tree, tmp_path, timeout=300,
                                  python_flags=["-W", "ignore::DeprecationWarning"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["world"] == r1["world"] == 2 and r0["n"] == 18
    assert r0["steps"] == r1["steps"] == 3                 # 9 samples per rank, batches of 3
    epochs = []
    for e in ("0", "1"):
        a, b = r0["epochs"][e], r1["epochs"][e]
        assert len(a) == len(b) == 9 and not set(a) & set(b)
        assert sorted(a + b) == list(range(18))            # each sample exactly once
        epochs.append(a)
    assert epochs[0] != epochs[1]                          # a new permutation every epoch
    assert r0["global_batch"] == 6 and r0["world_size"] == 2
    assert r0["replicas_identical"] and r1["replicas_identical"] and r0["trained"]
    assert r0["last_acc"] == r1["last_acc"]
