"""``spikedistill visualize``: teacher CAM and student SAM pictures, as SAMD computes them.

    spikedistill visualize --student RUN/best.pt --teacher TEACHER/best.pt [--data.root PATH]
                           [--n 16] [--stage -1] [--out maps.png]

One row per test image: the de-normalised input, the raw maps M_t and M_s, the distributions
P_t and P_s (after the run's ``distill.ckd.samd`` normalisation and softmax scaling) and each
map overlaid on the image. See :mod:`spikedistill.analysis.maps`.

The teacher is any teacher a run can use, built as training builds it
(:func:`spikedistill.analysis.loading.load_teacher`): by default the student run's own teacher
(``teacher.checkpoint``, or a torchvision / timm / python teacher with its ``teacher.weights``);
``--teacher FILE`` replaces the file (a spikedistill checkpoint, or the weights file of the run's
external teacher), and ``--set teacher.source=... teacher.arch=... teacher.weights=...`` names
another one.
"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("visualize", help="PNG grid of teacher CAMs and student spike "
                                         "activation maps on test images")
    p.add_argument("--student", required=True, help="student checkpoint, e.g. RUN/best.pt")
    p.add_argument("--teacher", default=None,
                   help="teacher file: a spikedistill checkpoint, or the weights file of the "
                        "run's torchvision/timm/python teacher (default: the student run's "
                        "teacher); --set teacher.source=... teacher.arch=... for another one")
    p.add_argument("--n", type=int, default=16, help="number of test images (default 16)")
    p.add_argument("--stage", type=int, default=None,
                   help="1-based stage, -1 = last (default: the run's first SAMD stage)")
    p.add_argument("--out", default=None, help="PNG path (default: RUN/maps.png)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="overrides of the run's config, e.g. "
                   "teacher.source=torchvision teacher.arch=resnet18 teacher.weights=FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikedistill.analysis.loading import eval_loader, load_model, load_teacher, run_config
    from spikedistill.analysis.maps import visualize
    from spikedistill.commands.common import overrides_from_args
    from spikedistill.engine.distributed import resolve_device
    from spikedistill.errors import ConfigError

    device = resolve_device(args.device, key="--device")
    student, meta = load_model(args.student, device)
    if not getattr(student, "is_spiking", False):
        raise ConfigError(f"--student '{args.student}' holds {meta.get('model_name')}, not a "
                          "spiking student")
    cfg = run_config(meta, overrides_from_args(args))
    loader, pipe = eval_loader(cfg, device, max(1, min(int(args.n), 512)), sample=True)
    splits = pipe.splits
    teacher = load_teacher(cfg, pipe, device, args.teacher)
    if teacher is None:
        raise ConfigError("visualize needs a teacher: pass --teacher TEACHER/best.pt, or "
                          "--set teacher.source=torchvision teacher.arch=ARCH "
                          "teacher.weights=FILE (the student run has no teacher)")
    out = Path(args.out) if args.out else Path(meta.get("path", args.student)).parent / "maps.png"
    path = visualize(student, teacher, loader, out, n=args.n, mean=splits.mean, std=splits.std,
                     distill_cfg=cfg.distill, stage=args.stage,
                     class_names=getattr(splits, "class_names", None),
                     teacher_frames=cfg.teacher.frames)
    print(f"wrote {path}")
    return 0

