"""Building a run: student, teacher (any source, with provenance), method, optimiser,
schedule, precision, and the per-rank batch. Each function has one job;
:mod:`spikedistill.engine.trainer` calls them in order. The data come from the data pipeline
(:mod:`spikedistill.data.pipeline`).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from spikedistill.config import Config
from spikedistill.engine import distributed as D
from spikedistill.engine.checkpoint import load_model_from_checkpoint
from spikedistill.errors import CheckpointError, ConfigError
from spikedistill.models.external.weights import file_sha256

#: keys every teacher provenance record carries
PROVENANCE_KEYS = ("source", "arch", "weights", "sha256")


# --------------------------------------------------------------------------------------------
# seeds, precision, determinism
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


def determinism_flags() -> Dict[str, Any]:
    """The process-wide state :func:`configure_determinism` changes, for
    :func:`restore_determinism` (a run must not leave its flags to the next one)."""
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def restore_determinism(flags: Dict[str, Any]) -> None:
    """Put back what :func:`determinism_flags` recorded."""
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn_deterministic"]
    torch.use_deterministic_algorithms(flags["deterministic_algorithms"],
                                       warn_only=flags["warn_only"])
    if flags["CUBLAS_WORKSPACE_CONFIG"] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = flags["CUBLAS_WORKSPACE_CONFIG"]


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


def first_layer_in_channels(model: nn.Module) -> Optional[int]:
    """``in_channels`` of the first convolution of ``model`` (module order), None without one."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None


def check_teacher_input(cfg: Config, teacher: nn.Module, want: int, label: str) -> None:
    """ConfigError unless the teacher's first convolution takes the ``want`` channels that
    ``teacher.frames`` gives it (``stack``: ``T*C``, see
    :meth:`spikedistill.data.pipeline.DataPipeline.ann_in_channels`)."""
    got = first_layer_in_channels(teacher)
    if got is None or got == want:
        return
    how = (f"teacher.frames=stack gives it the T frames as {want} channels" if
           cfg.teacher.frames == "stack" else f"the data have {want} channels")
    hint = ("train it with train-teacher --set teacher.frames=stack (timm: teacher.kwargs.in_chans)"
            if cfg.teacher.frames == "stack" else "use the teacher.frames it was trained with")
    raise ConfigError(f"config key 'teacher.frames': {how}, but {label}'s first convolution "
                      f"takes {got}; {hint}")


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
    from spikedistill.config import SCHEDULERS

    if kind not in SCHEDULERS:
        raise ConfigError(f"config key 'train.scheduler': expected one of "
                          f"{', '.join(SCHEDULERS)}, got {kind!r}")
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
# models
# --------------------------------------------------------------------------------------------

def build_student(cfg: Config, num_classes: int, in_channels: int,
                  input_shape: Tuple[int, int, int]) -> nn.Module:
    """The network ``cfg.model`` describes (any ``model.source``), seeded with ``train.seed``
    first so that its initialisation is a function of the seed; the stages named by
    ``train.checkpoint_stages`` recompute their forward in backward
    (:mod:`spikedistill.models.checkpointing`)."""
    from spikedistill.models import build_model
    from spikedistill.models.checkpointing import apply_checkpointing

    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, num_classes, in_channels, input_shape=tuple(input_shape))
    apply_checkpointing(model, getattr(cfg.train, "checkpoint_stages", None))
    return model


def teacher_label(provenance: Dict[str, Any]) -> str:
    """How messages name a teacher: its checkpoint, or its source, architecture and weights."""
    if provenance.get("source") == "spikedistill":
        return f"teacher checkpoint '{provenance.get('checkpoint')}'"
    weights = provenance.get("weights")
    return (f"teacher {provenance.get('source')}:{provenance.get('arch')}"
            + (f" ('{weights}')" if weights else " (no weights file)"))


def build_teacher(cfg: Config, num_classes: int, input_shape: Tuple[int, int, int],
                  device: torch.device, in_channels: Optional[int] = None
                  ) -> Tuple[Optional[nn.Module], Optional[Dict[str, Any]]]:
    """``(teacher in eval mode on device, provenance)``, or ``(None, None)`` without a teacher.

    ``teacher.source: spikedistill`` loads our own checkpoint ``teacher.checkpoint``; any other
    source by :func:`spikedistill.models.external.build_external_teacher` (``teacher.zoo``: a
    shipped teacher, :func:`spikedistill.models.teacher_zoo.load_zoo_teacher`). This is the one
    function that builds a teacher: training, ``visualize`` and ``analyze``
    (:func:`spikedistill.analysis.loading.load_teacher`) all call it. The provenance records
    ``source``, ``arch``, ``weights`` (the file the weights came from; also ``checkpoint`` for
    our own) and the file's ``sha256``. A teacher that does not predict ``num_classes`` classes
    is refused, naming the file, and so is a spiking one unless ``teacher.allow_spiking``;
    ``in_channels``: what its first convolution must take (:func:`check_teacher_input`).
    """
    tcfg = cfg.teacher
    if getattr(tcfg, "zoo", None):
        from spikedistill.models.teacher_zoo import load_zoo_teacher

        teacher, provenance = load_zoo_teacher(tcfg.zoo, device)
        if int(teacher.num_classes) != num_classes:
            raise ConfigError(f"config key 'teacher.zoo': {tcfg.zoo!r} predicts "
                              f"{teacher.num_classes} classes but dataset '{cfg.data.name}' has "
                              f"{num_classes}; expected a teacher trained on the same dataset")
    elif tcfg.source == "spikedistill":
        if not tcfg.checkpoint:
            return None, None
        teacher, meta = load_model_from_checkpoint(tcfg.checkpoint, device)
        path = str(meta.get("path", tcfg.checkpoint))
        provenance: Dict[str, Any] = {
            "source": "spikedistill", "arch": meta["model_name"], "checkpoint": path,
            "weights": path, "sha256": file_sha256(path),
            "model_kwargs": dict(meta.get("model_kwargs") or {})}
        t_classes = int(getattr(teacher, "num_classes",
                                meta["model_kwargs"].get("num_classes", -1)))
        if t_classes != num_classes:
            raise CheckpointError(f"teacher checkpoint '{tcfg.checkpoint}' predicts "
                                  f"{t_classes} classes but dataset '{cfg.data.name}' has "
                                  f"{num_classes}; expected a teacher trained on the same dataset")
    else:
        from spikedistill.models.external import build_external_teacher

        teacher, provenance = build_external_teacher(tcfg, num_classes, tuple(input_shape),
                                                     device=device)
        provenance = dict(provenance or {})
        provenance.setdefault("source", tcfg.source)
        provenance.setdefault("arch", tcfg.arch)
        provenance.setdefault("weights", tcfg.weights)
        if provenance.get("sha256") is None and provenance.get("weights") \
                and Path(str(provenance["weights"])).is_file():
            provenance["sha256"] = file_sha256(provenance["weights"])
        provenance.setdefault("sha256", None)
        t_classes = int(getattr(teacher, "num_classes", -1))
        if t_classes != num_classes:
            raise ConfigError(f"config key 'teacher.weights': {teacher_label(provenance)} "
                              f"predicts {t_classes} classes but dataset '{cfg.data.name}' has "
                              f"{num_classes}; expected a teacher trained on the same dataset")
        teacher = teacher.to(device).eval()
    if getattr(teacher, "is_spiking", False) and not tcfg.allow_spiking:
        raise ConfigError(f"config key 'teacher': {teacher_label(provenance)} is a spiking "
                          f"network ({provenance.get('arch')}, a student); a teacher is an ANN "
                          "(train one with train-teacher), or set teacher.allow_spiking=true to "
                          "distil from this SNN's logits")
    if in_channels is not None and not getattr(teacher, "is_spiking", False):
        check_teacher_input(cfg, teacher, int(in_channels), teacher_label(provenance))
    if cfg.train.channels_last:
        teacher.to(memory_format=torch.channels_last)
    return teacher, provenance


def build_distiller(cfg: Config, student: nn.Module, teacher: Optional[nn.Module],
                    device: torch.device):
    """The method ``distill.method`` around ``student`` and ``teacher`` on ``device``, configured
    by its constructor with ``distill``, ``teacher.mode``, ``train.label_smoothing`` and
    ``teacher.frames``."""
    from spikedistill.distill import build_method

    distiller = build_method(cfg.distill.method, student, teacher, cfg.distill,
                             teacher_mode=cfg.teacher.mode,
                             label_smoothing=float(cfg.train.label_smoothing),
                             teacher_frames=str(cfg.teacher.frames))
    distiller.to(device)
    if cfg.train.channels_last:
        for module in distiller.trainable_modules().values():
            module.to(memory_format=torch.channels_last)
    return distiller


#: torch.compile's backend for train.compile (torch's default; the CPU tests use "eager", as
#: inductor's C++ code generation takes minutes on a CPU)
COMPILE_BACKEND = "inductor"


def wrap_for_training(distiller, student: nn.Module, extras: Dict[str, nn.Module],
                      info: D.DistInfo, train_cfg) -> None:
    """DistributedDataParallel around the student and every trainable extra (not the frozen
    teacher) under ``torchrun``; ``torch.compile`` of the student and the teacher with
    ``train.compile``."""
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_kwargs: Dict[str, Any] = {"find_unused_parameters":
                                      bool(train_cfg.find_unused_parameters)}
        if info.device.type == "cuda":
            ddp_kwargs.update(device_ids=[info.device.index], output_device=info.device.index)
        distiller.student = DDP(student, **ddp_kwargs)
        for name, module in extras.items():
            if any(p.requires_grad for p in module.parameters()):
                distiller.extras[name] = DDP(module, **ddp_kwargs)
    if train_cfg.compile:
        distiller.student = torch.compile(distiller.student, backend=COMPILE_BACKEND)
        if distiller.teacher is not None:  # in place: its class and state-dict keys stay
            distiller.teacher.compile(backend=COMPILE_BACKEND)


def trainable_parameters(distiller) -> List[nn.Parameter]:
    """The distiller's trainable parameters, each once, in order."""
    params, seen = [], set()
    for p in distiller.trainable_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params


def build_grad_scaler(use_scaler: bool):
    """A CUDA GradScaler for fp16, else None."""
    return torch.amp.GradScaler("cuda") if use_scaler else None
