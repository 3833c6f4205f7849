"""``spikedistill train-teacher | train | distill``: train an ANN teacher, a student alone, or a
student distilled from a teacher checkpoint.

    spikedistill train-teacher --config configs/cifar10/resnet19_teacher.yaml --data.root PATH
    spikedistill train   --config configs/cifar10/resnet19_snn_t1.yaml --data.root PATH
    spikedistill distill --config configs/cifar10/ckd_resnet19_t1.yaml --teacher RUN_DIR/best.pt
    spikedistill train --resume RUN_DIR [--train.epochs 500]     # continue a stopped run
    spikedistill train --config ... --run.name NAME --overwrite  # start NAME over

All three run :func:`spikedistill.engine.run_training` (also under ``torchrun``) and end with a
summary table on rank 0. With ``--resume`` and no ``--config`` the run's own config (stored in
its newest intact checkpoint) is used, with ``--set`` / dotted flags applied on top; what a
resume may change is in :mod:`spikedistill.engine.resume`. A run directory is locked while a run
uses it: a second run on it stops with the holder's pid and host.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from spikedistill.commands.common import add_config_args, load_from_args, overrides_from_args
from spikedistill.config import Config
from spikedistill.errors import ConfigError
from spikedistill.run_files import resolve_teacher

_HELP = {
    "train-teacher": "train an ANN teacher (resnet19/resnet20) with cross-entropy",
    "train": "train a spiking student (method from the config, default ce)",
    "distill": "distill a spiking student from a teacher checkpoint (--teacher)",
}


def register(sub) -> None:
    for name in ("train-teacher", "train", "distill"):
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name],
                           epilog="config keys: --set section.key=value or --section.key value")
        add_config_args(p)
        p.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue the run in RUN_DIR from its newest intact checkpoint "
                            "(last.pt, else best.pt); train.lr, momentum, weight_decay, "
                            "scheduler, warmup_epochs and epochs given with it are applied")
        p.add_argument("--overwrite", action="store_true",
                       help="start over in a run directory that already holds a checkpoint "
                            "(its previous checkpoints, config.yaml, metrics.csv, teacher.json, "
                            "curves and tensorboard/ are removed)")
        if name == "distill":
            p.add_argument("--teacher", metavar="CKPT", default=None,
                           help="teacher checkpoint (RUN_DIR/best.pt, or a run directory)")
        p.set_defaults(func=run, command_name=name)


def config_from_args(args) -> Config:
    """The run config: ``--config`` + overrides, or (``--resume`` without ``--config``) the
    resumed run's stored config + overrides."""
    if args.resume and not args.config:
        from spikedistill.engine.trainer import config_for_resume
        return config_for_resume(args.resume, overrides_from_args(args))
    return load_from_args(args)


def check_command(command: str, cfg: Config) -> None:
    """Each command trains one kind of model: ConfigError naming the mismatch otherwise."""
    from spikedistill.distill import method_requires_teacher
    from spikedistill.models import config_role, list_models, model_name

    role = config_role(cfg.model)      # None for model.source=python: known once it is built
    name = model_name(cfg.model)
    method = cfg.distill.method
    if command == "train-teacher":
        if role == "student":
            raise ConfigError(f"train-teacher trains an ANN teacher ({', '.join(list_models('teacher'))}, "
                              f"or model.source=torchvision|timm), but model {name} is a spiking "
                              "student; use 'spikedistill train' or 'spikedistill distill' for students")
        if method != "ce":
            raise ConfigError(f"train-teacher trains with cross-entropy (distill.method=ce), got "
                              f"distill.method={method}")
        return
    if role == "teacher":
        raise ConfigError(f"'spikedistill {command}' trains a spiking student "
                          f"({', '.join(list_models('student'))}, or model.source=spikingjelly), "
                          f"but model {name} is an ANN teacher; use 'spikedistill train-teacher'")
    if command == "distill":
        if not method_requires_teacher(method):
            raise ConfigError(f"distill needs a method that learns from a teacher (e.g. kd, ckd), "
                              f"got distill.method={method}; use 'spikedistill train' to train "
                              "without a teacher")
        if not cfg.teacher.checkpoint and cfg.teacher.source == "spikedistill" \
                and not cfg.teacher.zoo:
            raise ConfigError("distill needs a teacher: pass --teacher RUN_DIR/best.pt "
                              "(or set teacher.checkpoint, or teacher.source/arch/weights for "
                              "a torchvision, timm or python teacher)")


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _pct(value: Optional[float]) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{100.0 * value:.2f} %"


def selection_row(result) -> tuple:
    """The summary row of ``best.pt``: its test accuracy and epoch, and the split that chose
    it (``val``: the held-out ``data.val_fraction`` images, with their accuracy; ``test``)."""
    on = getattr(result, "selected_on", "test")
    if on == "val":
        return ("best.pt test acc", f"{_pct(result.best_acc)} (epoch {result.best_epoch}, "
                                     f"chosen on val: {_pct(result.best_val_acc)})")
    return ("best test acc", f"{_pct(result.best_acc)} (epoch {result.best_epoch}, chosen on test)")


def summary_lines(result) -> List[str]:
    """The end-of-run table: accuracies, the teacher's provenance (source, arch, weights file,
    sha256), every loss term's mean, T, time and speed."""
    from spikedistill.engine.health import dead_student_text

    dead = dead_student_text(getattr(result, "at_chance", False),
                             getattr(result, "silent_layers", []),
                             getattr(result, "spiking_layers", 0), result.last_acc)
    rows = [
        ("run", result.run_dir),
        ("model", result.model_name + (f" (T={result.T})" if result.T is not None else "")),
        ("method", result.method),
        selection_row(result),
        ("last test acc", _pct(result.last_acc)),
        *([("status", dead)] if dead else []),
        ("teacher acc", _pct(result.teacher_acc)),
    ]
    teacher = getattr(result, "teacher", None)
    if teacher:
        rows += [("teacher", f"{teacher.get('source')} {teacher.get('arch')}"),
                 ("teacher weights", str(teacher.get("weights") or "-")),
                 ("teacher sha256", str(teacher.get("sha256") or "-"))]
    rows += [(f"loss {k} (last epoch)", f"{v:.4g}") for k, v in result.loss_means.items()]
    rows += [
        ("T", str(result.T) if result.T is not None else "- (ANN)"),
        ("epochs", f"{result.epochs}" + (f" (resumed at {result.start_epoch})"
                                         if result.start_epoch else "")),
        ("global batch", f"{result.global_batch} over {result.world_size} process(es)"),
        ("wall time", _fmt_time(result.wall_time_s)),
        ("images/s", f"{result.images_per_s:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    bar = "-" * (width + 2 + max(len(v) for _, v in rows))
    return [bar] + [f"{k.ljust(width)}  {v}" for k, v in rows] + [bar]


def warn_not_exportable(cfg: Config) -> None:
    """One ``warning:`` line on stderr when the student cannot be exported to NIR
    (:func:`spikedistill.analysis.nir_export.nir_export_problem`)."""
    from spikedistill.analysis.nir_export import nir_export_problem

    problem = nir_export_problem(cfg.model)
    if problem:
        print(f"warning: this student cannot be exported to NIR: {problem}", file=sys.stderr,
              flush=True)


class NIRWarning:
    """Callback: :func:`warn_not_exportable` at the start of training (on rank 0, once the
    run is built, so that a config or data error stays the only line)."""

    def on_run_start(self, run) -> None:
        if run.is_main:
            warn_not_exportable(run.cfg)


def run(args) -> int:
    from spikedistill.analysis.curves import training_callbacks
    from spikedistill.engine import distributed as D
    from spikedistill.engine.trainer import run_training

    command = args.command_name
    cfg = config_from_args(args)
    teacher = getattr(args, "teacher", None)
    if teacher:
        cfg.teacher.checkpoint = resolve_teacher(teacher)
    check_command(command, cfg)
    callbacks = training_callbacks()
    if command != "train-teacher":
        callbacks.append(NIRWarning())
    result = run_training(cfg, resume=args.resume, callbacks=callbacks,
                          overwrite=bool(getattr(args, "overwrite", False)))
    if D.env_world()[0] == 0:
        print("\n".join(summary_lines(result)), file=sys.stdout, flush=True)
    return 0
