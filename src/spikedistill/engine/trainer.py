"""The training run: one loop for ANN teachers and SNN students, single process or DDP.

:func:`run_training` builds the data, the student (``cfg.model``, any ``model.source``), the
optional frozen teacher (our checkpoint ``teacher.checkpoint``, or ``teacher.source`` /
``arch`` / ``weights``) and the method (``cfg.distill.method``), then trains with SGD or AdamW
under a per-step cosine / one-cycle / constant schedule, evaluates every ``train.eval_every``
epochs and at the end, and records the run in its directory::

    RUN_DIR/config.yaml     resolved config (written at start)
    RUN_DIR/teacher.json    the teacher's provenance (source, arch, weights, sha256) and test accuracy
    RUN_DIR/metrics.csv     one row per epoch: lr, every loss term, train/test accuracy, speed
    RUN_DIR/tensorboard/    the same scalars (run.tensorboard)
    RUN_DIR/last.pt         every run.save_every epochs and at the end
    RUN_DIR/best.pt         on every new best validation accuracy (data.val_fraction), else test
    RUN_DIR/run.lock        while the run is alive: its pid, host and start time

The parts live in their own modules: the data pipeline :mod:`spikedistill.data.pipeline`
(loaders, input shape and channels), :mod:`~spikedistill.engine.build` (models, method,
optimiser, schedule), :mod:`~spikedistill.engine.state` (the run's state),
:mod:`~spikedistill.engine.run_dir` (run directory), :mod:`~spikedistill.engine.lock` (its lock),
:mod:`~spikedistill.engine.resume` (checkpoints, resume),
:mod:`~spikedistill.engine.loop` (``train_step``, ``train_one_epoch``, ``evaluate``) and
:mod:`~spikedistill.engine.callbacks` (records, progress bar, epoch hooks). Accuracies are
fractions in [0, 1]. Every step's method call gets a
:class:`~spikedistill.distill.context.StepContext`.

Resume (``resume=RUN_DIR``): see :mod:`~spikedistill.engine.resume`. Without an explicit ``cfg``
the config stored in the checkpoint is used (it is the one that produced the weights).

Under ``torchrun`` (``WORLD_SIZE > 1``) the student and every trainable extra are wrapped in
DistributedDataParallel (the frozen teacher is not), each rank trains on its shard of every
epoch's permutation, BatchNorm buffers are synchronised from rank 0 before evaluation and
checkpointing, evaluation runs on disjoint test shards whose counts are all-reduced, and only
rank 0 writes files or prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from spikedistill.config import Config, build_config, save_config
from spikedistill.engine import distributed as D
from spikedistill.data.pipeline import open_pipeline
from spikedistill.engine.build import (autocast_context,
                                       build_distiller, build_grad_scaler, build_optimizer,
                                       build_scheduler, build_student, build_teacher,
                                       configure_determinism, determinism_flags,
                                       per_rank_batch, resolve_amp, restore_determinism,
                                       seed_everything,
                                       teacher_label, trainable_parameters, wrap_for_training)
from spikedistill.engine.callbacks import (PROGRESS_EVERY, Callback, CallbackList, CompileTimeCallback,
                                           EpochHookCallback, engine_callbacks)
from spikedistill.engine.checkpoint import BEST_NAME, LAST_NAME, check_same_model, save_checkpoint
from spikedistill.engine.health import firing_rates, is_at_chance, silent_layers
from spikedistill.engine.distributed import warn
from spikedistill.engine.loop import evaluate, sync, train_one_epoch, train_step
from spikedistill.engine.resume import (check_resume_changes, checkpoint_of, config_for_resume,
                                        restore_optimisation, restore_weights, seed_training_rng)
from spikedistill.engine.run_dir import (make_run_dir, open_run_dir, teacher_record,
                                         write_teacher_record)
from spikedistill.engine.state import RunState
from spikedistill.errors import CheckpointError, ConfigError, SpikeDistillError

EpochHook = Callable[[int, Dict[str, Any]], None]


@dataclass
class RunResult:
    """What a finished :func:`run_training` call reports.

    ``loss_means`` are the means of every loss term over the **last** epoch trained (each
    epoch's means are in ``history``). Accuracies are fractions. ``images_per_s`` is the
    training throughput (all ranks together, evaluation excluded) of this call;
    ``wall_time_s`` is this call's wall time. ``teacher`` is the teacher's provenance record
    (``RUN_DIR/teacher.json``: source, arch, weights, sha256, test_acc), None without one.
    ``best_acc`` is the test accuracy of the epoch ``best.pt`` holds, chosen on ``selected_on``:
    ``"val"`` (highest ``best_val_acc`` on the held-out ``data.val_fraction`` images) or
    ``"test"`` (no validation split: the highest test accuracy itself).
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
    teacher: Optional[Dict[str, Any]] = None
    selected_on: str = "test"
    best_val_acc: Optional[float] = None
    #: dead student (:mod:`~spikedistill.engine.health`): the last accuracy is at chance, and
    #: the spiking layers that never fired on the first test batch after training
    at_chance: bool = False
    silent_layers: List[str] = field(default_factory=list)
    spiking_layers: int = 0
    #: the trained network (unwrapped, on the training device, eval mode) for callers that
    #: continue in the same process; not part of the printed/serialised result
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)


def run_training(cfg: Optional[Config] = None, *, resume: Optional[Union[str, os.PathLike]] = None,
                 teacher_checkpoint: Optional[str] = None,
                 on_epoch_end: Optional[EpochHook] = None,
                 callbacks: Sequence[Any] = (), overwrite: bool = False) -> RunResult:
    """Train ``cfg.model`` with method ``cfg.distill.method``; see the module docstring.

    ``resume``: a run directory (its newest intact checkpoint, see
    :func:`~spikedistill.engine.resume.find_resume_checkpoint`) or a checkpoint file to
    continue; with ``cfg=None`` the checkpoint's config is used. ``overwrite``: a new run in a
    named directory that holds a checkpoint starts over (the previous run's files are removed)
    instead of being refused. ``teacher_checkpoint`` overrides ``cfg.teacher.checkpoint``.
    ``on_epoch_end(epoch, record)`` is called on every rank after an epoch's checkpoint has been
    written (``epoch`` counts completed epochs); exceptions it raises abort the run (tests use it
    to simulate a crash). ``callbacks``: objects with any of the hooks of
    :mod:`spikedistill.engine.callbacks`, run after the engine's own.

    The run directory's lock (rank 0) is held from before anything is built until this call
    returns or raises; ``SIGTERM`` ends the run like an exception (files are closed, temporary
    files removed, the lock released).
    """
    t_start = time.perf_counter()
    if cfg is None and resume is None:
        raise ConfigError("run_training needs a config (or resume=RUN_DIR)")
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite starts it over: give one "
                          "of them")
    device = cfg.train.device if cfg is not None else config_for_resume(resume).train.device
    flags = determinism_flags()
    with _sigterm_as_exit():
        info = D.init_distributed(device)
        opened = None
        try:
            opened = open_run_dir(cfg, info, resume=resume, overwrite=overwrite)
            ckpt = opened.ckpt
            if cfg is None:
                cfg = build_config(ckpt["config"])
            cfg = cfg.copy()
            if teacher_checkpoint is not None:
                cfg.teacher.checkpoint = str(teacher_checkpoint)
            if ckpt is not None:
                check_resume_changes(cfg, ckpt)
            tc = cfg.train
            if tc.threads and tc.threads > 0:
                torch.set_num_threads(int(tc.threads))
            configure_determinism(bool(tc.deterministic))
            hooks = engine_callbacks() + list(callbacks)
            if tc.compile:
                hooks.append(CompileTimeCallback())
            if on_epoch_end is not None:
                hooks.append(EpochHookCallback(on_epoch_end))
            run = setup_run(cfg, info, ckpt, opened.run_dir)
            del ckpt
            opened.ckpt = None
            return fit(run, CallbackList(hooks), t_start)
        finally:
            if opened is not None:
                opened.release()
            D.cleanup(info)
            restore_determinism(flags)


@contextlib.contextmanager
def _sigterm_as_exit():
    """While training in the main thread, ``SIGTERM`` (what ``kill`` and ``torchrun`` send)
    raises ``SystemExit(143)`` so that every ``finally`` runs; the previous handler comes back
    afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # no signals here (embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _log(msg: str) -> None:
    D.print_main(msg)


# --------------------------------------------------------------------------------------------
# building the run
# --------------------------------------------------------------------------------------------

def check_teacher(cfg: Config, teacher_acc: float, provenance: Dict[str, Any],
                  num_classes: int) -> None:
    """Refuse a teacher below ``teacher.min_accuracy``; warn about one at or below chance."""
    label = teacher_label(provenance)
    chance = 1.0 / num_classes
    if cfg.teacher.min_accuracy is not None and teacher_acc < cfg.teacher.min_accuracy:
        raise CheckpointError(f"{label} reaches {teacher_acc:.2%} test accuracy on "
                              f"{cfg.data.name}, below "
                              f"teacher.min_accuracy={cfg.teacher.min_accuracy:.2%}")
    if teacher_acc <= chance + 1e-12:
        warn(f"the {label} reaches only {teacher_acc:.2%} test accuracy on {cfg.data.name}, at "
             f"or below chance (1/{num_classes} = {chance:.2%}); distilling from it will not "
             "help (wrong checkpoint or dataset?)")
    else:
        _log(f"{label}: test accuracy {teacher_acc:.2%}")


def trains_a_teacher(cfg: Config) -> bool:
    """True when ``cfg.model`` is an ANN (a ``train-teacher`` run, or an ANN student)."""
    from spikedistill.models import config_role

    return config_role(cfg.model) == "teacher"


def builds_a_teacher(cfg: Config) -> bool:
    """False only for an ANN trained by a method that needs no teacher (a ``train-teacher``
    run, cross-entropy): its ``teacher`` section then describes the network for later
    distillations, not a teacher of this run (``configs/imagenet/resnet34_teacher.yaml`` names
    torchvision's ResNet-34 there without weights). An ANN *student* distilled by ``kd`` (the
    evidence recipes' positive control) gets its teacher."""
    from spikedistill.distill import method_requires_teacher

    return not trains_a_teacher(cfg) or method_requires_teacher(cfg.distill.method)


def setup_run(cfg: Config, info: D.DistInfo, ckpt: Optional[Dict[str, Any]],
              run_dir: Optional[Path] = None) -> RunState:
    """Data, student, teacher, method, resume, DDP, optimiser, run directory: a ready
    :class:`RunState`. ``run_dir``: the directory :func:`~spikedistill.engine.run_dir.open_run_dir`
    opened (default: the checkpoint's folder, or :func:`make_run_dir`). ``config.yaml`` is
    written once everything is restored, so a refused resume leaves it as it was."""
    tc = cfg.train
    device, world = info.device, info.world_size
    amp_dtype, use_scaler = resolve_amp(tc.amp, device)
    batch, global_batch = per_rank_batch(tc, world)

    # data
    from spikedistill.models import input_frames

    pipe = open_pipeline(cfg.data, T=input_frames(cfg.model))
    splits = pipe.splits
    K = pipe.num_classes
    shape = pipe.input_shape
    train_loader, test_loader = pipe.loaders(batch, tc.eval_batch_size, device, seed=tc.seed,
                                             rank=info.rank, world_size=world,
                                             channels_last=tc.channels_last)
    steps_per_epoch = len(train_loader)
    if tc.max_steps_per_epoch and tc.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, int(tc.max_steps_per_epoch))
    if steps_per_epoch < 1:
        raise ConfigError(f"config key 'train.batch_size': the training split of {cfg.data.name} "
                          f"has {len(splits.train)} images, fewer than one batch of {batch} per "
                          f"process over {world} process(es)")

    # models and method
    student = build_student(cfg, K, pipe.in_channels_for(trains_a_teacher(cfg), cfg.teacher.frames),
                            shape)
    if ckpt is not None:
        check_same_model(ckpt, student.model_name, student.model_kwargs)
    teacher, provenance = (None, None)
    if builds_a_teacher(cfg):
        teacher, provenance = build_teacher(cfg, K, shape, device,
                                             pipe.ann_in_channels(cfg.teacher.frames))
    distiller = build_distiller(cfg, student, teacher, device)
    teacher_acc: Optional[float] = None
    if teacher is not None:
        teacher_acc = evaluate(teacher, test_loader, device, amp_dtype or torch.float32,
                               frames=cfg.teacher.frames)
        check_teacher(cfg, teacher_acc, provenance, K)
    extras = dict(distiller.extras.items())

    # optimisation (built on the unwrapped modules' parameters, as DDP shares them)
    run = RunState(cfg=cfg, info=info, run_dir=Path(), distiller=distiller, student=student,
                   teacher=teacher, extras=extras, optimizer=None, scheduler=None, scaler=None,
                   steps_per_epoch=steps_per_epoch, global_batch=global_batch,
                   amp_dtype=amp_dtype, teacher_acc=teacher_acc, splits=splits)
    if ckpt is not None:
        restore_weights(run, ckpt)
    if provenance is not None:
        run.teacher_info = teacher_record(provenance, run.teacher_acc, cfg)
    wrap_for_training(distiller, student, extras, info, tc)
    run.optimizer = build_optimizer(trainable_parameters(distiller), tc)
    run.scheduler = build_scheduler(run.optimizer, tc, steps_per_epoch)
    run.scaler = build_grad_scaler(use_scaler)
    if ckpt is not None:
        restore_optimisation(run, ckpt)
    run.train_loader, run.test_loader = train_loader, test_loader
    if getattr(splits, "val", None) is not None:
        run.val_loader = pipe.eval_loader(tc.eval_batch_size, device, info.rank, world,
                                          channels_last=tc.channels_last, split="val")

    # run directory and the records written once
    if run_dir is None:
        run_dir = Path(ckpt["path"]).parent if ckpt is not None else make_run_dir(cfg)
    run.run_dir = Path(run_dir)
    if info.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.run_dir / "config.yaml")
        pipe.write_split_record(run.run_dir, resume=ckpt is not None)
        if run.teacher_info is not None:
            write_teacher_record(run.run_dir, run.teacher_info)
    _log(f"run {run.run_dir}: {student.model_name} "
         f"({sum(p.numel() for p in student.parameters()):,} parameters) "
         f"method={cfg.distill.method} data={cfg.data.name} "
         f"({len(splits.train)} train / "
         + (f"{len(splits.val)} val / " if getattr(splits, "val", None) is not None else "")
         + f"{len(splits.test)} test, K={K}) device={device} "
         f"world={world} global_batch={global_batch} steps/epoch={steps_per_epoch} "
         f"amp={amp_dtype or 'fp32'}" + (f" resume@epoch {run.start_epoch}" if ckpt else ""))
    seed_training_rng(run, ckpt)
    return run


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------

def evaluate_epoch(run: RunState, epoch_no: int, split: str = "test") -> Optional[float]:
    """Test accuracy (``split="val"``: validation accuracy) after ``epoch_no`` epochs when
    ``train.eval_every`` (or the last epoch) asks for it; replicas' BatchNorm buffers are
    synchronised from rank 0 first."""
    from spikedistill.distill import unwrap

    tc = run.cfg.train
    if run.info.distributed:
        D.broadcast_buffers(run.student)
        for module in run.extras.values():
            D.broadcast_buffers(module)
    if epoch_no % tc.eval_every == 0 or epoch_no == tc.epochs:
        loader = run.val_loader if split == "val" else run.test_loader
        return evaluate(unwrap(run.distiller.student), loader, run.device,
                        run.amp_dtype or torch.float32, frames=run.cfg.teacher.frames)
    return None


def save_epoch_checkpoints(run: RunState, epoch_no: int, new_best: bool) -> None:
    """``best.pt`` on a new best, ``last.pt`` every ``run.save_every`` epochs and at the end
    (rank 0 writes; every rank contributes its RNG state)."""
    want_last = (epoch_no % max(1, run.cfg.run.save_every) == 0) or epoch_no == run.cfg.train.epochs
    if new_best or want_last:
        state = checkpoint_of(run, epoch_no)
        if run.is_main:
            if new_best:
                save_checkpoint(state, run.run_dir / BEST_NAME)
            if want_last:
                save_checkpoint(state, run.run_dir / LAST_NAME)
        del state
        D.barrier()


def final_firing_rates(run: RunState) -> Dict[str, float]:
    """Per-layer firing rates of the trained student on the first test batch ({} for an ANN
    student or without a test loader)."""
    student = run.student
    if not getattr(student, "is_spiking", False) or run.test_loader is None:
        return {}
    x, _ = next(iter(run.test_loader))
    with autocast_context(run.device, run.amp_dtype):
        return firing_rates(student, x.to(run.device))


def fit(run: RunState, callbacks: CallbackList, t_start: float) -> RunResult:
    """Train from ``run.start_epoch`` to ``train.epochs``, evaluating, checkpointing and
    calling the callbacks; returns the :class:`RunResult`."""
    cfg, tc = run.cfg, run.cfg.train
    last_acc: Optional[float] = run.history[-1].get("test_acc") if run.history else None
    loss_means: Dict[str, float] = {}
    train_images, train_time = 0, 0.0
    step_hook = None
    if callbacks.wants_steps:
        def step_hook(step, meter):
            callbacks.on_step_end(run, step, meter)
    callbacks.on_run_start(run)
    for epoch in range(run.start_epoch, tc.epochs):
        epoch_no = epoch + 1
        callbacks.on_epoch_start(run, epoch)
        res = train_one_epoch(run.distiller, run.train_loader, run.optimizer, epoch=epoch,
                              epochs=tc.epochs, steps_per_epoch=run.steps_per_epoch,
                              device=run.device, amp_dtype=run.amp_dtype,
                              scheduler=run.scheduler, scaler=run.scaler,
                              clear_teacher_grads=(run.teacher is not None
                                                   and cfg.teacher.mode == "released"),
                              on_step_end=step_hook,
                              distill_warmup_steps=round(cfg.distill.warmup_epochs
                                                         * run.steps_per_epoch))
        loss_means = res.loss_means
        train_images += res.images
        train_time += res.time_s

        t_eval = time.perf_counter()
        test_acc = evaluate_epoch(run, epoch_no)
        val_acc = evaluate_epoch(run, epoch_no, "val") if run.val_loader is not None else None
        eval_time = time.perf_counter() - t_eval if test_acc is not None else 0.0
        if test_acc is not None:
            last_acc = test_acc
        score = val_acc if run.val_loader is not None else test_acc
        new_best = score is not None and score > run.best_score
        if new_best:
            run.best_score, run.best_acc, run.best_epoch = score, test_acc, epoch_no

        record: Dict[str, Any] = {"epoch": epoch_no, "lr": res.lr, "loss": res.loss}
        record.update({f"loss_{k}": v for k, v in res.loss_means.items()})
        record.update(train_acc=res.train_acc, test_acc=test_acc,
                      best_acc=run.best_acc if run.best_acc >= 0 else None,
                      **({"val_acc": val_acc,
                          "best_val_acc": run.best_score if run.best_score >= 0 else None}
                         if run.val_loader is not None else {}),
                      images_per_s=res.images / max(res.time_s, 1e-9), epoch_time_s=res.time_s,
                      eval_time_s=eval_time, time_s=time.perf_counter() - t_start)
        run.history.append(record)
        save_epoch_checkpoints(run, epoch_no, new_best)
        callbacks.on_epoch_end(run, record)

    if not run.history:
        raise SpikeDistillError("no epoch was trained")
    if run.start_epoch >= tc.epochs:
        _log(f"run {run.run_dir} had already finished {run.start_epoch} epoch(s); nothing to train")
        loss_means = {k[5:]: v for k, v in run.history[-1].items() if k.startswith("loss_")}
    if last_acc is None:
        last_acc = float("nan")
    student = run.student
    T = getattr(student, "T", None) if getattr(student, "is_spiking", False) else None
    rates = final_firing_rates(run)
    result = RunResult(
        run_dir=str(run.run_dir), best_acc=run.best_acc if run.best_acc >= 0 else float("nan"),
        last_acc=float(last_acc), best_epoch=run.best_epoch,
        epochs=int(run.history[-1]["epoch"]), history=run.history, loss_means=loss_means,
        teacher_acc=run.teacher_acc,
        images_per_s=train_images / train_time if train_time > 0 else 0.0,
        wall_time_s=time.perf_counter() - t_start, global_batch=run.global_batch,
        world_size=run.world_size, model_name=getattr(student, "model_name", cfg.model.name),
        method=cfg.distill.method, T=T, start_epoch=run.start_epoch,
        teacher=dict(run.teacher_info) if run.teacher_info else None, model=student.eval(),
        selected_on=run.selected_on,
        at_chance=is_at_chance(last_acc, int(run.splits.num_classes), len(run.splits.test))
        if run.splits is not None else False,
        silent_layers=silent_layers(rates), spiking_layers=len(rates),
        best_val_acc=(run.best_score if run.val_loader is not None and run.best_score >= 0
                      else None))
    callbacks.on_run_end(run, result)
    return result


__all__ = ["PROGRESS_EVERY", "Callback", "RunResult", "autocast_context",
           "build_optimizer", "build_scheduler", "check_teacher", "config_for_resume",
           "evaluate", "fit", "make_run_dir", "per_rank_batch",
           "resolve_amp", "run_training", "seed_everything", "setup_run", "sync",
           "train_one_epoch", "train_step"]
