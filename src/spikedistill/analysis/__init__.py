"""Analysis of trained students: spike/operation counting and energy, reports, activation-map
pictures, training curves, NIR export.

    count_model(model, x) / OpCounter(model)      per-layer firing rates, FLOPs, SOPs, energy
    analyze(model, loader, ...) / write_report    report.md + report.json + firing_rates.png
    compute_maps / visualize                      teacher CAM vs student SAM pictures
    plot_run_curves(run_dir) / plot_runs(...)     curves from metrics.csv
    to_nir / export_nir / run_nir                 NIR graph export and a reference interpreter

Names are imported on first use (PEP 562 ``__getattr__``), so ``spikedistill.analysis.stats``
(pure Python) can be imported, e.g. by the ``compare`` command at ``--help`` time, without
loading torch.
"""

import importlib
from typing import Any

#: public name -> the submodule defining it
_WHERE = {
    "E_AC_PJ": "counting", "E_MAC_PJ": "counting", "OpCounter": "counting",
    "ann_flops": "counting", "count_model": "counting", "summarize": "counting",
    "plot_run_curves": "curves", "plot_runs": "curves", "read_metrics": "curves",
    "analyze": "report", "evaluate_counted": "report", "to_markdown": "report",
    "write_report": "report",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'spikedistill.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"spikedistill.analysis.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
