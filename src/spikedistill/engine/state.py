"""Run state: everything a run holds while it trains (:class:`RunState`, what callbacks see).

Its neighbours: :mod:`~spikedistill.engine.run_dir` (the run directory, opened and tidied),
:mod:`~spikedistill.engine.lock` (the directory's lock), :mod:`~spikedistill.engine.resume`
(resume, checkpoints made from and restored into a :class:`RunState`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from spikedistill.config import Config
from spikedistill.engine import distributed as D


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
    best_acc: float = -1.0              # test accuracy of the epoch best.pt holds
    best_epoch: int = 0
    best_score: float = -1.0            # what chose it: validation accuracy, else test accuracy
    history: List[Dict[str, Any]] = field(default_factory=list)
    resumed: bool = False
    splits: Any = None
    train_loader: Any = None
    test_loader: Any = None
    val_loader: Any = None              # data.val_fraction: the held-out validation images

    @property
    def selected_on(self) -> str:
        """The split that chooses ``best.pt``: ``"val"`` with a validation split, else ``"test"``."""
        return "val" if self.val_loader is not None else "test"

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def device(self) -> torch.device:
        return self.info.device


def best_score_of(history: List[Dict[str, Any]], best_epoch: int, best_acc: float) -> float:
    """The score that chose epoch ``best_epoch``: its ``val_acc`` in ``history`` when the run
    holds out a validation split, else ``best_acc`` (the test accuracy)."""
    for row in history:
        if row.get("epoch") == best_epoch and row.get("val_acc") is not None:
            return float(row["val_acc"])
    return best_acc


__all__ = ["RunState", "best_score_of"]
