"""The training loop: one loop for ANN teachers and SNN students, single process or DDP.

:func:`run_training` builds the data, the model (``cfg.model``), the optional frozen teacher
(``cfg.teacher.checkpoint``) and the method (``cfg.distill.method``), then trains with SGD or
AdamW under a per-step cosine / one-cycle / constant schedule, evaluates every
``train.eval_every`` epochs and at the end, and records the run in its directory::

    RUN_DIR/config.yaml     resolved config (written at start)
    RUN_DIR/metrics.csv     one row per epoch: lr, every loss term, train/test accuracy, speed
    RUN_DIR/tensorboard/    the same scalars (run.tensorboard)
    RUN_DIR/last.pt         every run.save_every epochs and at the end
    RUN_DIR/best.pt         on every new best test accuracy

Accuracies are fractions in [0, 1]. Loss sums and correct counts stay on the device during an
epoch and are synchronised once at its end (the progress bar reads them every
``PROGRESS_EVERY`` steps only).

Resume (``resume=RUN_DIR``) restores the model, extras, optimiser, scheduler, GradScaler, epoch
counter, best accuracy, history and every RNG state from ``RUN_DIR/last.pt``; because the data
order and augmentation are functions of ``(seed, epoch, rank)``, the resumed run ends with
exactly the weights of an uninterrupted one. Without an explicit ``cfg`` the config stored in
the checkpoint is used (it is the one that produced the weights).

Under ``torchrun`` (``WORLD_SIZE > 1``) the student and every trainable extra are wrapped in
DistributedDataParallel (the frozen teacher is not), each rank trains on its shard of every
epoch's permutation, BatchNorm buffers are synchronised from rank 0 before evaluation and
checkpointing, evaluation runs on disjoint test shards whose counts are all-reduced, and only
rank 0 writes files or prints.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from spikedistill.config import Config, build_config, save_config
from spikedistill.engine import distributed as D
from spikedistill.engine.checkpoint import (BEST_NAME, LAST_NAME, capture_rng_state,
                                            check_same_model, load_checkpoint,
                                            load_model_from_checkpoint, load_state_checked,
                                            make_checkpoint, restore_rng_state,
                                            save_checkpoint)
from spikedistill.engine.logging import RunLogger, make_progress
from spikedistill.errors import CheckpointError, ConfigError, SpikeDistillError

#: The progress bar reads the device-side running sums every this many steps.
PROGRESS_EVERY = 20

EpochHook = Callable[[int, Dict[str, Any]], None]


@dataclass
class RunResult:
    """What a finished :func:`run_training` call reports.

    ``loss_means`` are the means of every loss term over the **last** epoch trained (each
    epoch's means are in ``history``). Accuracies are fractions. ``images_per_s`` is the
    training throughput (all ranks together, evaluation excluded) of this call;
    ``wall_time_s`` is this call's wall time.
    """

    run_dir: str
    best_acc: float
    last_acc: float
    best_epoch: int
    epochs: int
    history: List[Dict[str, Any]]
    loss_means: Dict[str, float]
    teacher_acc: Optional[float]
    images_per_s: float
    wall_time_s: float
    global_batch: int
    world_size: int = 1
    model_name: str = ""
    method: str = ""
    T: Optional[int] = None
    start_epoch: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)
    #: the trained network (unwrapped, on the training device, eval mode) for callers that
    #: continue in the same process; not part of the printed/serialised result
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------------
# small pieces
# --------------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_amp(amp: Union[str, torch.dtype, None], device: torch.device
                ) -> Tuple[Optional[torch.dtype], bool]:
    """``(autocast dtype or None, needs GradScaler)`` for a ``train.amp`` value on ``device``.

    ``auto``: bf16 on CUDA, fp32 elsewhere; ``fp16`` needs CUDA (and uses a GradScaler).
    """
    if isinstance(amp, torch.dtype):
        return (None if amp == torch.float32 else amp), amp == torch.float16
    amp = amp or "auto"
    if amp == "auto":
        return (torch.bfloat16 if device.type == "cuda" else None), False
    if amp == "fp32":
        return None, False
    if amp == "bf16":
        return torch.bfloat16, False
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("config key 'train.amp': fp16 needs a CUDA device "
                              f"(training on {device}); use bf16, fp32 or auto")
        return torch.float16, True
    raise ConfigError(f"config key 'train.amp': expected auto, bf16, fp16 or fp32, got {amp!r}")


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device`` (nothing for fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_determinism(deterministic: bool) -> None:
    """Deterministic kernels (``train.deterministic``) or the fastest ones (cuDNN autotuning).

    On CPU the loop is deterministic either way; on CUDA bitwise-reproducible runs (and hence
    resumes that match an uninterrupted run exactly) need deterministic kernels.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: Union[str, torch.device] = "cpu",
             amp: Union[str, torch.dtype, None] = "auto", *, reduce: bool = True,
             channels_last: bool = False) -> float:
    """Top-1 accuracy (a fraction) of ``model`` over ``loader`` (yielding ``(x, y)``).

    Correct and total counts are accumulated on the device and read once. With ``reduce`` and
    an initialised process group the counts are summed over ranks, so when each rank iterates
    a disjoint shard the result equals a single-process evaluation of the whole set. The model
    is put in eval mode and restored to its previous mode afterwards.
    """
    device = torch.device(device)
    dtype, _ = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    try:
        with torch.inference_mode():
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(device, dtype):
                    out = model(x)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                counts[0] += (logits.argmax(dim=1) == y).sum()
                counts[1] += y.numel()
    finally:
        model.train(was_training)
    counts = counts.clone()
    if reduce:
        D.all_reduce_sum(counts)
    correct, total = counts.tolist()
    return correct / total if total > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def per_rank_batch(train_cfg, world_size: int) -> Tuple[int, int]:
    """``(per-rank batch, global batch)`` from ``train.batch_size`` / ``train.batch_size_is``."""
    bs = int(train_cfg.batch_size)
    if train_cfg.batch_size_is == "global":
        if bs % world_size != 0:
            raise ConfigError(f"config key 'train.batch_size': a global batch of {bs} does not "
                              f"divide evenly over {world_size} processes (train.batch_size_is="
                              "global); choose a multiple of the world size")
        return bs // world_size, bs
    return bs, bs * world_size


def load_data(cfg: Config):
    """The dataset described by ``cfg.data`` (CPU uint8 tensors)."""
    from spikedistill.data import load_from_config

    return load_from_config(cfg.data)


def build_augmentations(cfg: Config, splits):
    """``(train transform, test transform)`` from the ``data.augment`` switches and the
    dataset's mean/std (the test transform only normalises, or only scales to [0, 1] when
    ``data.augment.normalize`` is off)."""
    from dataclasses import asdict

    from spikedistill.data import BatchAugment, build_augment

    switches = asdict(cfg.data.augment)
    switches["erasing_scale"] = tuple(switches["erasing_scale"])
    train_aug = build_augment(True, splits.mean, splits.std, **switches)
    if cfg.data.augment.normalize:
        test_aug = build_augment(False, splits.mean, splits.std)
    else:
        test_aug = BatchAugment(mean=tuple(splits.mean), std=tuple(splits.std), normalize=False)
    return train_aug, test_aug


def build_loaders(cfg: Config, splits, device: torch.device, rank: int, world_size: int,
                  batch: int):
    """``(train_loader, test_loader)`` on ``device``.

    The train loader shuffles with ``(train.seed, epoch)``, shards over ranks (equal batch
    counts) and augments; the test loader iterates this rank's disjoint shard of the test set in
    order with normalisation only, so all-reduced counts cover every test image exactly once.
    """
    from spikedistill.data import DeviceLoader

    train_aug, test_aug = build_augmentations(cfg, splits)
    train = DeviceLoader(splits.train.images, splits.train.labels, batch, shuffle=True,
                         drop_last=True, augment=train_aug, device=device, seed=cfg.train.seed,
                         rank=rank, world_size=world_size, channels_last=cfg.train.channels_last)
    test = eval_loader_for(splits, cfg.train.eval_batch_size, device, rank, world_size,
                           test_aug, channels_last=cfg.train.channels_last)
    return train, test


def eval_loader_for(splits, batch_size: int, device: torch.device, rank: int = 0,
                    world_size: int = 1, augment=None, *, channels_last: bool = False,
                    shuffle: bool = False):
    """An evaluation loader over this rank's shard of ``splits.test`` (normalised with the
    dataset's mean/std unless ``augment`` is given): in order, or with ``shuffle`` in one fixed
    permutation (seed 0, epoch 0)."""
    from spikedistill.data import DeviceLoader, build_augment

    if augment is None:
        augment = build_augment(False, splits.mean, splits.std)
    return DeviceLoader(splits.test.images, splits.test.labels, batch_size, shuffle=shuffle,
                        drop_last=False, augment=augment, device=device, seed=0, rank=rank,
                        world_size=world_size, channels_last=channels_last)


# --------------------------------------------------------------------------------------------
# optimiser and schedule
# --------------------------------------------------------------------------------------------

def build_optimizer(params: List[nn.Parameter], train_cfg) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov, weight decay) or AdamW from the ``train`` section."""
    if not params:
        raise ConfigError("nothing to train: the model and the method's extras have no "
                          "parameters that require gradients")
    if train_cfg.optimizer == "sgd":
        if train_cfg.nesterov and train_cfg.momentum <= 0:
            raise ConfigError("config key 'train.nesterov': Nesterov momentum needs "
                              f"train.momentum > 0, got {train_cfg.momentum}")
        return torch.optim.SGD(params, lr=train_cfg.lr, momentum=train_cfg.momentum,
                               nesterov=train_cfg.nesterov, weight_decay=train_cfg.weight_decay)
    if train_cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    raise ConfigError(f"config key 'train.optimizer': expected sgd or adamw, got "
                      f"{train_cfg.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg, steps_per_epoch: int):
    """A per-step LR schedule over ``train.epochs * steps_per_epoch`` steps.

    ``cosine``: linear warm-up for ``warmup_epochs`` then cosine to 0; ``constant``: warm-up then
    flat; ``onecycle``: the one-cycle policy (as :class:`torch.optim.lr_scheduler.OneCycleLR`
    with its defaults, without momentum cycling): cosine from ``lr / 25`` up to ``lr`` over
    ``warmup_epochs`` (30 % of the run when 0), then cosine down to ``lr / 25 / 1e4``.
    Implemented as a :class:`~torch.optim.lr_scheduler.LambdaLR`, so any run length works and
    the state dict holds no closures.
    """
    total = max(1, int(train_cfg.epochs) * int(steps_per_epoch))
    warmup = int(round(float(train_cfg.warmup_epochs) * steps_per_epoch))
    warmup = min(max(warmup, 0), total)
    kind = train_cfg.scheduler
    if kind not in ("cosine", "constant", "onecycle"):
        raise ConfigError(f"config key 'train.scheduler': expected cosine, onecycle or constant, "
                          f"got {kind!r}")
    initial, final = 1.0 / 25.0, 1.0 / 25.0 / 1e4
    up = max(1, warmup if warmup > 0 else int(round(0.3 * total)))

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, pct))))

    def factor(step: int) -> float:
        if kind == "onecycle":
            if step < up:
                return anneal(initial, 1.0, step / up)
            return anneal(1.0, final, (step - up) / max(1, total - up))
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
# the run
# --------------------------------------------------------------------------------------------

def run_training(cfg: Optional[Config] = None, *, resume: Optional[Union[str, os.PathLike]] = None,
                 teacher_checkpoint: Optional[str] = None,
                 on_epoch_end: Optional[EpochHook] = None) -> RunResult:
    """Train ``cfg.model`` with method ``cfg.distill.method``; see the module docstring.

    ``resume``: a run directory (or a ``last.pt`` in one) to continue; with ``cfg=None`` the
    checkpoint's config is used. ``teacher_checkpoint`` overrides ``cfg.teacher.checkpoint``.
    ``on_epoch_end(epoch, record)`` is called on every rank after an epoch's checkpoint has been
    written (``epoch`` counts completed epochs); exceptions it raises abort the run (tests use it
    to simulate a crash).
    """
    t_start = time.perf_counter()
    ckpt: Optional[Dict[str, Any]] = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if cfg is None:
            cfg = build_config(ckpt["config"])
    if cfg is None:
        raise ConfigError("run_training needs a config (or resume=RUN_DIR)")
    cfg = cfg.copy()
    if teacher_checkpoint is not None:
        cfg.teacher.checkpoint = str(teacher_checkpoint)
    tc = cfg.train

    if tc.threads and tc.threads > 0:
        torch.set_num_threads(int(tc.threads))
    configure_determinism(bool(tc.deterministic))
    info = D.init_distributed(tc.device)
    try:
        return _run(cfg, info, ckpt, on_epoch_end, t_start)
    finally:
        D.cleanup(info)


def _warn(msg: str) -> None:
    if D.is_main_process():
        print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def _log(msg: str) -> None:
    D.print_main(msg)


def _plot_curves(run_dir: Path) -> None:
    """Loss/accuracy curves next to ``metrics.csv`` (``run.plots``); a plotting failure only
    warns."""
    try:
        from spikedistill.analysis.curves import plot_run_curves
        plot_run_curves(run_dir)
    except Exception as exc:  # matplotlib missing, headless quirks: the run itself succeeded
        _warn(f"could not draw the training curves ({type(exc).__name__}: {exc})")


def _run(cfg: Config, info: D.DistInfo, ckpt: Optional[Dict[str, Any]],
         on_epoch_end: Optional[EpochHook], t_start: float) -> RunResult:
    from spikedistill.distill import build_method, unwrap
    from spikedistill.models import build_model, model_kwargs

    tc = cfg.train
    device, rank, world = info.device, info.rank, info.world_size
    is_main = info.is_main
    amp_dtype, use_scaler = resolve_amp(tc.amp, device)
    batch, global_batch = per_rank_batch(tc, world)

    # ---- data ------------------------------------------------------------------------------
    splits = load_data(cfg)
    K = int(splits.num_classes)
    train_loader, test_loader = build_loaders(cfg, splits, device, rank, world, batch)
    steps_per_epoch = len(train_loader)
    if tc.max_steps_per_epoch and tc.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, int(tc.max_steps_per_epoch))
    if steps_per_epoch < 1:
        raise ConfigError(f"config key 'train.batch_size': the training split of {cfg.data.name} "
                          f"has {len(splits.train)} images, fewer than one batch of {batch} per "
                          f"process over {world} process(es)")

    # ---- models ----------------------------------------------------------------------------
    seed_everything(tc.seed)
    kwargs = model_kwargs(cfg.model, K, int(splits.in_channels))
    if ckpt is not None:
        check_same_model(ckpt, cfg.model.name, kwargs)
    student = build_model(cfg.model, K, int(splits.in_channels))

    teacher = None
    teacher_acc: Optional[float] = None
    if cfg.teacher.checkpoint:
        teacher, tmeta = load_model_from_checkpoint(cfg.teacher.checkpoint, device)
        t_classes = int(getattr(teacher, "num_classes", tmeta["model_kwargs"].get("num_classes", -1)))
        if t_classes != K:
            raise CheckpointError(f"teacher checkpoint '{cfg.teacher.checkpoint}' predicts "
                                  f"{t_classes} classes but dataset '{cfg.data.name}' has {K}; "
                                  "expected a teacher trained on the same dataset")
        if tc.channels_last:
            teacher.to(memory_format=torch.channels_last)

    distiller = build_method(cfg.distill.method, student, teacher, cfg.distill,
                             teacher_mode=cfg.teacher.mode)
    distiller.label_smoothing = float(tc.label_smoothing)
    distiller.to(device)
    if tc.channels_last:
        for module in distiller.trainable_modules().values():
            module.to(memory_format=torch.channels_last)

    if teacher is not None:
        teacher_acc = evaluate(teacher, test_loader, device, amp_dtype or torch.float32)
        chance = 1.0 / K
        if cfg.teacher.min_accuracy is not None and teacher_acc < cfg.teacher.min_accuracy:
            raise CheckpointError(f"teacher checkpoint '{cfg.teacher.checkpoint}' reaches "
                                  f"{teacher_acc:.2%} test accuracy on {cfg.data.name}, below "
                                  f"teacher.min_accuracy={cfg.teacher.min_accuracy:.2%}")
        if teacher_acc <= chance + 1e-12:
            _warn(f"the teacher '{cfg.teacher.checkpoint}' reaches only {teacher_acc:.2%} test "
                  f"accuracy on {cfg.data.name}, at or below chance (1/{K} = {chance:.2%}); "
                  "distilling from it will not help (wrong checkpoint or dataset?)")
        else:
            _log(f"teacher {cfg.teacher.checkpoint}: test accuracy {teacher_acc:.2%}")

    extras = dict(distiller.extras.items())

    # ---- restore weights before wrapping ------------------------------------------------------
    start_epoch = 0
    best_acc, best_epoch = -1.0, 0
    history: List[Dict[str, Any]] = []
    if ckpt is not None:
        load_state_checked(student, ckpt["model"], "model", ckpt["path"])
        saved_extras = ckpt.get("extras") or {}
        if set(saved_extras) != set(extras):
            raise CheckpointError(f"checkpoint '{ckpt['path']}' holds extras "
                                  f"{sorted(saved_extras)} but method '{cfg.distill.method}' "
                                  f"has {sorted(extras)}")
        for name, module in extras.items():
            load_state_checked(module, saved_extras[name], f"extra '{name}'", ckpt["path"])
        start_epoch = int(ckpt["epoch"])
        best_acc = float(ckpt["best_acc"]) if ckpt.get("best_acc") is not None else -1.0
        best_epoch = int(ckpt.get("best_epoch") or 0)
        history = list(ckpt.get("history") or [])
        if teacher_acc is None:
            teacher_acc = ckpt.get("teacher_acc")

    # ---- DDP -------------------------------------------------------------------------------
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_kwargs: Dict[str, Any] = {"find_unused_parameters": bool(tc.find_unused_parameters)}
        if device.type == "cuda":
            ddp_kwargs.update(device_ids=[device.index], output_device=device.index)
        distiller.student = DDP(student, **ddp_kwargs)
        for name, module in extras.items():
            if any(p.requires_grad for p in module.parameters()):
                distiller.extras[name] = DDP(module, **ddp_kwargs)
    if tc.compile:
        distiller.student = torch.compile(distiller.student)

    # ---- optimiser -------------------------------------------------------------------------
    params, seen_ids = [], set()
    for p in distiller.trainable_parameters():
        if p.requires_grad and id(p) not in seen_ids:
            seen_ids.add(id(p))
            params.append(p)
    optimizer = build_optimizer(params, tc)
    scheduler = build_scheduler(optimizer, tc, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    if ckpt is not None:
        try:
            if ckpt.get("optimizer") is not None:
                optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scheduler") is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint '{ckpt['path']}': optimiser/scheduler state does "
                                  f"not fit this config ({exc})") from None
        saved_epochs = int((ckpt.get("config") or {}).get("train", {}).get("epochs", tc.epochs))
        if saved_epochs != tc.epochs:
            _warn(f"resuming a {saved_epochs}-epoch run with train.epochs={tc.epochs}: the LR "
                  "schedule is stretched from here on (not identical to a fresh run)")

    # ---- run directory, records ------------------------------------------------------------
    run_dir = Path(ckpt["path"]).parent if ckpt is not None else make_run_dir(cfg)
    logger: Optional[RunLogger] = None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        logger = RunLogger(run_dir, tensorboard=cfg.run.tensorboard,
                           purge_step=(start_epoch + 1) if ckpt is not None else None)
        if history:
            logger.log_epoch(history)  # rewrite metrics.csv to match the checkpoint
        if teacher_acc is not None and ckpt is None:
            logger.log_scalar("test/teacher_acc", teacher_acc, 0)
    _log(f"run {run_dir}: {cfg.model.name} ({sum(p.numel() for p in student.parameters()):,} "
         f"parameters) method={cfg.distill.method} data={cfg.data.name} "
         f"({len(splits.train)} train / {len(splits.test)} test, K={K}) device={device} "
         f"world={world} global_batch={global_batch} steps/epoch={steps_per_epoch} "
         f"amp={amp_dtype or 'fp32'}" + (f" resume@epoch {start_epoch}" if ckpt else ""))

    # ---- RNG: per-rank stream for the training steps --------------------------------------
    if ckpt is not None and ckpt.get("rng"):
        states = ckpt["rng"]
        restore_rng_state(states[rank] if len(states) == world else states[0])
    else:
        seed_everything(tc.seed + 7919 * (rank + 1))

    def checkpoint(epoch: int) -> Dict[str, Any]:
        rng = D.gather_objects(capture_rng_state())
        return make_checkpoint(model=student, config=cfg.to_dict(), epoch=epoch, extras=extras,
                               optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                               best_acc=best_acc if best_acc >= 0 else None,
                               best_epoch=best_epoch or None, history=history, rng=rng,
                               teacher_acc=teacher_acc)

    # ---- loop ------------------------------------------------------------------------------
    last_acc: Optional[float] = history[-1].get("test_acc") if history else None
    loss_means: Dict[str, float] = {}
    train_images, train_time = 0, 0.0
    for epoch in range(start_epoch, tc.epochs):
        epoch_no = epoch + 1
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        distiller.train()
        lr_now = float(optimizer.param_groups[0]["lr"])
        sums: Dict[str, torch.Tensor] = {}
        total_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        bar = make_progress(steps_per_epoch, f"epoch {epoch_no}/{tc.epochs}",
                            is_main and cfg.run.progress)
        _sync(device)
        t0 = time.perf_counter()
        step = 0
        for step, (x, y) in enumerate(train_loader):
            if step >= steps_per_epoch:
                break
            with autocast_context(device, amp_dtype):
                logits, losses = distiller.forward_train(x, y)
            if not losses:
                raise SpikeDistillError(f"method '{cfg.distill.method}' returned no losses")
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
            scheduler.step()
            if teacher is not None and cfg.teacher.mode == "released":
                for p in teacher.parameters():
                    p.grad = None
            with torch.no_grad():
                for k, v in losses.items():
                    acc_k = sums.get(k)
                    v = v.detach().to(torch.float64)
                    sums[k] = v.clone() if acc_k is None else acc_k + v
                total_sum += total.detach().to(torch.float64)
                correct += (logits.detach().argmax(dim=1) == y).sum()
            seen += int(y.shape[0])
            if bar is not None:
                bar.update(1)
                if (step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps_per_epoch:
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{(total_sum / (step + 1)).item():.4f}",
                                    acc=f"{(correct / max(seen, 1)).item():.2%}",
                                    img_s=f"{seen * world / elapsed:.0f}")
        n_steps = min(step + 1, steps_per_epoch)
        _sync(device)
        epoch_time = time.perf_counter() - t0
        if bar is not None:
            bar.close()

        # one synchronisation per epoch: [total, correct, seen, steps, each loss]
        keys = sorted(sums)
        packed = torch.stack([total_sum, correct,
                              torch.tensor(float(seen), dtype=torch.float64, device=device),
                              torch.tensor(float(n_steps), dtype=torch.float64, device=device)]
                             + [sums[k] for k in keys])
        D.all_reduce_sum(packed)
        vals = packed.tolist()
        n_batches = max(vals[3], 1.0)
        loss_means = {k: vals[4 + i] / n_batches for i, k in enumerate(keys)}
        mean_total = vals[0] / n_batches
        train_acc = vals[1] / max(vals[2], 1.0)
        images = int(vals[2])
        train_images += images
        train_time += epoch_time
        for k, v in list(loss_means.items()) + [("total", mean_total)]:
            if not math.isfinite(v):
                raise SpikeDistillError(f"training diverged: loss '{k}' is {v} in epoch "
                                        f"{epoch_no}; lower train.lr or check the method weights")

        # evaluation (buffers synchronised from rank 0 first, so every replica is the same)
        test_acc: Optional[float] = None
        eval_time = 0.0
        if info.distributed:
            D.broadcast_buffers(student)
            for module in extras.values():
                D.broadcast_buffers(module)
        if epoch_no % tc.eval_every == 0 or epoch_no == tc.epochs:
            t_eval = time.perf_counter()
            test_acc = evaluate(unwrap(distiller.student), test_loader, device,
                                amp_dtype or torch.float32)
            eval_time = time.perf_counter() - t_eval
            last_acc = test_acc
        new_best = test_acc is not None and test_acc > best_acc
        if new_best:
            best_acc, best_epoch = test_acc, epoch_no

        record: Dict[str, Any] = {"epoch": epoch_no, "lr": lr_now, "loss": mean_total}
        record.update({f"loss_{k}": v for k, v in loss_means.items()})
        record.update(train_acc=train_acc, test_acc=test_acc,
                      best_acc=best_acc if best_acc >= 0 else None,
                      images_per_s=images / max(epoch_time, 1e-9), epoch_time_s=epoch_time,
                      eval_time_s=eval_time, time_s=time.perf_counter() - t_start)
        history.append(record)

        # checkpoints (rank 0 writes; every rank contributes its RNG state)
        want_last = (epoch_no % max(1, cfg.run.save_every) == 0) or epoch_no == tc.epochs
        if new_best or want_last:
            state = checkpoint(epoch_no)
            if is_main:
                if new_best:
                    save_checkpoint(state, run_dir / BEST_NAME)
                if want_last:
                    save_checkpoint(state, run_dir / LAST_NAME)
            del state
            D.barrier()
        if is_main and logger is not None:
            logger.log_epoch(history)
        losses_txt = "  ".join(f"{k} {v:.4f}" for k, v in loss_means.items())
        acc_txt = (f"test {test_acc:.2%} (best {best_acc:.2%} @ {best_epoch})"
                   if test_acc is not None else "test -")
        _log(f"epoch {epoch_no}/{tc.epochs}  lr {lr_now:.4g}  {losses_txt}  train {train_acc:.2%}  "
             f"{acc_txt}  {record['images_per_s']:.0f} img/s  {epoch_time:.1f}s")
        if on_epoch_end is not None:
            on_epoch_end(epoch_no, record)

    if logger is not None:
        logger.close()
        if cfg.run.plots and history:
            _plot_curves(run_dir)
    if not history:
        raise SpikeDistillError("no epoch was trained")
    if start_epoch >= tc.epochs:
        _log(f"run {run_dir} had already finished {start_epoch} epoch(s); nothing to train")
        last = history[-1]
        loss_means = {k[5:]: v for k, v in last.items() if k.startswith("loss_")}
    if last_acc is None:
        last_acc = float("nan")
    T = getattr(unwrap(student), "T", None) if getattr(student, "is_spiking", False) else None
    return RunResult(
        run_dir=str(run_dir), best_acc=best_acc if best_acc >= 0 else float("nan"),
        last_acc=float(last_acc), best_epoch=best_epoch, epochs=int(history[-1]["epoch"]),
        history=history, loss_means=loss_means, teacher_acc=teacher_acc,
        images_per_s=train_images / train_time if train_time > 0 else 0.0,
        wall_time_s=time.perf_counter() - t_start, global_batch=global_batch, world_size=world,
        model_name=cfg.model.name, method=cfg.distill.method, T=T, start_epoch=start_epoch,
        model=student.eval())
