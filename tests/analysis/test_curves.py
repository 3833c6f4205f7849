"""Curves from metrics.csv (the engine's format)."""

import pytest

from spikedistill.analysis.curves import plot_run_curves, plot_runs, read_metrics
from spikedistill.engine.logging import write_metrics_csv
from spikedistill.errors import SpikeDistillError

from _analysis_helpers import check_png


def _run(tmp_path, name, n=5, offset=0.0):
    d = tmp_path / name
    d.mkdir()
    history = []
    for e in range(1, n + 1):
        history.append({"epoch": e, "lr": 0.1 / e, "loss": 2.0 / e + offset, "loss_ce": 1.5 / e,
                        "loss_samd": 0.1 / e, "loss_nld": 0.4 / e, "train_acc": 0.1 * e,
                        "test_acc": None if e == 2 else 0.09 * e, "best_acc": 0.09 * e,
                        "images_per_s": 100.0, "epoch_time_s": 1.0, "eval_time_s": 0.1,
                        "time_s": float(e)})
    write_metrics_csv(d / "metrics.csv", history)
    return d


def test_read_metrics_and_one_run(tmp_path):
    d = _run(tmp_path, "a")
    cols = read_metrics(d)
    assert cols["epoch"] == [1, 2, 3, 4, 5]
    assert cols["test_acc"][1] != cols["test_acc"][1]      # empty cell -> NaN
    paths = plot_run_curves(d)
    assert paths == [d / "curves.png"]
    check_png(paths[0], (900, 300))


def test_overlay_runs(tmp_path):
    a, b = _run(tmp_path, "a"), _run(tmp_path, "b", n=3, offset=0.5)
    check_png(plot_runs([a, b], tmp_path / "both.png"), (800, 300))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(SpikeDistillError, match="metrics.csv"):
        read_metrics(tmp_path)
    bad = tmp_path / "metrics.csv"
    bad.write_text("epoch,loss\n1,abc\n")
    with pytest.raises(SpikeDistillError, match="line 2: column 'loss'"):
        read_metrics(tmp_path)


def test_small_loss_terms_get_their_own_panel(tmp_path):
    """CKD's SAMD term (0.002-0.003 beside a total near 1) is drawn on its own scale."""
    import matplotlib
    from spikedistill.analysis import curves

    d = tmp_path / "ckd"
    d.mkdir()
    history = [{"epoch": e, "lr": 0.1 / e, "loss": 1.0 / e + 0.0025, "loss_ce": 0.6 / e,
                "loss_nld": 0.4 / e, "loss_samd": 0.002 + 0.0005 * (e % 2), "train_acc": 0.5,
                "test_acc": 0.5, "best_acc": 0.5, "images_per_s": 1.0, "epoch_time_s": 1.0,
                "eval_time_s": 0.1, "time_s": float(e)} for e in range(1, 6)]
    write_metrics_csv(d / "metrics.csv", history)
    assert curves.small_terms(read_metrics(d)) == ["loss_samd"]
    made = []
    real = curves.save_figure
    curves.save_figure = lambda fig, out: made.append(fig) or real(fig, out)
    try:
        plot_run_curves(d)
    finally:
        curves.save_figure = real
    axes = made[0].axes
    assert len(axes) == 4
    assert [ln.get_label() for ln in axes[0].lines] == ["total", "ce", "nld"]
    assert [ln.get_label() for ln in axes[1].lines] == ["samd"]
    lo, hi = axes[1].get_ylim()
    assert lo > 0.0015 and hi < 0.003           # the term fills its panel
    assert axes[3].get_yscale() == "log"          # learning rate
    # the existing runs (samd 0.1 of a total 2.0) keep three panels
    assert curves.small_terms(read_metrics(_run(tmp_path, "big"))) == []
    matplotlib.pyplot.close("all")
