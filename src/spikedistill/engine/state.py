"""Run state: the run directory, checkpoints made from and restored into a run, resume, the
teacher's provenance record.

Run directories: ``run.out_dir/run.name`` (``run.name`` one plain folder name). A run holds
the directory's lock (:class:`RunLock`, ``RUN_DIR/run.lock``) for its whole life, so a second
run on the same directory stops at once naming the holder; at start it removes the temporary
files of writers that were killed. A new run refuses a directory that holds a checkpoint
unless ``overwrite`` (the previous run's files are then removed).

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

import contextlib
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from spikedistill.atomic import (WriteError, atomic_write_text, describe_os_error,
                                sweep_temp_files)
from spikedistill.config import Config, build_config
from spikedistill.engine import distributed as D
from spikedistill.engine.build import seed_everything
from spikedistill.engine.checkpoint import (BEST_NAME, LAST_NAME, capture_rng_state,
                                            load_checkpoint, load_state_checked,
                                            make_checkpoint, restore_rng_state)
from spikedistill.errors import CheckpointError, ConfigError, SpikeDistillError

try:  # POSIX: the run lock is a flock (released by the kernel however its holder ends)
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL lock files
    fcntl = None

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


def warn(msg: str) -> None:
    """A warning on stderr, rank 0 only."""
    if D.is_main_process():
        print(f"WARNING: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# run directory
# --------------------------------------------------------------------------------------------

#: the lock file of a run directory, present while a run holds it
LOCK_NAME = "run.lock"
#: what a run writes in its directory (removed by ``overwrite=True`` before starting over)
RUN_FILES = (LAST_NAME, BEST_NAME, "config.yaml", "metrics.csv", TEACHER_RECORD, "curves.png",
             "data_split.txt")
RUN_FOLDERS = ("tensorboard",)


def check_folder_name(name: Any, what: str, inside: str) -> str:
    """``str(name)`` when it is one plain folder name (no separators, not absolute, not
    ``.``/``..``, no NUL), else ConfigError naming ``what``: the one rule for every name used as
    a folder (``run.name``, ``compare`` method names, ``ablate`` variant names), so that nothing
    leaves ``inside`` (``run.out_dir``, ``--out``)."""
    text = str(name)
    seps = [s for s in (os.sep, os.altsep, "/", "\\") if s]
    if (not text.strip() or text in (".", "..") or any(s in text for s in seps) or "\0" in text
            or os.path.isabs(text) or Path(text).drive):
        raise ConfigError(f"{what}: expected one folder name inside {inside} "
                          f"(no '/', '\\', '..' or absolute path), got {text!r}")
    return text


def check_run_name(name: Optional[str]) -> None:
    """ConfigError on ``run.name`` unless it is one plain folder name (:func:`check_folder_name`):
    a run directory never leaves ``run.out_dir``."""
    if name is not None:
        check_folder_name(name, "config key 'run.name'", "run.out_dir")


def check_out_dir(out_dir: Union[str, os.PathLike]) -> Path:
    """``run.out_dir`` as a path; ConfigError when it (or a parent) exists and is no folder."""
    out = Path(out_dir).expanduser()
    for p in [out, *out.parents]:
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"config key 'run.out_dir': '{p}' is a file, expected a "
                                  f"folder to hold the run directories (run.out_dir={out_dir})")
            break
    return out


def make_run_dir(cfg: Config) -> Path:
    """``run.out_dir/run.name`` (a timestamped name when unset; the same on every rank).

    A bad ``run.name`` / ``run.out_dir`` is a ConfigError (:func:`check_run_name`,
    :func:`check_out_dir`). Whether the directory already holds a run is checked by
    :func:`open_run_dir` once its lock is held.
    """
    return Path(D.broadcast_object(str(choose_run_dir(cfg))))


def choose_run_dir(cfg: Config) -> Path:
    """:func:`make_run_dir` of this process alone (no broadcast)."""
    check_run_name(cfg.run.name)
    out = check_out_dir(cfg.run.out_dir)
    if cfg.run.name:
        run_dir = out / cfg.run.name
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{cfg.model.name}-{cfg.distill.method}-{stamp}"
        run_dir = out / base
        i = 1
        while run_dir.exists():
            run_dir = out / f"{base}-{i}"
            i += 1
    return run_dir


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


class RunLock:
    """The lock of a run directory, held for the run's life (rank 0 only).

    ``RUN_DIR/run.lock`` records the holder (pid, host, start time, command). Where the file
    system supports it the lock is an exclusive ``fcntl.flock`` on that file, which the kernel
    drops when the holder dies however it dies; a record left by such a holder is taken over
    with a warning. Without ``flock`` (another platform, a file system without locks) the file
    is created with ``O_EXCL``, and a record of a process of this host that no longer runs is
    taken over with a warning. A live holder: :class:`~spikedistill.errors.SpikeDistillError`
    naming it. :meth:`release` removes the file.
    """

    def __init__(self, run_dir: Union[str, os.PathLike]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: Optional[int] = None
        self.created_dir = False

    # -- the holder record
    @staticmethod
    def record() -> Dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:300]}

    def read_holder(self) -> Dict[str, Any]:
        """The record in the lock file ({} when missing or unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _busy(self, holder: Dict[str, Any]) -> SpikeDistillError:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
               f"{holder.get('started', '?')}" if holder else "a process that left no record")
        return SpikeDistillError(f"run directory '{self.run_dir}' is in use by another run "
                                 f"({who}; lock file {self.path}); wait for it to end or choose "
                                 "another run.name")

    def _stale_warning(self, holder: Dict[str, Any]) -> None:
        warn(f"taking over the lock {self.path} of pid {holder.get('pid', '?')} on "
             f"{holder.get('host', '?')} (started {holder.get('started', '?')}), which ended "
             "without releasing it")

    def _write_record(self, fd: int) -> None:
        data = (json.dumps(self.record(), sort_keys=True) + "\n").encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise WriteError(f"cannot write '{self.path}': {describe_os_error(exc)}",
                             exc.errno) from None

    # -- acquiring
    def acquire(self) -> "RunLock":
        """Take the lock or raise naming its holder."""
        try:
            self.created_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"config key 'run.name': '{self.run_dir}' exists and is a file, "
                              "expected a run directory") from None
        except NotADirectoryError:
            raise ConfigError(f"config key 'run.out_dir': a parent of '{self.run_dir}' is a "
                              "file, expected a folder") from None
        if fcntl is not None:
            try:
                return self._acquire_flock()
            except _NoFlock:
                pass
        return self._acquire_exclusive()

    def _acquire_flock(self) -> "RunLock":
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(self.read_holder()) from None
            except OSError as exc:  # ENOLCK, EOPNOTSUPP, ...: no flock on this file system
                os.close(fd)
                raise _NoFlock() from exc
            # the holder before us may have removed the file while we opened it: retry on
            # the file that is there now
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self.read_holder()
            if previous:
                self._stale_warning(previous)
            self._write_record(fd)
            self.fd = fd
            return self
        raise self._busy(self.read_holder())

    def _acquire_exclusive(self) -> "RunLock":
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.read_holder()
                pid = holder.get("pid")
                if (attempt == 0 and isinstance(pid, int) and
                        holder.get("host") == socket.gethostname() and not _pid_alive(pid)):
                    self._stale_warning(holder)
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                raise self._busy(holder) from None
            self._write_record(fd)
            self.fd = fd
            return self
        raise self._busy(self.read_holder())

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent); a run directory the lock
        created and nothing else wrote to is removed too (a run that failed while building
        leaves no empty directory behind)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
        if self.created_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only when empty

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class _NoFlock(Exception):
    """flock is not available on the lock file's file system."""


def checkpoint_files(run_dir: Union[str, os.PathLike]) -> List[Path]:
    """The checkpoints a run wrote in ``run_dir`` (``last.pt``, ``best.pt``) that exist."""
    d = Path(run_dir)
    return [d / n for n in (LAST_NAME, BEST_NAME) if (d / n).exists()]


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


def remove_run_files(run_dir: Union[str, os.PathLike]) -> List[str]:
    """Delete what a previous run wrote in ``run_dir`` (:data:`RUN_FILES`,
    :data:`RUN_FOLDERS`) and return the names removed; other files are kept."""
    d = Path(run_dir)
    removed = []
    for name in RUN_FILES:
        f = d / name
        if f.is_file():
            f.unlink()
            removed.append(name)
    for name in RUN_FOLDERS:
        f = d / name
        if f.is_dir():
            shutil.rmtree(f)
            removed.append(name + "/")
    return removed


@dataclass
class OpenedRunDir:
    """What :func:`open_run_dir` gives the trainer: the directory, its lock (rank 0) and the
    checkpoint a resume continues from."""

    run_dir: Path
    lock: Optional[RunLock]
    ckpt: Optional[Dict[str, Any]]

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _prepare_on_main(cfg: Optional[Config], resume, overwrite: bool
                     ) -> Tuple[Path, RunLock, Optional[Dict[str, Any]]]:
    if resume is not None:
        p = Path(resume).expanduser()
        run_dir = p if p.is_dir() else p.parent
        if not p.exists():
            raise CheckpointError(f"cannot resume '{resume}': no such run directory or checkpoint")
    else:
        run_dir = choose_run_dir(cfg)
    lock = RunLock(run_dir).acquire()
    try:
        swept = sweep_temp_files(run_dir)
        if swept:
            warn(f"removed {len(swept)} temporary file(s) of interrupted writes in '{run_dir}': "
                 + ", ".join(q.name for q in swept[:5]) + (" ..." if len(swept) > 5 else ""))
        ckpt = None
        if resume is not None:
            ckpt = find_resume_checkpoint(resume)
        elif checkpoint_files(run_dir):
            if not overwrite:
                raise ConfigError(f"run directory '{run_dir}' already holds a checkpoint: continue "
                                  f"it with --resume {run_dir}, start over with --overwrite, or "
                                  "choose another run.name")
            removed = remove_run_files(run_dir)
            warn(f"--overwrite: starting '{run_dir}' over (removed {', '.join(removed)})")
    except BaseException:
        lock.release()
        raise
    return run_dir, lock, ckpt


_ERRORS = {cls.__name__: cls for cls in (SpikeDistillError, ConfigError, CheckpointError)}


def open_run_dir(cfg: Optional[Config], info: D.DistInfo, *, resume=None,
                 overwrite: bool = False) -> OpenedRunDir:
    """Choose, lock and tidy the run directory before anything is built.

    Rank 0 takes the directory's :class:`RunLock` (the others wait for its answer), removes
    temporary files left by killed writers, and then either picks the checkpoint a resume
    continues from (:func:`find_resume_checkpoint`) or, for a new run, refuses a directory that
    holds a checkpoint unless ``overwrite`` (then the previous run's files are removed). Errors
    reach every rank as the same exception.
    """
    lock = None
    ckpt = None
    if info.is_main:
        try:
            run_dir, lock, ckpt = _prepare_on_main(cfg, resume, overwrite)
            answer = ("ok", str(run_dir), ckpt["path"] if ckpt is not None else None)
        except SpikeDistillError as exc:
            D.broadcast_object(("error", type(exc).__name__, str(exc)))
            raise
        except BaseException:
            D.broadcast_object(("error", "SpikeDistillError", "rank 0 could not open the run "
                                "directory"))
            raise
    else:
        answer = None
    try:
        answer = D.broadcast_object(answer)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if answer[0] == "error":
        raise _ERRORS.get(answer[1], SpikeDistillError)(answer[2])
    run_dir = Path(answer[1])
    if ckpt is None and answer[2] is not None:
        ckpt = load_checkpoint(answer[2])
    return OpenedRunDir(run_dir=run_dir, lock=lock, ckpt=ckpt)


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


__all__ = ["LOCK_NAME", "OpenedRunDir", "RESUME_APPLIED", "RESUME_REFUSED", "RunLock", "RunState",
           "TEACHER_RECORD", "apply_train_settings", "check_out_dir", "check_resume_changes",
           "check_run_name", "checkpoint_files", "checkpoint_of", "choose_run_dir",
           "config_for_resume", "find_resume_checkpoint", "make_run_dir", "open_run_dir",
           "remove_run_files", "restore_optimisation", "restore_weights", "resume_changes",
           "seed_training_rng", "teacher_record", "warn", "write_teacher_record"]
