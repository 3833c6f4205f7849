"""``spikedistill compare``: train several methods over several seeds and tabulate them.

    spikedistill compare --config CFG --methods ce,kd,ckd --seeds 0,1,2 \\
        [--teacher RUN_DIR/best.pt] [--baseline ce] [--jobs N] [--set k=v ...] [--out DIR]
        [--energy-images 16] [--cost-model 45nm_fp32]

Every (method, seed) run uses the same recipe (``--config`` plus overrides), the same teacher
and, for the same seed, the same initialisation and data order (``train.seed`` = seed, which
seeds the student's init and the loader's per-epoch permutation and augmentation). Runs are
written to ``DIR/runs/METHOD-seedN``; each finished run leaves ``DIR/results/METHOD-seedN.json``.
A second invocation skips finished runs (a result made with a different config is an error),
continues interrupted ones from their newest intact checkpoint (``last.pt``, else ``best.pt``, as
``train --resume`` does), and rewrites the summary:

- ``DIR/compare.md``: mean +- sample std of the best and last test accuracy per method, the
  number of seeds, the mean of each loss term over the last epoch (already weighted); then, for
  every method against the baseline (``--baseline``, default ``ce``), the paired mean
  difference over the seeds both ran (percentage points), its 95 % paired-t interval (n - 1
  degrees of freedom; none for a single pair or equal differences), the two-sided p-value and
  whether the interval excludes 0; an order is claimed only from at least 3 pairs with spread
  (:mod:`spikedistill.analysis.stats`), otherwise the verdict says why not. Every table is
  preceded by a line saying which accuracy it compares (:func:`~spikedistill.analysis.study_summary.accuracy_caption`),
- each method's energy per image (mJ, mean +- sample std over seeds) beside its accuracy, and
  its paired difference against the baseline with the same statistics: every run's
  ``best.pt`` counted image by image on ``--energy-images`` test images (default 16, the same
  for every run; 0: none) under the cost model ``--cost-model`` (named in the tables;
  :mod:`spikedistill.analysis.energy`),
- ``DIR/compare.csv``: the same numbers, one row per method, and ``DIR/runs.csv``: one row per run,
- ``DIR/compare.png``: a bar chart of best and last accuracy with std error bars, beside the
  paired differences against the baseline with their 95 % intervals.

With ``--jobs N`` the runs go to N worker processes: each run's output is written to
``DIR/logs/METHOD-seedN.log`` as it comes, and its lines (one per epoch) are printed to the
console as they come, prefixed with ``METHOD-seedN:``. A run's numbers do not depend on N (same
seed, same ``train.threads``), so let N x ``train.threads`` not exceed the cores.

The runs and their summary are library code: :mod:`spikedistill.analysis.study` and
:mod:`spikedistill.analysis.study_summary`; this module is the command line.
"""

from __future__ import annotations

from spikedistill.analysis.study import ENERGY_IMAGES
from spikedistill.commands.common import (add_config_args, load_from_args, parse_methods,
                                          parse_seeds)


def register(sub) -> None:
    p = sub.add_parser("compare", help="train several methods x seeds on one recipe and "
                                       "tabulate mean +- std accuracy (Markdown, CSV, PNG)")
    add_config_args(p)
    p.add_argument("--methods", required=True,
                   help="comma-separated method names, e.g. ce,kd,ckd-released,ckd-paper")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds (default 0,1,2)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (RUN_DIR or RUN_DIR/best.pt) for every method that "
                        "needs one (default: teacher.checkpoint of the config)")
    p.add_argument("--baseline", default="ce",
                   help="the method every other one is compared with, paired by seed "
                        "(default ce; it must be one of --methods)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once in worker processes (default 1)")
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--every-timestep", action="store_true",
                   help="add a column per T' <= T: test top-1 of each run's best.pt from the "
                        "mean of its first T' per-timestep logits (one pass per run)")
    p.add_argument("--energy-images", type=int, default=ENERGY_IMAGES,
                   help="test images on which each run's best.pt is counted for its energy per "
                        f"image (default {ENERGY_IMAGES}; 0: no energy column)")
    p.add_argument("--cost-model", default="45nm_fp32",
                   help="energy cost model: 45nm_fp32 (default; 4.6 pJ / MAC, 0.9 pJ / AC), "
                        "45nm_fp16, 45nm_int32, 45nm_int8 (spikedistill.analysis.energy)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikedistill.analysis.study import compare, parse_baseline, parse_jobs
    from spikedistill.analysis.study_summary import (energy_verdict_lines, markdown_table,
                                                     paired_table, verdict_lines)

    cfg = load_from_args(args)
    methods = parse_methods(args.methods)
    seeds = parse_seeds(args.seeds)
    baseline = parse_baseline(args.baseline, methods)
    jobs = parse_jobs(args.jobs)
    rows, paths = compare(cfg, methods, seeds, args.out, teacher=args.teacher,
                          baseline=baseline, jobs=jobs,
                          every_timestep=getattr(args, "every_timestep", False),
                          energy_images=getattr(args, "energy_images", 0),
                          cost_model=getattr(args, "cost_model", "45nm_fp32"))
    print()
    print(markdown_table(rows))
    paired = paired_table(rows)
    if paired:
        print()
        print(paired)
        print()
        for line in verdict_lines(rows) + energy_verdict_lines(rows):
            print(line)
    print(f"\nwrote {paths['md']}, {paths['csv']}, {paths['runs_csv']}, {paths['png']}")
    return 0
