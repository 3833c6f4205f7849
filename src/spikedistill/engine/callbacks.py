"""Callbacks: what happens around the training loop besides training.

A callback is any object with some of these methods (every one optional, all called on every
rank; a callback that writes files checks ``run.is_main``)::

    on_run_start(run)                    after building and resuming, before the first epoch
    on_epoch_start(run, epoch)           epoch is 0-based
    on_step_end(run, step_in_epoch, meter)
    on_epoch_end(run, record)            after the epoch's checkpoint; record is its history row
    on_run_end(run, result)              after the last epoch, with the RunResult

``run`` is the :class:`~spikedistill.engine.state.RunState`. The engine's own records
(``metrics.csv``, TensorBoard, the epoch line, the progress bar) are callbacks too; commands add
theirs (training curves, which live in :mod:`spikedistill.analysis`) through
``run_training(..., callbacks=[...])``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from spikedistill.engine import distributed as D
from spikedistill.engine.logging import RunLogger, make_progress

#: The progress bar reads the device-side running sums every this many steps.
PROGRESS_EVERY = 20

HOOKS = ("on_run_start", "on_epoch_start", "on_step_end", "on_epoch_end", "on_run_end")


class Callback:
    """Base class with every hook a no-op (subclassing it is optional)."""

    def on_run_start(self, run) -> None:
        pass

    def on_epoch_start(self, run, epoch: int) -> None:
        pass

    def on_step_end(self, run, step_in_epoch: int, meter) -> None:
        pass

    def on_epoch_end(self, run, record: Dict[str, Any]) -> None:
        pass

    def on_run_end(self, run, result) -> None:
        pass


class CallbackList:
    """Calls a hook on every callback that has it, in order."""

    def __init__(self, callbacks: Sequence[Any] = ()):
        for cb in callbacks:
            if not any(callable(getattr(cb, h, None)) for h in HOOKS):
                raise TypeError(f"callback {cb!r} has none of the hooks {', '.join(HOOKS)}")
        self.callbacks = list(callbacks)

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if hook not in HOOKS:
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                fn = getattr(cb, hook, None)
                if callable(fn):
                    fn(*args, **kwargs)
        return call

    @property
    def wants_steps(self) -> bool:
        return any(callable(getattr(cb, "on_step_end", None))
                   and type(cb).on_step_end is not Callback.on_step_end for cb in self.callbacks)


class RecordsCallback(Callback):
    """``metrics.csv`` (rewritten from the full history every epoch, so a resumed run's file
    matches its checkpoint) and TensorBoard scalars, on rank 0."""

    def __init__(self):
        self.logger: Optional[RunLogger] = None

    def on_run_start(self, run) -> None:
        if not run.is_main:
            return
        self.logger = RunLogger(run.run_dir, tensorboard=run.cfg.run.tensorboard,
                                purge_step=(run.start_epoch + 1) if run.resumed else None)
        if run.history:
            self.logger.log_epoch(run.history)  # rewrite metrics.csv to match the checkpoint
        if run.teacher_acc is not None and not run.resumed:
            self.logger.log_scalar("test/teacher_acc", run.teacher_acc, 0)

    def on_epoch_end(self, run, record) -> None:
        if self.logger is not None:
            self.logger.log_epoch(run.history)

    def on_run_end(self, run, result) -> None:
        self.close()

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


class EpochLineCallback(Callback):
    """One line per epoch on rank 0: lr, every loss term, accuracies, speed."""

    def on_epoch_end(self, run, record) -> None:
        losses_txt = "  ".join(f"{k[5:]} {v:.4g}" for k, v in record.items()
                               if k.startswith("loss_"))
        test_acc = record.get("test_acc")
        acc_txt = (f"test {test_acc:.2%} (best {run.best_acc:.2%} @ {run.best_epoch})"
                   if test_acc is not None else "test -")
        if record.get("val_acc") is not None:
            acc_txt = (f"val {record['val_acc']:.2%}  test {test_acc:.2%} (chosen on val: "
                       f"{run.best_score:.2%} @ {run.best_epoch}, test {run.best_acc:.2%})")
        D.print_main(f"epoch {record['epoch']}/{run.cfg.train.epochs}  lr {record['lr']:.4g}  "
                     f"{losses_txt}  train {record['train_acc']:.2%}  {acc_txt}  "
                     f"{record['images_per_s']:.0f} img/s  {record['epoch_time_s']:.1f}s")


class ProgressBarCallback(Callback):
    """A tqdm bar per epoch on a terminal (``run.progress``, rank 0): loss, accuracy, img/s,
    read from the device every :data:`PROGRESS_EVERY` steps."""

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, run, epoch: int) -> None:
        self.bar = make_progress(run.steps_per_epoch, f"epoch {epoch + 1}/{run.cfg.train.epochs}",
                                 run.is_main and run.cfg.run.progress)

    def on_step_end(self, run, step_in_epoch: int, meter) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        n = step_in_epoch + 1
        if n % PROGRESS_EVERY == 0 or n == run.steps_per_epoch:
            elapsed = max(time.perf_counter() - meter.t0, 1e-9)
            self.bar.set_postfix(loss=f"{(meter.total_sum / n).item():.4f}",
                                 acc=f"{(meter.correct / max(meter.seen, 1)).item():.2%}",
                                 img_s=f"{meter.seen * run.world_size / elapsed:.0f}")

    def on_epoch_end(self, run, record) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochHookCallback(Callback):
    """The legacy ``on_epoch_end(epoch, record)`` function of :func:`run_training`."""

    def __init__(self, hook: Callable[[int, Dict[str, Any]], None]):
        self.hook = hook

    def on_epoch_end(self, run, record) -> None:
        self.hook(int(record["epoch"]), record)


class CompileTimeCallback(Callback):
    """With ``train.compile``: one line on rank 0 after the run's first training step, its wall
    time (synchronised) from the epoch's start. ``torch.compile`` is lazy, so that step is where
    the student and the teacher are compiled: the line is the compile time (plus one step)."""

    def __init__(self):
        self.reported = False
        self.first_step_s: Optional[float] = None

    def on_step_end(self, run, step_in_epoch: int, meter) -> None:
        if self.reported:
            return
        self.reported = True
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        self.first_step_s = time.perf_counter() - meter.t0
        if run.is_main:
            print(f"train.compile: first training step took {self.first_step_s:.1f} s "
                  "(torch.compile of the student and the teacher included; the evaluation's "
                  "first batch compiles the eval-mode graph)", flush=True)


def engine_callbacks() -> list:
    """The engine's own callbacks, in the order they run."""
    return [ProgressBarCallback(), RecordsCallback(), EpochLineCallback()]


__all__ = ["Callback", "CallbackList", "CompileTimeCallback", "EpochHookCallback", "EpochLineCallback", "HOOKS",
           "PROGRESS_EVERY", "ProgressBarCallback", "RecordsCallback", "engine_callbacks"]
