"""Loss and accuracy curves from runs' ``metrics.csv`` files.

``metrics.csv`` (written by :mod:`spikedistill.engine.logging`) has one row per epoch with the
columns ``epoch, lr, loss, loss_<term>..., train_acc, test_acc, best_acc, images_per_s,
epoch_time_s, eval_time_s, time_s``; accuracies are fractions in [0, 1] and are plotted in %.
Empty cells (e.g. ``test_acc`` of an epoch without evaluation) are skipped.

:func:`plot_run_curves` draws one run (losses, accuracies, learning rate) next to its CSV;
:func:`plot_runs` overlays several runs (total loss and test accuracy) in one PNG;
:class:`CurvesCallback` draws a run's curves when it ends (:func:`training_callbacks`: what every
training command attaches).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

from spikedistill.analysis.figures import pyplot, save_figure
from spikedistill.errors import SpikeDistillError

PathLike = Union[str, Path]
METRICS_NAME = "metrics.csv"


def _metrics_path(run: PathLike) -> Path:
    p = Path(run)
    return p / METRICS_NAME if p.is_dir() else p


def read_metrics(run: PathLike) -> Dict[str, List[float]]:
    """Columns of ``RUN_DIR/metrics.csv`` (or of the CSV file given) as lists of floats, NaN
    for empty cells. SpikeDistillError naming the file when it is missing or malformed."""
    path = _metrics_path(run)
    if not path.is_file():
        raise SpikeDistillError(f"'{path}' does not exist; expected a run directory with "
                                f"{METRICS_NAME} (written after every epoch)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "epoch" not in rows[0]:
        raise SpikeDistillError(f"'{path}' has no epoch rows (expected a header with 'epoch' "
                                "and one row per epoch)")
    cols: Dict[str, List[float]] = {k: [] for k in rows[0]}
    for i, row in enumerate(rows, start=2):
        for k in cols:
            v = (row.get(k) or "").strip()
            try:
                cols[k].append(float(v) if v else math.nan)
            except ValueError:
                raise SpikeDistillError(f"'{path}', line {i}: column '{k}' holds {v!r}, "
                                        "expected a number") from None
    return cols


def _xy(cols: Dict[str, List[float]], key: str, scale: float = 1.0):
    xs, ys = [], []
    for x, y in zip(cols["epoch"], cols.get(key, [])):
        if not math.isnan(y):
            xs.append(x)
            ys.append(y * scale)
    return xs, ys


def loss_columns(cols: Dict[str, List[float]]) -> List[str]:
    """``loss`` (the total) first, then each ``loss_<term>``."""
    return [k for k in cols if k == "loss"] + sorted(k for k in cols if k.startswith("loss_"))


def _plt():
    plt = pyplot()
    return plt


#: a loss term whose largest magnitude is below this fraction of the total's is drawn on its
#: own panel (on the total's scale it would be a flat line at 0)
SMALL_TERM = 0.05


def small_terms(cols: Dict[str, List[float]]) -> List[str]:
    """The ``loss_<term>`` columns with ``max |term| < SMALL_TERM * max |total|``."""
    def peak(key: str) -> float:
        return max((abs(v) for v in _xy(cols, key)[1]), default=0.0)

    total = peak("loss")
    return [k for k in loss_columns(cols) if k != "loss" and total > 0
            and peak(k) < SMALL_TERM * total]


def plot_run_curves(run_dir: PathLike, out: PathLike = None) -> List[Path]:
    """Curves of one run: a PNG with the panels training loss (the total and the large terms),
    the small loss terms on their own scale (:func:`small_terms`; only when there are some),
    train and test accuracy in %, and the learning rate (log scale), written to ``out``
    (default ``RUN_DIR/curves.png``). Returns the paths written."""
    cols = read_metrics(run_dir)
    run = Path(run_dir)
    out = Path(out) if out is not None else (run if run.is_dir() else run.parent) / "curves.png"
    plt = _plt()
    small = small_terms(cols)
    n = 4 if small else 3
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4), dpi=90)
    loss_ax, acc_ax, lr_ax = axes[0], axes[n - 2], axes[n - 1]
    for k in loss_columns(cols):
        xs, ys = _xy(cols, k)
        if xs:
            ax = axes[1] if k in small else loss_ax
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None,
                    label=("total" if k == "loss" else k[5:]),
                    linewidth=2.0 if k == "loss" else 1.2)
    loss_ax.set_title("training loss")
    if small:
        axes[1].set_title(f"small loss terms (own scale, < {SMALL_TERM:g} x total)")
    for k, label in (("train_acc", "train"), ("test_acc", "test")):
        xs, ys = _xy(cols, k, 100.0)
        if xs:
            acc_ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    acc_ax.set_title("top-1 accuracy (%)")
    xs, ys = _xy(cols, "lr")
    if xs:
        lr_ax.plot(xs, ys, marker="." if len(xs) < 30 else None, color="tab:gray")
        if min(ys) > 0:
            lr_ax.set_yscale("log")
    lr_ax.set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(str(run if run.is_dir() else run.parent), fontsize=9)
    return [save_figure(fig, out)]


def plot_runs(run_dirs: Sequence[PathLike], out: PathLike) -> Path:
    """Overlay several runs: total training loss and test (and dashed train) accuracy, one
    colour per run, labelled by the run directory's name."""
    if not run_dirs:
        raise SpikeDistillError("plot: give at least one run directory")
    data = [(Path(r), read_metrics(r)) for r in run_dirs]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=90)
    for i, (run, cols) in enumerate(data):
        color = f"C{i % 10}"
        label = run.name if run.is_dir() else run.parent.name
        xs, ys = _xy(cols, "loss")
        if xs:
            axes[0].plot(xs, ys, color=color, label=label)
        xs, ys = _xy(cols, "test_acc", 100.0)
        if xs:
            axes[1].plot(xs, ys, color=color, label=f"{label} test")
        xs, ys = _xy(cols, "train_acc", 100.0)
        if xs:
            axes[1].plot(xs, ys, color=color, linestyle="--", alpha=0.6, label=f"{label} train")
    axes[0].set_title("total training loss")
    axes[1].set_title("top-1 accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return save_figure(fig, out)



class CurvesCallback:
    """Training callback (``run_training(..., callbacks=[CurvesCallback()])``): at the end of a
    run with ``run.plots`` on, rank 0 draws the loss/accuracy curves next to ``metrics.csv``
    (:func:`plot_run_curves`). A plotting failure only warns: the run itself succeeded."""

    def on_run_end(self, run, result) -> None:
        if not (run.is_main and run.cfg.run.plots and result.history):
            return
        try:
            plot_run_curves(run.run_dir)
        except Exception as exc:  # matplotlib missing, headless quirks
            print(f"WARNING: could not draw the training curves ({type(exc).__name__}: {exc})",
                  file=sys.stderr, flush=True)


def training_callbacks() -> List[Any]:
    """The callbacks every training command attaches (curves: ``run.plots``)."""
    return [CurvesCallback()]


__all__ = ["CurvesCallback", "loss_columns", "plot_run_curves", "plot_runs", "read_metrics",
           "training_callbacks"]
