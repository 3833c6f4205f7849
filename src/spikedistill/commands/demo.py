"""``spikedistill demo``: the whole pipeline on the embedded digits dataset in a few minutes.

Trains an ANN ResNet-20 teacher, then two spiking ResNet-20 students (T = 2) on scikit-learn's
handwritten digits (1,797 real 8x8 images, fixed stratified split): one with cross-entropy only
and one distilled with CKDSNN, and prints a table of accuracies, timesteps and wall time.
"""

from __future__ import annotations

import time
from pathlib import Path

from spikedistill.commands.common import add_config_args, overrides_from_args, training_callbacks
from spikedistill.config import load_config

CONFIGS = Path(__file__).resolve().parent / "demo_configs"


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a teacher and SNN students on the embedded digits")
    add_config_args(p)
    p.add_argument("--out", default="runs/demo", help="where the three runs are written")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every run (default 15)")
    p.set_defaults(func=run)


def _cfg(name: str, args, out: str, extra=()):
    overrides = [f"run.out_dir={out}", f"run.name={name}", "run.progress=false"]
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    return load_config(CONFIGS / f"{name}.yaml", overrides + list(extra) + overrides_from_args(args))


def run(args) -> int:
    from spikedistill.engine import run_training

    out = args.out
    rows = []
    t0 = time.perf_counter()
    teacher = run_training(_cfg("teacher", args, out), callbacks=training_callbacks())
    rows.append(("teacher (ANN resnet20)", "-", "ce", teacher))
    teacher_ckpt = str(Path(teacher.run_dir) / "best.pt")
    for name, method in (("snn_ce", "ce"), ("snn_ckd", "ckd")):
        cfg = _cfg(name, args, out, [f"teacher.checkpoint={teacher_ckpt}"] if method != "ce" else [])
        res = run_training(cfg, callbacks=training_callbacks())
        rows.append(("student (SNN spiking_resnet20)", str(cfg.model.T), method, res))
    total = time.perf_counter() - t0

    print()
    print("spikedistill demo: embedded digits (scikit-learn load_digits, 8x8, "
          "1,347 train / 450 test, stratified)")
    print(f"| {'model':<30} | {'T':>2} | {'method':<6} | {'best acc %':>10} | {'last acc %':>10} "
          f"| {'wall s':>7} | {'img/s':>7} |")
    print(f"|{'-' * 32}|{'-' * 4}|{'-' * 8}|{'-' * 12}|{'-' * 12}|{'-' * 9}|{'-' * 9}|")
    for label, T, method, res in rows:
        print(f"| {label:<30} | {T:>2} | {method:<6} | {100 * res.best_acc:>10.2f} | "
              f"{100 * res.last_acc:>10.2f} | {res.wall_time_s:>7.1f} | {res.images_per_s:>7.0f} |")
    print(f"total wall time {total:.1f} s; runs in {out}/")
    return 0
