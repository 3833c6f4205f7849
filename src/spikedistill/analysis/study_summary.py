"""The summary of a comparison study (method x seed runs): mean +- std per method, the paired
statistics against a baseline, and the files that hold them.

- ``DIR/compare.md``: mean +- sample std of the best and last test accuracy per method, the
  number of seeds, the mean of each loss term over the last epoch (already weighted); then, for
  every method against the baseline, the paired mean difference over the seeds both ran
  (percentage points), its 95 % paired-t interval (n - 1 degrees of freedom; none for a single
  pair or equal differences), the two-sided p-value and whether the interval excludes 0; an
  order is claimed only from at least 3 pairs with spread (:mod:`spikedistill.analysis.stats`),
  otherwise the verdict says why not. Every table is preceded by a line saying which accuracy
  it compares (:func:`accuracy_caption`),
- ``DIR/compare.csv``: the same numbers, one row per method, and ``DIR/runs.csv``: one row per run,
- with the runs' energy (:func:`spikedistill.analysis.study.add_energy`): each method's energy
  per image (mJ, mean +- sample std over seeds, under the named cost model, on a bounded number
  of test images) beside its accuracy, and its paired difference against the baseline with the
  same statistics (95 % paired-t interval, p-value), in compare.md and compare.csv,
- ``DIR/compare.png``: a bar chart of best and last accuracy with std error bars, beside the
  paired differences against the baseline with their 95 % intervals.

Records are the per-run result dicts of :mod:`spikedistill.analysis.study`.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spikedistill.analysis.stats import PairedDifference, paired_difference
from spikedistill.atomic import atomic_write, atomic_write_text
from spikedistill.errors import ConfigError

#: the accuracies compared: (record key, row prefix, label)
METRICS = (("best_acc", "best", "best acc"), ("last_acc", "last", "last acc"))
CONFIDENCE = 0.95

def run_key(method: str, seed: int) -> str:
    return f"{method}-seed{seed}"


def selected_on_validation(records: Sequence[Dict[str, Any]]) -> bool:
    """True when every run held out a validation split (``data.val_fraction > 0`` in its
    recorded config), so that its best checkpoint was chosen on validation, not on test."""
    fractions = [((r.get("config") or {}).get("data") or {}).get("val_fraction") for r in records]
    return bool(fractions) and all(isinstance(f, (int, float)) and f > 0 for f in fractions)


def accuracy_caption(on_validation: bool) -> str:
    """The line naming the two accuracies every table compares."""
    best = ("best = test accuracy of the epoch with the best validation accuracy"
            if on_validation else
            "best = highest test accuracy over the epochs (chosen on the test set itself, so "
            "optimistic; no validation split was held out)")
    return f"Accuracy compared: {best}; last = test accuracy after the last epoch."


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _by_seed(records: Sequence[Dict[str, Any]], method: str, key: str) -> Dict[int, float]:
    """``{seed: accuracy in %}`` of one method's runs with a finite ``key``."""
    out = {}
    for r in records:
        v = r.get(key)
        if r["method"] == method and v is not None and math.isfinite(v):
            out[int(r["seed"])] = 100.0 * v
    return out


def paired_against(records: Sequence[Dict[str, Any]], method: str, baseline: str,
                   key: str = "best_acc") -> Tuple[List[int], Optional[PairedDifference]]:
    """The seeds both ``method`` and ``baseline`` ran, and the paired t comparison of their
    accuracies in % (``method - baseline``, pairs matched by seed); None without a common
    seed."""
    a, b = _by_seed(records, method, key), _by_seed(records, baseline, key)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return seeds, None
    return seeds, paired_difference([a[s] for s in seeds], [b[s] for s in seeds], CONFIDENCE)


def _energy_by_seed(records: Sequence[Dict[str, Any]], method: str) -> Dict[int, float]:
    """``{seed: energy per image in mJ}`` of one method's runs counted by
    :func:`spikedistill.analysis.study.add_energy`."""
    out = {}
    for r in records:
        v = (r.get("energy") or {}).get("energy_mj")
        if r["method"] == method and v is not None and math.isfinite(v):
            out[int(r["seed"])] = float(v)
    return out


def paired_energy_against(records: Sequence[Dict[str, Any]], method: str, baseline: str
                          ) -> Optional[PairedDifference]:
    """The paired t comparison of the energy per image (mJ, ``method - baseline``, pairs
    matched by seed, as :func:`paired_against` for the accuracy); None without a common
    seed."""
    a, b = _energy_by_seed(records, method), _energy_by_seed(records, baseline)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds], CONFIDENCE)


def _energy_setting(records) -> Optional[Dict[str, Any]]:
    """How the energy was counted (images, cost model and its constants, what was not
    counted), from the first record that has it; None without."""
    for r in records:
        e = r["energy"]
        return {k: e.get(k) for k in ("images", "cost_model", "e_mac_pj", "e_ac_pj", "source",
                                      "not_counted")}
    return None


def summarize(records: Sequence[Dict[str, Any]], methods: Sequence[str],
              baseline: Optional[str] = "ce") -> List[Dict[str, Any]]:
    """One row per method: n, seeds, best/last accuracy (%) mean and std, mean loss terms, and
    (``baseline`` among ``methods``; None: none) ``paired``: ``{"best": PairedDifference,
    "last": ...}`` of the method against the baseline over their common seeds (None for the
    baseline itself)."""
    if baseline is not None and baseline not in methods:
        raise ConfigError(f"--baseline: {baseline!r} is not one of the compared methods "
                          f"({', '.join(methods)})")
    rows = []
    for method in methods:
        recs = [r for r in records if r["method"] == method]
        best_m, best_s = _mean_std([100 * r["best_acc"] for r in recs if r["best_acc"] is not None])
        last_m, last_s = _mean_std([100 * r["last_acc"] for r in recs if r["last_acc"] is not None])
        terms: Dict[str, List[float]] = {}
        for r in recs:
            for k, v in (r.get("loss_means") or {}).items():
                terms.setdefault(k, []).append(v)
        teacher = [r["teacher_acc"] for r in recs if r.get("teacher_acc") is not None]
        paired: Dict[str, Optional[PairedDifference]] = {}
        paired_seeds: List[int] = []
        if baseline is not None and method != baseline:
            for key, prefix, _ in METRICS:
                paired_seeds, paired[prefix] = paired_against(records, method, baseline, key)
        energy = _energy_by_seed(records, method)
        energy_m, energy_s = _mean_std(list(energy.values())) if energy else (None, None)
        paired_energy = None
        if energy and baseline is not None and method != baseline:
            paired_energy = paired_energy_against(records, method, baseline)
        rows.append({
            "method": method, "n": len(recs), "seeds": [r["seed"] for r in recs],
            "best_mean": best_m, "best_std": best_s, "last_mean": last_m, "last_std": last_s,
            "losses": {k: statistics.fmean(v) for k, v in terms.items()},
            "teacher_acc": 100 * statistics.fmean(teacher) if teacher else None,
            "baseline": baseline, "is_baseline": method == baseline,
            "paired": paired, "paired_seeds": paired_seeds,
            "by_timestep": timestep_means(records, method),
            "on_validation": selected_on_validation(records),
            "energy_mean": energy_m, "energy_std": energy_s, "energy_n": len(energy),
            "paired_energy": paired_energy,
            "energy_setting": _energy_setting(r for r in recs if r.get("energy")),
        })
    return rows


def _loss_names(rows: Sequence[Dict[str, Any]]) -> List[str]:
    names: List[str] = []
    for row in rows:
        for k in row["losses"]:
            if k not in names:
                names.append(k)
    return names


def _fmt(v: Optional[float], nd: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _signed(v: Optional[float], nd: int = 2) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.{nd}f}"


def _signed_g(v: Optional[float]) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.4g}"


def format_difference(d: Optional[PairedDifference], signed=_signed) -> str:
    """``+1.23 [-0.50, +2.96]`` (mean and 95 % interval), ``+1.23 (n=1: no interval)``,
    ``+1.23 (sd 0: no interval)`` (every difference equal), ``-``; ``signed`` formats a
    number (``_signed_g``: 4 significant digits, for energies)."""
    if d is None:
        return "-"
    if not d.has_interval:
        why = "n=1" if d.n < 2 else "sd 0"
        return f"{signed(d.mean)} ({why}: no interval)"
    return f"{signed(d.mean)} [{signed(d.low)}, {signed(d.high)}]"


def _g(v: Optional[float]) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _has_energy(rows: Sequence[Dict[str, Any]]) -> bool:
    return any(r.get("energy_n") for r in rows)


def energy_caption(rows: Sequence[Dict[str, Any]]) -> str:
    """The line saying how the energy column was counted: images, the named cost model and its
    constants, the statistics, and what the counter did not count."""
    s = next(r["energy_setting"] for r in rows if r.get("energy_setting"))
    missed = {}
    for r in rows:
        missed.update((r.get("energy_setting") or {}).get("not_counted") or {})
    return (f"Energy per image (mJ): each run's best.pt counted image by image on {s['images']} "
            f"test images (one fixed random sample, the same for every run), E = e_mac MACs + "
            f"e_ac SOPs with cost model {s['cost_model']} ({s['e_mac_pj']} pJ / MAC, "
            f"{s['e_ac_pj']} pJ / AC: {s['source']}); mean ± sample std over seeds; Δ energy: "
            "paired by seed as the accuracy, with its 95 % paired-t interval. Not counted: "
            + (", ".join(f"{k} ({v:g})" for k, v in missed.items()) if missed else "nothing") + ".")


def _p_text(d: Optional[PairedDifference]) -> str:
    return "-" if d is None or d.p_value is None else f"{d.p_value:.3g}"


def _excludes_text(paired: Dict[str, Optional[PairedDifference]]) -> str:
    got = [p for p, d in paired.items() if d is not None and d.excludes_zero]
    if any(d is not None and d.has_interval for d in paired.values()):
        return ", ".join(got) if got else "neither"
    if any(d is not None and d.n >= 2 for d in paired.values()):
        return "no interval (sd 0)"
    return "no interval (n<2)"


def _timestep_columns(rows: Sequence[Dict[str, Any]]) -> int:
    """How many ``T'`` columns (``compare --every-timestep``): the longest curve, 0 without."""
    return max((len(r.get("by_timestep") or []) for r in rows), default=0)


def _claim_text(paired: Dict[str, Optional[PairedDifference]]) -> str:
    """The ``claimed`` cell: the metrics whose difference the seeds support, or why none."""
    got = [p for p, d in paired.items() if d is not None and d.claim()]
    if got:
        return ", ".join(got)
    reasons = [d.no_claim_reason() for d in paired.values() if d is not None]
    short = [r.split(" (")[0].split(":")[0] for r in reasons if r]
    return "none" + (f" ({short[0]})" if short else "")


def markdown_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Accuracy mean ± std per method and the mean loss terms, after the line naming the
    accuracies compared."""
    names = _loss_names(rows)
    n_t = _timestep_columns(rows)
    energy = _has_energy(rows)
    head = (["method", "n", "best acc %", "last acc %"] + ["energy mJ/image"] * energy
            + [f"T'={t} %" for t in range(1, n_t + 1)] + [f"{n} (mean)" for n in names])
    lines = [_caption(rows)] + ([energy_caption(rows)] if energy else []) + [
        "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["method"], str(r["n"]),
                 f"{_fmt(r['best_mean'])} ± {_fmt(r['best_std'])}",
                 f"{_fmt(r['last_mean'])} ± {_fmt(r['last_std'])}"]
        if energy:
            cells.append(f"{_g(r.get('energy_mean'))} ± {_g(r.get('energy_std'))}"
                         if r.get("energy_n") else "-")
        by_t = r.get("by_timestep") or []
        cells += [_fmt(by_t[i]) if i < len(by_t) else "-" for i in range(n_t)]
        cells += [format_loss(r["losses"].get(n)) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _caption(rows: Sequence[Dict[str, Any]]) -> str:
    return accuracy_caption(bool(rows) and all(r.get("on_validation") for r in rows))


def format_loss(v: Optional[float]) -> str:
    """A loss term with 4 significant digits (``0.002731``, ``1.500``, ``1.200e-05``), so a
    small term does not print as 0.0000."""
    return "-" if v is None or not math.isfinite(v) else f"{v:#.4g}"


def paired_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Every method against the baseline: paired seeds, the mean difference of best and last
    accuracy (percentage points) with its 95 % interval and p-value, which intervals exclude 0
    and which differences the seeds support (:meth:`PairedDifference.claim`), after the line
    naming the accuracies compared; empty without a baseline."""
    base = next((r for r in rows if r["is_baseline"]), None)
    if base is None:
        return ""
    b = base["method"]
    energy = _has_energy(rows)
    head = ["method", "paired seeds", f"Δ best vs {b} [95 % CI]", "p (best)",
            f"Δ last vs {b} [95 % CI]", "p (last)", "CI excludes 0", "claimed"]
    head += [f"Δ energy vs {b} mJ [95 % CI]", "p (energy)"] * energy
    lines = [_caption(rows)] + ([energy_caption(rows)] if energy else []) + [
        "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        if r["is_baseline"]:
            continue
        pb, pl = r["paired"].get("best"), r["paired"].get("last")
        pe = r.get("paired_energy")
        lines.append("| " + " | ".join([
            r["method"], str(len(r["paired_seeds"])), format_difference(pb), _p_text(pb),
            format_difference(pl), _p_text(pl), _excludes_text(r["paired"]),
            _claim_text(r["paired"])]
            + [format_difference(pe, _signed_g), _p_text(pe)] * energy) + " |")
    return "\n".join(lines)


def _verdict(what: str, method: str, d: Optional[PairedDifference], unit: str, signed,
             order: Tuple[str, str]) -> str:
    """The sentence on one paired difference: ``what: difference unit`` and whether the seeds
    support an order (the interval excludes 0 over enough pairs with spread) saying
    ``method order[0]`` (positive) / ``order[1]`` (negative), or why no order is claimed."""
    if d is None:
        return f"{what}: no common seed, no comparison"
    if not d.has_interval:
        return f"{what}: {signed(d.mean)} {unit}; {d.no_claim_reason()}: no order can be claimed"
    shown = format_difference(d, signed)
    if d.no_claim_reason() is not None:
        return f"{what}: {shown} {unit}; {d.no_claim_reason()}: no order can be claimed"
    if d.excludes_zero:
        return (f"{what}: {shown} {unit} over {d.n} seeds: the interval excludes 0 ({method} "
                f"{order[0] if d.mean > 0 else order[1]})")
    return f"{what}: {shown} {unit} over {d.n} seeds: the interval includes 0 (no difference shown)"


def verdict_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """One sentence per (method, metric) against the baseline saying whether the seeds support
    an order: the 95 % interval of the paired difference excludes 0 and it rests on at least
    :data:`~spikedistill.analysis.stats.MIN_PAIRS_FOR_CLAIM` pairs with spread; otherwise why
    no order is claimed."""
    return [_verdict(f"{r['method']} - {r['baseline']}, {label}", r["method"],
                     r["paired"].get(prefix), "points", _signed, ("is higher", "is lower"))
            for r in rows if not r["is_baseline"] for _, prefix, label in METRICS]


def energy_verdict_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """One sentence per method against the baseline on the energy per image: the paired
    difference (mJ) with its 95 % interval, and whether the seeds support an order (the rule of
    :func:`verdict_lines`)."""
    return [_verdict(f"{r['method']} - {r['baseline']}, energy per image", r["method"],
                     r.get("paired_energy"), "mJ", _signed_g, ("uses more", "uses less"))
            for r in rows if not r["is_baseline"] and r.get("energy_n")]


def selection_sentence(records: Sequence[Dict[str, Any]]) -> str:
    """Which split chose each run's ``best.pt`` (its test accuracy is "best acc")."""
    splits = sorted({str(r.get("selected_on") or "test") for r in records})
    if splits == ["val"]:
        return ("best acc: test accuracy of best.pt, chosen on the held-out validation split "
                "(data.val_fraction); last acc: the last epoch's.")
    if splits == ["test"]:
        return ("best acc: the highest test accuracy over epochs, chosen on the test split "
                "itself (no data.val_fraction: optimistic); last acc: the last epoch's.")
    return (f"best acc: chosen on different splits across runs ({', '.join(splits)}); "
            "last acc: the last epoch's.")


def dead_run_lines(records: Sequence[Dict[str, Any]]) -> List[str]:
    """One line per dead run (accuracy at chance or silent spiking layers, named)."""
    from spikedistill.engine.health import dead_student_text

    out = []
    for r in records:
        text = dead_student_text(bool(r.get("at_chance")), r.get("silent_layers") or [],
                                 int(r.get("spiking_layers") or 0), r.get("last_acc"))
        if text:
            out.append(f"{run_key(r['method'], r['seed'])}: {text}")
    return out


def write_summary(rows: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]], out: Path,
                  title: str = "") -> Dict[str, Path]:
    """Write compare.md, compare.csv, runs.csv and compare.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    names = _loss_names(rows)
    teacher = [r["teacher_acc"] for r in rows if r["teacher_acc"] is not None]
    md = [f"# {title}" if title else "# spikedistill compare", "",
          "Test accuracy over seeds (mean ± sample std), loss terms: means over each run's last "
          "epoch, already weighted (4 significant digits).", ""]
    if teacher:
        md += [f"Teacher test accuracy: {statistics.fmean(teacher):.2f} %", ""]
    md += [selection_sentence(records), ""]
    md += [f"- {line}" for line in dead_run_lines(records)] + [""] * bool(dead_run_lines(records))
    md += [markdown_table(rows), ""]
    paired = paired_table(rows)
    if paired:
        base = rows[[r["is_baseline"] for r in rows].index(True)]["method"]
        md += [f"## Paired differences against {base}", "",
               f"Runs with the same seed share the initialisation and the data order, so each "
               f"method pairs with {base} by seed: Δ is the mean over the common seeds of "
               f"(method - {base}) in percentage points, with its 95 % paired-t interval "
               "(n - 1 degrees of freedom; none for a single seed or when every difference is "
               "equal) and the two-sided p-value. An order is claimed only where the interval "
               "excludes 0 over at least 3 seed pairs.",
               "", paired, ""]
        md += [f"- {line}" for line in verdict_lines(rows) + energy_verdict_lines(rows)] + [""]
    paths = {"md": out / "compare.md", "csv": out / "compare.csv", "runs_csv": out / "runs.csv",
             "png": out / "compare.png"}
    atomic_write_text(paths["md"], "\n".join(md))

    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    diff_cols = [f"{prefix}_diff_{c}" for _, prefix, _ in METRICS
                 for c in ("mean", "ci_low", "ci_high", "p", "excludes_0")]
    n_t = _timestep_columns(rows)
    energy = _has_energy(rows)
    w.writerow(["method", "n", "seeds", "best_acc_mean", "best_acc_std", "last_acc_mean",
                "last_acc_std", "teacher_acc"] + [f"loss_{n}" for n in names]
               + ["baseline", "paired_n"] + diff_cols
               + [f"top1_T{t}_mean" for t in range(1, n_t + 1)]
               + list(ENERGY_COLUMNS) * energy)
    for r in rows:
        diffs: List[str] = []
        for _, prefix, _ in METRICS:
            d = r["paired"].get(prefix)
            diffs += ([_fmt(d.mean, 4), _fmt(d.low, 4), _fmt(d.high, 4), _fmt(d.p_value, 6),
                       "-" if d.excludes_zero is None else str(d.excludes_zero).lower()]
                      if d is not None else ["-"] * 5)
        w.writerow([r["method"], r["n"], " ".join(map(str, r["seeds"])),
                    _fmt(r["best_mean"], 4), _fmt(r["best_std"], 4), _fmt(r["last_mean"], 4),
                    _fmt(r["last_std"], 4), _fmt(r["teacher_acc"], 4)]
                   + [_fmt(r["losses"].get(n), 6) for n in names]
                   + [r["baseline"] or "-",
                      "-" if r["is_baseline"] or r["baseline"] is None
                      else len(r["paired_seeds"])] + diffs
                   + [_fmt((r.get("by_timestep") or [])[i], 4)
                      if i < len(r.get("by_timestep") or []) else "-" for i in range(n_t)]
                   + (_energy_cells(r) if energy else []))
    atomic_write_text(paths["csv"], fh.getvalue())

    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["method", "seed", "best_acc", "last_acc", "best_epoch", "wall_time_s",
                "images_per_s", "run_dir"] + [f"loss_{n}" for n in names]
               + ["energy_mj", "energy_images", "cost_model"] * energy)
    for rec in records:
        lm = rec.get("loss_means") or {}
        e = rec.get("energy") or {}
        w.writerow([rec["method"], rec["seed"], _fmt(_pct(rec["best_acc"]), 4),
                    _fmt(_pct(rec["last_acc"]), 4), rec.get("best_epoch"),
                    _fmt(rec.get("wall_time_s"), 2), _fmt(rec.get("images_per_s"), 1),
                    rec.get("run_dir")] + [_fmt(lm.get(n), 6) for n in names]
                   + ([_g(e.get("energy_mj")), e.get("images", "-"), e.get("cost_model", "-")]
                      if energy else []))
    atomic_write_text(paths["runs_csv"], fh.getvalue())

    fig = chart_figure(rows, title)
    from spikedistill.analysis.figures import pyplot
    atomic_write(paths["png"], lambda handle: fig.savefig(handle, format="png", dpi=120))
    pyplot().close(fig)
    return paths


#: compare.csv's energy columns (present when the runs were counted): mJ per image
ENERGY_COLUMNS = ("energy_images", "cost_model", "energy_mj_mean", "energy_mj_std",
                  "energy_diff_mean", "energy_diff_ci_low", "energy_diff_ci_high", "energy_diff_p",
                  "energy_diff_excludes_0")


def _energy_cells(r: Dict[str, Any]) -> List[str]:
    """The :data:`ENERGY_COLUMNS` cells of one summary row."""
    s = r.get("energy_setting") or {}
    d = r.get("paired_energy")
    diff = ([_g(d.mean), _g(d.low), _g(d.high), _fmt(d.p_value, 6),
             "-" if d.excludes_zero is None else str(d.excludes_zero).lower()]
            if d is not None else ["-"] * 5)
    return [s.get("images", "-"), s.get("cost_model", "-"), _g(r.get("energy_mean")),
            _g(r.get("energy_std"))] + diff


def _pct(v: Optional[float]) -> Optional[float]:
    return None if v is None else 100 * v


def chart_figure(rows: Sequence[Dict[str, Any]], title: str = ""):
    """The compare chart: bars of best and last accuracy (mean, std error bars) per method on an
    axis from 0 %, and, with a baseline, a second panel of the paired differences against it:
    the mean as a point and the 95 % interval as an error bar; a difference whose interval
    cannot be computed (one pair, or every difference equal) is a hollow marker labelled
    "no interval", never a zero-width bar; a line at 0."""
    from spikedistill.analysis.figures import pyplot
    plt = pyplot()

    def clean(v):
        return v if v is not None and math.isfinite(v) else 0.0

    def spread(r, key):  # no error bar (not a zero-width one) from a single seed
        return clean(r[key]) if r["n"] > 1 else float("nan")

    others = [r for r in rows if r["baseline"] is not None and not r["is_baseline"]]
    ncols = 2 if others else 1
    fig, axes = plt.subplots(1, ncols, figsize=(max(4.0, 1.2 * len(rows) + 2) * ncols, 3.6),
                             squeeze=False)
    ax = axes[0][0]
    x = list(range(len(rows)))
    width = 0.38
    ax.bar([i - width / 2 for i in x], [clean(r["best_mean"]) for r in rows], width,
           yerr=[spread(r, "best_std") for r in rows], capsize=3, label="best")
    ax.bar([i + width / 2 for i in x], [clean(r["last_mean"]) for r in rows], width,
           yerr=[spread(r, "last_std") for r in rows], capsize=3, label="last")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['method']}\n(n={r['n']})" for r in rows])
    ax.set_ylabel("test accuracy (%, mean ± std)")
    for i, r in enumerate(rows):
        for dx, key in ((-width / 2, "best_mean"), (width / 2, "last_mean")):
            if r[key] is not None and math.isfinite(r[key]):
                ax.text(i + dx, r[key] / 2, f"{r[key]:.1f}", ha="center", va="center",
                        rotation=90, fontsize="small", color="white")
    ax.set_ylim(0.0, 112.0)  # from 0 %, room above 100 % for the legend
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_title(title or "spikedistill compare", fontsize="medium")
    ax.legend(loc="upper center", ncol=2, fontsize="small")
    ax.grid(axis="y", alpha=0.3)

    if others:
        ax = axes[0][1]
        base = others[0]["baseline"]
        for j, (_, prefix, label) in enumerate(METRICS):
            xs, ys, errs, lone_x, lone_y = [], [], [], [], []
            color = f"C{j}"
            for i, r in enumerate(others):
                d = r["paired"].get(prefix)
                if d is None:
                    continue
                xpos = i + (j - 0.5) * 0.3
                if d.has_interval:
                    xs.append(xpos), ys.append(d.mean), errs.append(d.half_width)
                else:
                    lone_x.append(xpos), lone_y.append(d.mean)
                    ax.annotate("no\ninterval\n" + ("(n=1)" if d.n < 2 else "(sd 0)"),
                                (xpos, d.mean), textcoords="offset points", xytext=(0, -8),
                                ha="center", va="top", fontsize="x-small", color=color)
            if xs:
                ax.errorbar(xs, ys, yerr=errs, fmt="o", capsize=4, color=color,
                            label=f"{label} (95 % CI)")
            if lone_x:
                ax.plot(lone_x, lone_y, "o", mfc="none", color=color,
                        label=f"{label} (no interval)")
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_xticks(list(range(len(others))))
        ax.set_xticklabels([f"{r['method']}\n(pairs={len(r['paired_seeds'])})" for r in others])
        ax.set_xlim(-0.6, len(others) - 0.4)
        ax.set_ylabel(f"paired Δ vs {base} (points)")
        ax.set_title(f"paired difference against {base}", fontsize="medium")
        ax.margins(y=0.25)
        ax.legend(loc="best", fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig



def timestep_means(records: Sequence[Dict[str, Any]], method: str) -> List[float]:
    """Mean over one method's runs of ``top1_by_timestep`` (%), per ``T'``; [] without it."""
    curves = [r.get("top1_by_timestep") for r in records if r["method"] == method]
    if not curves or not all(curves):
        return []
    n = min(len(c) for c in curves)
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]
