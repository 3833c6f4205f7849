"""``spikedistill demo``: the whole pipeline on the embedded digits dataset in a few minutes.

Trains an ANN ResNet-20 teacher on scikit-learn's handwritten digits (1,797 real 8x8 images,
fixed stratified split), then spiking ResNet-20 students with cross-entropy only (``ce``),
logit distillation (``kd``) and CKDSNN (``ckd``) over three seeds with :mod:`the study
<spikedistill.analysis.study>` (same seed = same initialisation and data order, two runs at
once in worker processes), and prints the teacher, the mean +- std of every method and the
paired differences against ``ce`` with their 95 % intervals: an order between two methods is
only stated where its interval excludes 0.

The recipe (``demo_configs/``) is sized by measurement to converge within the 5-minute budget
on two CPU cores: see ``student.yaml``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from spikedistill.commands.common import add_config_args, overrides_from_args, parse_seeds
from spikedistill.config import load_config

CONFIGS = Path(__file__).resolve().parent / "demo_configs"
METHODS = ("ce", "kd", "ckd")


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a teacher and SNN students (ce, kd, ckd x 3 seeds) "
                                    "on the embedded digits")
    add_config_args(p)
    p.add_argument("--out", default=None,
                   help="where the runs are written (default: a new runs/demo-DATE-TIME)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs for every run (default: the recipe's, see demo_configs/)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated student seeds (default 0,1,2)")
    p.add_argument("--jobs", type=int, default=2,
                   help="student runs trained at once, one thread each (default 2: two cores)")
    p.set_defaults(func=run)


def _cfg(name: str, args, out: str, extra=()):
    overrides = [f"run.out_dir={out}", f"run.name={name}", "run.progress=false"]
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    return load_config(CONFIGS / f"{name}.yaml", overrides + list(extra) + overrides_from_args(args))


def default_out() -> str:
    """``runs/demo-YYYYmmdd-HHMMSS`` (``-1``, ``-2``, ... when that exists): every demo gets a
    fresh folder, so running it twice never meets the first run's checkpoints."""
    base = Path("runs") / f"demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return str(out)


def excluding_line(rows) -> str:
    """The line naming every (method, metric) whose paired difference against the baseline the
    seeds support (95 % interval excludes 0 over at least 3 pairs with spread,
    :meth:`~spikedistill.analysis.stats.PairedDifference.claim`), or saying that none does."""
    shown = []
    for r in rows:
        hits = [k for k, d in r["paired"].items() if d is not None and d.claim()]
        if hits:
            shown.append(f"{r['method']} ({', '.join(hits)} acc)")
    base = next((r["method"] for r in rows if r["is_baseline"]), "the baseline")
    return ("differences the seeds support (95 % interval excludes 0, at least 3 pairs): "
            + (", ".join(shown) if shown else f"none; at these seeds no method is shown better "
               f"or worse than {base}"))


def run(args) -> int:
    from spikedistill.analysis import study as C
    from spikedistill.analysis import study_summary as S
    from spikedistill.analysis.curves import training_callbacks
    from spikedistill.engine import run_training

    seeds = parse_seeds(args.seeds)
    jobs = C.parse_jobs(args.jobs)
    out = args.out or default_out()
    t0 = time.perf_counter()
    teacher = run_training(_cfg("teacher", args, out), callbacks=training_callbacks())
    teacher_ckpt = str(Path(teacher.run_dir) / "best.pt")
    student = _cfg("student", args, out)
    rows, paths = C.compare(student, list(METHODS), seeds, Path(out) / "students",
                            teacher=teacher_ckpt, baseline="ce", jobs=jobs)
    total = time.perf_counter() - t0

    print()
    print("spikedistill demo: embedded digits (scikit-learn load_digits, 8x8, "
          "1,347 train / 450 test, stratified)")
    print(f"ANN teacher resnet20: best {100 * teacher.best_acc:.2f} %, last "
          f"{100 * teacher.last_acc:.2f} % ({teacher.epochs} epochs, {teacher.wall_time_s:.1f} s)")
    print(f"SNN students {student.model.name}, T={student.model.T}, {student.train.epochs} "
          f"epochs, seeds {', '.join(map(str, seeds))}; test accuracy mean ± sample std:")
    results = Path(out) / "students" / "results"
    print(S.selection_sentence([json.loads((results / f"{S.run_key(m, s)}.json").read_text())
                                for m in METHODS for s in seeds]))
    print()
    print(S.markdown_table(rows))
    paired = S.paired_table(rows)
    if paired:
        print()
        print("paired differences against ce (same seed = same init and data order), "
              "percentage points:")
        print(paired)
        print()
        for line in S.verdict_lines(rows):
            print(line)
        print(excluding_line(rows))
    print(f"\ntotal wall time {total:.1f} s; runs in {out}/ (summary: {paths['md']})")
    return 0
