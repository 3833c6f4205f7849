"""One training step, one training epoch, and evaluation.

:func:`train_step` is the unit the benchmarks time: forward through the method (``L = sum_i
L_i`` of its already weighted terms), backward, optimiser and scheduler step. It is the step
:func:`train_one_epoch` runs, so a benchmark of it measures the product.

Loss sums and correct counts stay on the device during an epoch and are read once at its end
(all-reduced over ranks); callbacks see the running sums after every step (the progress bar
reads them every few steps only).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch
import torch.nn as nn

from spikedistill.distill.base import hard_labels, teacher_input, time_mean
from spikedistill.distill.context import StepContext
from spikedistill.engine import distributed as D
from spikedistill.engine.build import autocast_context, resolve_amp
from spikedistill.errors import SpikeDistillError

Losses = Dict[str, torch.Tensor]


def sync(device: torch.device) -> None:
    """Wait for the device (CUDA) so that wall-clock times measure finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def takes_context(distiller) -> bool:
    """Whether ``distiller.forward_train`` accepts ``ctx`` (a method written against the older
    two-argument contract ``forward_train(x, y)`` runs without a step context)."""
    try:
        params = inspect.signature(distiller.forward_train).parameters
    except (TypeError, ValueError):
        return True
    return "ctx" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                  for p in params.values())


def distill_scale(step: int, warmup_steps: int) -> float:
    """``s = min(1, (step + 1) / warmup_steps)`` for the 0-based global ``step`` (1 when
    ``warmup_steps`` is 0): the factor of every loss term but ``ce`` during
    ``distill.warmup_epochs`` (mdistiller's DKD warm-up, ``min(epoch / warmup, 1)``, taken per
    step instead of per epoch)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def scale_distill_terms(losses: Losses, scale: float) -> Losses:
    """``{ce: L_ce} + {i: s L_i for every other term i}`` (the same dict when ``s = 1``)."""
    if scale == 1.0:
        return losses
    return {k: (v if k == "ce" else v * scale) for k, v in losses.items()}


def train_step(distiller, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, *,
               scheduler: Any = None, scaler: Any = None, device: torch.device,
               amp_dtype: Optional[torch.dtype] = None, ctx: Optional[StepContext] = None,
               pass_ctx: bool = True, clear_teacher_grads: bool = False,
               distill_factor: float = 1.0) -> Tuple[torch.Tensor, Losses, torch.Tensor]:
    """One optimisation step; returns ``(logits z_s, losses {name: L_i}, L = sum_i L_i)``.

    ``(z_s, {L_i}) = distiller.forward_train(x, y, ctx=ctx)`` under autocast (``amp_dtype``),
    every term but ``ce`` times ``distill_factor`` (:func:`distill_scale`), then ``grad L``
    (scaled by ``scaler`` for fp16), the optimiser step, and one scheduler step.
    ``clear_teacher_grads`` drops the gradients that backward leaves on a train-mode
    (``teacher.mode=released``) teacher, which no optimiser owns.
    """
    with autocast_context(device, amp_dtype):
        if pass_ctx:
            logits, losses = distiller.forward_train(x, y, ctx=ctx)
        else:
            logits, losses = distiller.forward_train(x, y)
    if not losses:
        raise SpikeDistillError(f"method '{getattr(distiller, 'method_name', '?')}' returned "
                                "no losses")
    losses = scale_distill_terms(losses, distill_factor)
    total = None
    for v in losses.values():
        total = v if total is None else total + v
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    if clear_teacher_grads and distiller.teacher is not None:
        for p in distiller.teacher.parameters():
            p.grad = None
    return logits, losses, total


class EpochMeter:
    """Device-side running sums of one epoch: every loss term, the total, correct, seen."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: Dict[str, torch.Tensor] = {}
        self.total_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.seen = 0
        self.steps = 0
        self.t0 = time.perf_counter()

    @torch.no_grad()
    def add(self, logits: torch.Tensor, y: torch.Tensor, losses: Losses, total: torch.Tensor):
        for k, v in losses.items():
            acc_k = self.sums.get(k)
            v = v.detach().to(torch.float64)
            self.sums[k] = v.clone() if acc_k is None else acc_k + v
        self.total_sum += total.detach().to(torch.float64)
        # soft (mixup / cutmix) targets count the dominant label: argmax z_s == argmax y~
        self.correct += (logits.detach().argmax(dim=1) == hard_labels(y)).sum()
        self.seen += int(y.shape[0])
        self.steps += 1

    def reduce(self) -> Dict[str, Any]:
        """One synchronisation (all ranks): means of every term over the batches, the mean
        total, train accuracy and the number of images."""
        keys = sorted(self.sums)
        d = self.device
        packed = torch.stack([self.total_sum, self.correct,
                              torch.tensor(float(self.seen), dtype=torch.float64, device=d),
                              torch.tensor(float(self.steps), dtype=torch.float64, device=d)]
                             + [self.sums[k] for k in keys])
        D.all_reduce_sum(packed)
        vals = packed.tolist()
        n_batches = max(vals[3], 1.0)
        return {"loss_means": {k: vals[4 + i] / n_batches for i, k in enumerate(keys)},
                "loss": vals[0] / n_batches, "train_acc": vals[1] / max(vals[2], 1.0),
                "images": int(vals[2])}


@dataclass
class EpochResult:
    """What :func:`train_one_epoch` measured (all ranks together)."""

    loss: float
    loss_means: Dict[str, float]
    train_acc: float
    images: int
    time_s: float
    lr: float


StepHook = Callable[[int, EpochMeter], None]


def train_one_epoch(distiller, loader, optimizer: torch.optim.Optimizer, *, epoch: int,
                    epochs: int, steps_per_epoch: int, device: torch.device,
                    amp_dtype: Optional[torch.dtype] = None, scheduler: Any = None,
                    scaler: Any = None, clear_teacher_grads: bool = False,
                    on_step_end: Optional[StepHook] = None,
                    distill_warmup_steps: int = 0) -> EpochResult:
    """Train (0-based) ``epoch``: at most ``steps_per_epoch`` :func:`train_step` calls, each
    with its :class:`StepContext` and its :func:`distill_scale` over ``distill_warmup_steps``;
    ``on_step_end(step_in_epoch, meter)`` after each. A non-finite mean loss is a
    SpikeDistillError naming the term."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    distiller.train()
    lr_now = float(optimizer.param_groups[0]["lr"])
    pass_ctx = takes_context(distiller)
    meter = EpochMeter(device)
    sync(device)
    meter.t0 = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step >= steps_per_epoch:
            break
        ctx = StepContext.at(epoch, step, epochs=epochs, steps_per_epoch=steps_per_epoch)
        logits, losses, total = train_step(distiller, x, y, optimizer, scheduler=scheduler,
                                           scaler=scaler, device=device, amp_dtype=amp_dtype,
                                           ctx=ctx, pass_ctx=pass_ctx,
                                           clear_teacher_grads=clear_teacher_grads,
                                           distill_factor=distill_scale(ctx.step,
                                                                        distill_warmup_steps))
        meter.add(logits, y, losses, total)
        if on_step_end is not None:
            on_step_end(step, meter)
    sync(device)
    epoch_time = time.perf_counter() - meter.t0
    stats = meter.reduce()
    for k, v in list(stats["loss_means"].items()) + [("total", stats["loss"])]:
        if not math.isfinite(v):
            raise SpikeDistillError(f"training diverged: loss '{k}' is {v} in epoch "
                                    f"{epoch + 1}; lower train.lr or check the method weights")
    return EpochResult(loss=stats["loss"], loss_means=stats["loss_means"],
                       train_acc=stats["train_acc"], images=stats["images"], time_s=epoch_time,
                       lr=lr_now)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: Union[str, torch.device] = "cpu",
             amp: Union[str, torch.dtype, None] = "auto", *, reduce: bool = True,
             channels_last: bool = False, frames: str = "mean") -> float:
    """Top-1 accuracy (a fraction) of ``model`` over ``loader`` (yielding ``(x, y)``).

    Correct and total counts are accumulated on the device and read once. With ``reduce`` and
    an initialised process group the counts are summed over ranks, so when each rank iterates
    a disjoint shard the result equals a single-process evaluation of the whole set. The model
    is put in eval mode and restored to its previous mode afterwards. An ANN given frames
    ``[T, B, C, H, W]`` sees them as ``frames`` says (``teacher.frames``).
    """
    device = torch.device(device)
    dtype, _ = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    ann = not getattr(model, "is_spiking", False)
    try:
        with torch.inference_mode():
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(device, dtype):
                    xin, steps = teacher_input(x, frames) if ann else (x, None)
                    out = model(xin)
                logits = time_mean(out[0] if isinstance(out, (tuple, list)) else out, steps)
                counts[0] += (logits.argmax(dim=1) == y).sum()
                counts[1] += y.numel()
    finally:
        model.train(was_training)
    counts = counts.clone()
    if reduce:
        D.all_reduce_sum(counts)
    correct, total = counts.tolist()
    return correct / total if total > 0 else float("nan")


__all__ = ["EpochMeter", "EpochResult", "evaluate", "sync", "takes_context", "train_one_epoch",
           "train_step"]
