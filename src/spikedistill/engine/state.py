"""Run state: the run directory, checkpoints made from and restored into a run, resume, the
teacher's provenance record.

Resume (``resume=RUN_DIR``) restores the model, extras, optimiser, scheduler, GradScaler, epoch
counter, best accuracy, history and every RNG state from ``RUN_DIR/last.pt``; because the data
order and augmentation are functions of ``(seed, epoch, rank)``, the resumed run ends with
exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn

from spikedistill.atomic import atomic_write_text
from spikedistill.config import Config, build_config
from spikedistill.engine import distributed as D
from spikedistill.engine.build import seed_everything
from spikedistill.engine.checkpoint import (BEST_NAME, LAST_NAME, capture_rng_state,
                                            load_checkpoint, load_state_checked,
                                            make_checkpoint, restore_rng_state)
from spikedistill.errors import CheckpointError, ConfigError

TEACHER_RECORD = "teacher.json"


@dataclass
class RunState:
    """Everything a run holds while it trains (what callbacks see)."""

    cfg: Config
    info: D.DistInfo
    run_dir: Path
    distiller: Any
    student: nn.Module                  # unwrapped (no DDP / compile)
    teacher: Optional[nn.Module]
    extras: Dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    steps_per_epoch: int
    global_batch: int
    amp_dtype: Optional[torch.dtype]
    teacher_acc: Optional[float] = None
    teacher_info: Optional[Dict[str, Any]] = None
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    resumed: bool = False
    splits: Any = None
    train_loader: Any = None
    test_loader: Any = None

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def device(self) -> torch.device:
        return self.info.device


def warn(msg: str) -> None:
    """A warning on stderr, rank 0 only."""
    if D.is_main_process():
        print(f"WARNING: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# run directory
# --------------------------------------------------------------------------------------------

def make_run_dir(cfg: Config) -> Path:
    """``run.out_dir/run.name`` (a timestamped name when unset; the same on every rank).

    A named directory that already holds a checkpoint is refused (resume it instead).
    """
    out = Path(cfg.run.out_dir).expanduser()
    if cfg.run.name:
        run_dir = out / cfg.run.name
        if (run_dir / LAST_NAME).exists() or (run_dir / BEST_NAME).exists():
            raise ConfigError(f"run directory '{run_dir}' already holds a checkpoint; resume it "
                              f"with --resume {run_dir} or choose another run.name")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{cfg.model.name}-{cfg.distill.method}-{stamp}"
        run_dir = out / base
        i = 1
        while run_dir.exists():
            run_dir = out / f"{base}-{i}"
            i += 1
    return Path(D.broadcast_object(str(run_dir)))


def config_for_resume(resume: Union[str, os.PathLike], overrides=()) -> Config:
    """The config stored in ``RESUME/last.pt`` with ``overrides`` (``"a.b=v"``) applied."""
    ckpt = load_checkpoint(resume)
    return build_config(ckpt["config"], overrides)


# --------------------------------------------------------------------------------------------
# checkpoints <-> run state
# --------------------------------------------------------------------------------------------

def restore_weights(run: RunState, ckpt: Dict[str, Any]) -> None:
    """Student and extras weights, epoch counter, best accuracy and history from ``ckpt``
    (before any DDP wrapping)."""
    load_state_checked(run.student, ckpt["model"], "model", ckpt["path"])
    saved_extras = ckpt.get("extras") or {}
    if set(saved_extras) != set(run.extras):
        raise CheckpointError(f"checkpoint '{ckpt['path']}' holds extras "
                              f"{sorted(saved_extras)} but method '{run.cfg.distill.method}' "
                              f"has {sorted(run.extras)}")
    for name, module in run.extras.items():
        load_state_checked(module, saved_extras[name], f"extra '{name}'", ckpt["path"])
    run.start_epoch = int(ckpt["epoch"])
    run.best_acc = float(ckpt["best_acc"]) if ckpt.get("best_acc") is not None else -1.0
    run.best_epoch = int(ckpt.get("best_epoch") or 0)
    run.history = list(ckpt.get("history") or [])
    run.resumed = True
    if run.teacher_acc is None:
        run.teacher_acc = ckpt.get("teacher_acc")


def restore_optimisation(run: RunState, ckpt: Dict[str, Any]) -> None:
    """Optimiser, scheduler and GradScaler states from ``ckpt``; a run resumed with another
    ``train.epochs`` gets a warning (its schedule is stretched)."""
    try:
        if ckpt.get("optimizer") is not None:
            run.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scheduler") is not None:
            run.scheduler.load_state_dict(ckpt["scheduler"])
        if run.scaler is not None and ckpt.get("scaler"):
            run.scaler.load_state_dict(ckpt["scaler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint '{ckpt['path']}': optimiser/scheduler state does "
                              f"not fit this config ({exc})") from None
    epochs = run.cfg.train.epochs
    saved_epochs = int((ckpt.get("config") or {}).get("train", {}).get("epochs", epochs))
    if saved_epochs != epochs:
        warn(f"resuming a {saved_epochs}-epoch run with train.epochs={epochs}: the LR "
             "schedule is stretched from here on (not identical to a fresh run)")


def seed_training_rng(run: RunState, ckpt: Optional[Dict[str, Any]]) -> None:
    """The per-rank RNG stream of the training steps: restored from the checkpoint, or seeded
    from ``train.seed`` and the rank."""
    rank, world = run.info.rank, run.info.world_size
    if ckpt is not None and ckpt.get("rng"):
        states = ckpt["rng"]
        restore_rng_state(states[rank] if len(states) == world else states[0])
    else:
        seed_everything(run.cfg.train.seed + 7919 * (rank + 1))


def checkpoint_of(run: RunState, epoch: int) -> Dict[str, Any]:
    """A checkpoint of the run after ``epoch`` completed epochs (every rank contributes its
    RNG state, so call it on every rank)."""
    rng = D.gather_objects(capture_rng_state())
    meta = {"teacher": run.teacher_info} if run.teacher_info else None
    return make_checkpoint(model=run.student, config=run.cfg.to_dict(), epoch=epoch,
                           extras=run.extras, optimizer=run.optimizer, scheduler=run.scheduler,
                           scaler=run.scaler, best_acc=run.best_acc if run.best_acc >= 0 else None,
                           best_epoch=run.best_epoch or None, history=run.history, rng=rng,
                           teacher_acc=run.teacher_acc, extra_meta=meta)


# --------------------------------------------------------------------------------------------
# teacher provenance
# --------------------------------------------------------------------------------------------

def teacher_record(provenance: Dict[str, Any], test_acc: Optional[float], cfg: Config
                   ) -> Dict[str, Any]:
    """``RUN_DIR/teacher.json``: where the teacher came from (source, arch, weights file and
    its sha256, our checkpoint's path), how the run used it, and its measured test accuracy."""
    rec = dict(provenance)
    rec.update(test_acc=test_acc, dataset=cfg.data.name, mode=cfg.teacher.mode,
               frames=cfg.teacher.frames)
    return rec


def write_teacher_record(run_dir: Path, record: Dict[str, Any]) -> Path:
    """Write the teacher record atomically (JSON, sorted keys)."""
    return atomic_write_text(Path(run_dir) / TEACHER_RECORD,
                             json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


__all__ = ["RunState", "TEACHER_RECORD", "checkpoint_of", "config_for_resume", "make_run_dir",
           "restore_optimisation", "restore_weights", "seed_training_rng", "teacher_record",
           "warn", "write_teacher_record"]
