"""Analysis of trained students: spike/operation counting and energy, reports, activation-map
pictures, training curves, NIR export.

    count_model(model, x) / OpCounter(model)      per-layer firing rates, FLOPs, SOPs, energy
    analyze(model, loader, ...) / write_report    report.md + report.json + firing_rates.png
    compute_maps / visualize                      teacher CAM vs student SAM pictures
    plot_run_curves(run_dir) / plot_runs(...)     curves from metrics.csv
    to_nir / export_nir / run_nir                 NIR graph export and a reference interpreter
"""

from spikedistill.analysis.counting import (E_AC_PJ, E_MAC_PJ, OpCounter, ann_flops, count_model,
                                            summarize)
from spikedistill.analysis.curves import plot_run_curves, plot_runs, read_metrics
from spikedistill.analysis.report import analyze, evaluate_counted, to_markdown, write_report

__all__ = ["E_AC_PJ", "E_MAC_PJ", "OpCounter", "analyze", "ann_flops", "count_model",
           "evaluate_counted", "plot_run_curves", "plot_runs", "read_metrics", "summarize",
           "to_markdown", "write_report"]
