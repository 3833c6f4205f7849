"""Resume: the checkpoint a resume continues from, and checkpoints made from and restored into a
run's state.

Resume (``resume=RUN_DIR``) continues from the newest intact training checkpoint of the
directory (``last.pt``, or ``best.pt`` when ``last.pt`` is missing, corrupt or older, saying
so) and restores the model, extras, optimiser, scheduler, GradScaler, epoch counter, best
accuracy, history and every RNG state; because the data order and augmentation are functions
of ``(seed, epoch, rank)``, the resumed run ends with exactly the weights of an uninterrupted
one. Changed optimiser/schedule settings: :data:`RESUME_APPLIED` are applied to the restored
state, :data:`RESUME_REFUSED` and changes of the steps per epoch are refused (ConfigError
naming the keys), before ``config.yaml`` is rewritten; ``config.yaml`` records what runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from spikedistill.config import Config, build_config
from spikedistill.engine import distributed as D
from spikedistill.engine.build import seed_everything
from spikedistill.engine.checkpoint import (BEST_NAME, LAST_NAME, capture_rng_state,
                                            load_checkpoint, load_state_checked,
                                            make_checkpoint, restore_rng_state)
from spikedistill.engine.distributed import warn
from spikedistill.engine.state import RunState, best_score_of
from spikedistill.errors import CheckpointError, ConfigError


def find_resume_checkpoint(resume: Union[str, os.PathLike], *, announce: bool = True
                           ) -> Dict[str, Any]:
    """The checkpoint a resume of ``resume`` continues from, loaded.

    ``resume`` a file: that file. A run directory: the newest intact full checkpoint in it
    (the highest completed epoch among ``last.pt``, ``best.pt`` and any other ``*.pt`` of the
    run; ``last.pt`` on a tie). A missing or corrupt ``last.pt``, or a ``best.pt`` newer than
    it, is said on stderr (``announce``). None intact: CheckpointError listing why.
    """
    p = Path(resume).expanduser()
    if not p.exists():
        raise CheckpointError(f"cannot resume '{resume}': no such run directory or checkpoint")
    if not p.is_dir():
        return load_checkpoint(p)
    names = [LAST_NAME, BEST_NAME] + sorted(q.name for q in p.glob("*.pt")
                                            if q.name not in (LAST_NAME, BEST_NAME))
    found: List[Dict[str, Any]] = []
    problems: List[str] = []
    for name in names:
        f = p / name
        if not f.exists():
            if name == LAST_NAME:
                problems.append(f"{name} is missing")
            continue
        try:
            ckpt = load_checkpoint(f)
        except CheckpointError as exc:
            text = str(exc)
            problems.append(f"{name} is truncated or corrupt" if "truncated or corrupt" in text
                            else f"{name}: {text[:160]}")
            continue
        if ckpt.get("optimizer") is None or not ckpt.get("rng"):
            problems.append(f"{name} holds no optimiser/RNG state (not a training checkpoint)")
            continue
        found.append(ckpt)
    if not found:
        raise CheckpointError(f"cannot resume '{p}': it holds no intact training checkpoint "
                              f"({'; '.join(problems) or 'no last.pt or best.pt'}); start over "
                              "with --overwrite")
    best = max(found, key=lambda c: (int(c["epoch"]), Path(c["path"]).name == LAST_NAME))
    if announce and Path(best["path"]).name != LAST_NAME:
        why = "; ".join(problems) if problems else f"{LAST_NAME} is older"
        warn(f"resuming '{p}' from {Path(best['path']).name} (epoch {best['epoch']}), the newest "
             f"intact checkpoint ({why})")
    for other in found:
        if other is not best:
            del other["model"]
    return best


def config_for_resume(resume: Union[str, os.PathLike], overrides=()) -> Config:
    """The config stored in the checkpoint a resume of ``resume`` continues from
    (:func:`find_resume_checkpoint`) with ``overrides`` (``"a.b=v"``) applied."""
    ckpt = find_resume_checkpoint(resume, announce=False)
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
    run.best_score = best_score_of(run.history, run.best_epoch, run.best_acc)
    run.resumed = True
    if run.teacher_acc is None:
        run.teacher_acc = ckpt.get("teacher_acc")


#: ``train`` keys a resume may change, applied to the restored optimiser and schedule: the
#: param groups take the new ``lr`` (as their base / initial lr), ``momentum``, ``nesterov`` and
#: ``weight_decay``; the schedule is rebuilt from ``scheduler``, ``warmup_epochs`` and
#: ``epochs`` and continues from the restored step (so the run is not the one a fresh start
#: with these settings would give: a warning says so)
RESUME_APPLIED = ("lr", "momentum", "nesterov", "weight_decay", "scheduler", "warmup_epochs",
                  "epochs")
#: ``train`` keys a resume refuses to change (ConfigError naming them): another optimiser
#: cannot take the saved one's state
RESUME_REFUSED = ("optimizer",)
#: keys that set the steps per epoch, which the saved schedule counts in; a resume refuses a
#: change of the steps per epoch and names those of them that changed
STEP_KEYS = ("train.batch_size", "train.batch_size_is", "train.max_steps_per_epoch",
             "data.train_subset", "data.name")


def _saved(ckpt: Dict[str, Any], dotted: str) -> Any:
    node: Any = ckpt.get("config") or {}
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _current(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def resume_changes(cfg: Config, ckpt: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """``{"train.KEY": (saved, now)}`` for every optimiser/schedule key of :data:`RESUME_APPLIED`
    and :data:`RESUME_REFUSED` whose value in ``cfg`` differs from the checkpoint's config."""
    out = {}
    for key in RESUME_APPLIED + RESUME_REFUSED:
        dotted = f"train.{key}"
        saved, now = _saved(ckpt, dotted), _current(cfg, dotted)
        if saved is not None and saved != now:
            out[dotted] = (saved, now)
    return out


def check_resume_changes(cfg: Config, ckpt: Dict[str, Any]) -> None:
    """ConfigError naming the keys of :data:`RESUME_REFUSED` that a resume would change (call
    it before anything is built or written)."""
    refused = {k: v for k, v in resume_changes(cfg, ckpt).items()
               if k.split(".", 1)[1] in RESUME_REFUSED}
    if refused:
        what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ConfigError(f"cannot resume '{ckpt['path']}' with {what}: the saved optimiser "
                          "state does not carry over; keep the saved value, or start over with "
                          "--overwrite (or another run.name)")


def restore_optimisation(run: RunState, ckpt: Dict[str, Any]) -> None:
    """Optimiser, scheduler and GradScaler states from ``ckpt``, then the changed settings of
    :data:`RESUME_APPLIED` applied on top (with a warning listing them), so that the run trains
    with what its config says. A change of the steps per epoch (:data:`STEP_KEYS`) is a
    ConfigError naming the keys."""
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
    epoch = int(ckpt["epoch"])
    sched = ckpt.get("scheduler") or {}
    if epoch > 0 and isinstance(sched.get("last_epoch"), int) and \
            sched["last_epoch"] != epoch * run.steps_per_epoch:
        saved_spe = sched["last_epoch"] / epoch
        keys = [k for k in STEP_KEYS if _saved(ckpt, k) is not None
                and _saved(ckpt, k) != _current(run.cfg, k)]
        what = (", ".join(f"{k}: {_saved(ckpt, k)!r} -> {_current(run.cfg, k)!r}" for k in keys)
                if keys else f"the number of processes ({run.world_size})")
        raise ConfigError(f"cannot resume '{ckpt['path']}' with {what}: it changes the steps "
                          f"per epoch ({saved_spe:g} -> {run.steps_per_epoch}) that the saved "
                          "LR schedule counts; keep the saved values, or start over with "
                          "--overwrite (or another run.name)")
    changes = {k: v for k, v in resume_changes(run.cfg, ckpt).items()
               if k.split(".", 1)[1] in RESUME_APPLIED}
    if changes:
        apply_train_settings(run.optimizer, run.scheduler, run.cfg.train)
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
        warn(f"resuming with {what}: applied to the restored optimiser and schedule from epoch "
             f"{epoch} on (lr now {run.optimizer.param_groups[0]['lr']:.4g}); the result is not "
             "the one of a fresh run with these settings")


def apply_train_settings(optimizer: torch.optim.Optimizer, scheduler: Any, train_cfg) -> None:
    """Set the ``train`` section's ``lr`` (each param group's ``initial_lr`` and the
    scheduler's ``base_lrs``), ``momentum``/``nesterov`` (SGD) and ``weight_decay`` on a
    restored optimiser, and its current lr to ``lr * schedule(step)`` of the (rebuilt) schedule
    at the restored step."""
    groups = optimizer.param_groups
    for group in groups:
        group["initial_lr"] = float(train_cfg.lr)
        group["weight_decay"] = float(train_cfg.weight_decay)
        if "momentum" in group:
            group["momentum"] = float(train_cfg.momentum)
        if "nesterov" in group:
            group["nesterov"] = bool(train_cfg.nesterov)
    if scheduler is None:
        for group in groups:
            group["lr"] = float(train_cfg.lr)
        return
    scheduler.base_lrs = [float(train_cfg.lr)] * len(groups)
    lambdas = getattr(scheduler, "lr_lambdas", None)
    step = int(scheduler.last_epoch)
    for i, group in enumerate(groups):
        factor = lambdas[i](step) if lambdas else 1.0
        group["lr"] = float(train_cfg.lr) * factor
    scheduler._last_lr = [group["lr"] for group in groups]


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


__all__ = ["RESUME_APPLIED", "RESUME_REFUSED", "STEP_KEYS", "apply_train_settings",
           "check_resume_changes", "checkpoint_of", "config_for_resume", "find_resume_checkpoint",
           "restore_optimisation", "restore_weights", "resume_changes", "seed_training_rng"]
