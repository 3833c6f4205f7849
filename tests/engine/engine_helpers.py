"""Tiny run configs for the engine tests (embedded digits, ResNet-20 width 1, T = 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from spikedistill.config import Config, build_config

BASE = [
    "data.name=digits",
    "data.train_subset=160",
    "data.test_subset=80",
    "model.name=spiking_resnet20",
    "model.width_mult=1",
    "model.T=1",
    "train.epochs=3",
    "train.batch_size=16",
    "train.max_steps_per_epoch=3",
    "train.eval_batch_size=32",
    "train.lr=0.05",
    "train.threads=1",
    "train.device=cpu",
    "run.progress=false",
    "run.tensorboard=false",
    "run.plots=false",
]


class SimulatedCrash(RuntimeError):
    """What :func:`crash_after` raises: a run killed at an epoch boundary."""


def crash_after(n: int):
    """An ``on_epoch_end`` hook that raises :class:`SimulatedCrash` once ``n`` epochs are done
    (after that epoch's checkpoint was written)."""
    def hook(epoch, record):
        if epoch >= n:
            raise SimulatedCrash(f"crash after epoch {epoch}")
    return hook


def tiny_config(out_dir: Path, name: str, extra: Sequence[str] = ()) -> Config:
    """A few-second run on the digits: 3 epochs of 3 steps, augmentation on."""
    return build_config({}, BASE + [f"run.out_dir={out_dir}", f"run.name={name}"] + list(extra))


def teacher_checkpoint(path: Path, num_classes: int = 10, *, constant_class=None) -> Path:
    """A ResNet-20 (width 1, 1 input channel) teacher checkpoint at ``path``; with
    ``constant_class`` it predicts that class for every input (chance on balanced data)."""
    from spikedistill.engine import checkpoint as ck
    from spikedistill.models import create_model

    teacher = create_model("resnet20", num_classes=num_classes, in_channels=1, width_mult=1)
    if constant_class is not None:
        with torch.no_grad():
            teacher.classifier.weight.zero_()
            teacher.classifier.bias.zero_()
            teacher.classifier.bias[constant_class] = 1.0
    ck.save_checkpoint(ck.make_checkpoint(model=teacher, config={}, epoch=1), path)
    return path


def state_dicts_equal(a: dict, b: dict) -> bool:
    """Exact equality of two state dicts (same keys, bitwise-equal tensors)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def torchrun_two_processes(script: Path, *args, timeout: float, python_flags: Sequence[str] = ()):
    """Run ``script args`` under ``torch.distributed.run --standalone --nproc_per_node=2`` with
    this checkout's ``src`` first on the path, one thread a process and no inherited rank
    variables; the finished process (``returncode``, ``stdout``, ``stderr``)."""
    import os
    import subprocess
    import sys

    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, *python_flags, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", str(script), *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
