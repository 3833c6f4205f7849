"""DDP on CPU: two gloo processes under torchrun (identical replicas, reduced evaluation,
distributed resume), plus the single-process helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikedistill.engine import distributed as D
from spikedistill.errors import ConfigError

from engine_helpers import torchrun_two_processes

HERE = Path(__file__).resolve().parent


def test_single_process_defaults(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = D.init_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed, info.is_main) == (0, 1, False, True)
    assert info.device == torch.device("cpu") and not info.owns_group
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(D.all_reduce_sum(t), torch.tensor([1.0, 2.0]))
    assert D.broadcast_object("x") == "x" and D.gather_objects(3) == [3]
    D.barrier()
    D.cleanup(info)


def test_env_parsing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert D.env_world() == (3, 1, 4)
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ConfigError, match="RANK='three'"):
        D.env_world()


def test_device_resolution():
    assert D.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert D.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            D.resolve_device("cuda")
    with pytest.raises(ConfigError, match="train.device"):
        D.resolve_device("tpu")


def test_one_device_resolver_names_the_setting(capsys):
    """The analysis commands use the engine's resolver, their errors naming ``--device``."""
    from spikedistill.cli import main

    with pytest.raises(ConfigError, match=r"^--device: expected auto, cpu, cuda or cuda:N, got 'tpu'$"):
        D.resolve_device("tpu", key="--device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^--device: 'cuda:1' requested but CUDA is not available"):
            D.resolve_device("cuda:1", key="--device")
    for command in (["analyze", "--checkpoint"], ["visualize", "--student"]):
        assert main(command + ["nowhere.pt", "--device", "tpu"]) == 2
        assert "--device: expected auto, cpu, cuda or cuda:N, got 'tpu'" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    proc = torchrun_two_processes(HERE / "ddp_worker.py", tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    r0, r1 = reports
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["global_batch"] == 16                      # batch_size_is=global over 2 ranks
    assert r0["replicas_identical"] and r1["replicas_identical"]
    assert r0["checkpoint_matches_replica"]
    # reduced accuracy (disjoint shards of an odd-sized test set) == single-process evaluation
    assert r0["test_size"] == 75
    assert r0["last_acc"] == r1["last_acc"] == r0["single_process_acc"]
    assert r0["crashed"] and r1["crashed"]
    assert r0["resumed_start"] == 1 and r0["resume_equal"]
    assert r0["rng_entries"] == 2                          # one RNG state per rank
    assert r0["resumed_last_acc"] == r0["last_acc"]
    # only rank 0 holds the run directory's lock, and releases it
    assert r0["lock_pid"] == r0["pid"] == r1["lock_pid"] != r1["pid"]
    assert not r0["lock_left"] and not r1["lock_left"]
    # only rank 0 printed the epoch lines
    assert proc.stdout.count("epoch 2/2") == 2             # full run + resumed run
