"""Run records: ``metrics.csv``, TensorBoard scalars and the progress bar (rank 0 only).

The CSV is rewritten from the full history after every epoch (atomically), so a resumed run's
file always matches its checkpoint, even when the crash happened after a CSV row was written but
before the matching ``last.pt``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spikedistill.atomic import atomic_write_text

#: Leading CSV columns; loss columns (``loss``, ``loss_<term>``) follow, then the trailing ones.
LEAD_COLUMNS = ("epoch", "lr")
TRAIL_COLUMNS = ("train_acc", "test_acc", "best_acc", "images_per_s", "epoch_time_s",
                 "eval_time_s", "time_s")


def csv_columns(history: Sequence[Dict[str, Any]]) -> List[str]:
    """Column order for ``metrics.csv``: epoch, lr, every loss term, accuracies, speed, time."""
    losses: List[str] = []
    others: List[str] = []
    for row in history:
        for key in row:
            if key in LEAD_COLUMNS or key in TRAIL_COLUMNS:
                continue
            target = losses if key == "loss" or key.startswith("loss_") else others
            if key not in target:
                target.append(key)
    losses.sort(key=lambda k: (k != "loss", k))
    return list(LEAD_COLUMNS) + losses + list(TRAIL_COLUMNS) + others


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_metrics_csv(path: os.PathLike, history: Sequence[Dict[str, Any]]) -> None:
    """Write the per-epoch history as CSV (atomically: temporary file + rename)."""
    path = Path(path)
    cols = csv_columns(history)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for row in history:
        writer.writerow([_fmt(row.get(c)) for c in cols])
    atomic_write_text(path, buf.getvalue())


def read_metrics_csv(path: os.PathLike) -> List[Dict[str, str]]:
    """The rows of a ``metrics.csv`` as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class RunLogger:
    """CSV + optional TensorBoard writer for one run directory (create it on rank 0 only)."""

    def __init__(self, run_dir: os.PathLike, *, tensorboard: bool = True,
                 purge_step: Optional[int] = None):
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.tb = None
        if tensorboard:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"),
                                        purge_step=purge_step)
            except Exception as exc:  # tensorboard missing or broken: keep training
                print(f"warning: TensorBoard logging disabled ({type(exc).__name__}: {exc})",
                      file=sys.stderr)
                self.tb = None

    def log_epoch(self, history: Sequence[Dict[str, Any]]) -> None:
        """Rewrite the CSV and add the last history row to TensorBoard."""
        write_metrics_csv(self.csv_path, history)
        if self.tb is None or not history:
            return
        row = history[-1]
        step = int(row["epoch"])
        for key, value in row.items():
            if key == "epoch" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "loss" or key.startswith("loss_"):
                tag = f"train/{key}"
            elif key == "train_acc":
                tag = "train/acc"
            elif key == "test_acc":
                tag = "test/acc"
            elif key == "best_acc":
                tag = "test/best_acc"
            else:
                tag = f"run/{key}"
            self.tb.add_scalar(tag, float(value), step)
        self.tb.flush()

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, float(value), step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def make_progress(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, or None when disabled / not a terminal / tqdm missing."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
