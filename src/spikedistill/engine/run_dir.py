"""Run directories: ``run.out_dir/run.name`` (``run.name`` one plain folder name), opened and
tidied before anything is built, and the teacher's provenance record written into them.

A run holds the directory's lock (:class:`~spikedistill.engine.lock.RunLock`) for its whole
life; at start it removes the temporary files of writers that were killed. A new run refuses a
directory that holds a checkpoint unless ``overwrite`` (the previous run's files are then
removed); a resume continues from :func:`~spikedistill.engine.resume.find_resume_checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from spikedistill.atomic import atomic_write_text, sweep_temp_files
from spikedistill.config import Config
from spikedistill.engine import distributed as D
from spikedistill.engine.checkpoint import BEST_NAME, LAST_NAME, load_checkpoint
from spikedistill.engine.distributed import warn
from spikedistill.engine.lock import RunLock
from spikedistill.engine.resume import find_resume_checkpoint
from spikedistill.errors import CheckpointError, ConfigError, SpikeDistillError

TEACHER_RECORD = "teacher.json"
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


def checkpoint_files(run_dir: Union[str, os.PathLike]) -> List[Path]:
    """The checkpoints a run wrote in ``run_dir`` (``last.pt``, ``best.pt``) that exist."""
    d = Path(run_dir)
    return [d / n for n in (LAST_NAME, BEST_NAME) if (d / n).exists()]


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


__all__ = ["OpenedRunDir", "RUN_FILES", "RUN_FOLDERS", "TEACHER_RECORD", "check_folder_name",
           "check_out_dir", "check_run_name", "checkpoint_files", "choose_run_dir",
           "make_run_dir", "open_run_dir", "remove_run_files", "teacher_record",
           "write_teacher_record"]
