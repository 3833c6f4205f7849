"""``spikedistill plot``: loss and accuracy curves from runs' ``metrics.csv``.

    spikedistill plot RUN_DIR                      # RUN_DIR/curves.png (losses, accuracy, lr)
    spikedistill plot RUN_A RUN_B ... --out x.png  # several runs overlaid
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("plot", help="loss/accuracy curves of one run, or several runs overlaid")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (with metrics.csv)")
    p.add_argument("--out", default=None,
                   help="PNG path (default: RUN_DIR/curves.png for one run, ./curves.png for "
                        "several)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spikedistill.analysis.curves import plot_run_curves, plot_runs

    if len(args.runs) == 1:
        paths = plot_run_curves(args.runs[0], args.out)
    else:
        paths = [plot_runs(args.runs, args.out or "curves.png")]
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
