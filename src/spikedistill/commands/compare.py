"""``spikedistill compare``: train several methods over several seeds and tabulate them.

    spikedistill compare --config CFG --methods ce,kd,ckd --seeds 0,1,2 \\
        [--teacher RUN_DIR/best.pt] [--set k=v ...] [--out DIR]

Every (method, seed) run uses the same recipe (``--config`` plus overrides), the same teacher
and, for the same seed, the same initialisation and data order (``train.seed`` = seed, which
seeds the student's init and the loader's per-epoch permutation and augmentation). Runs are
written to ``DIR/runs/METHOD-seedN``; each finished run leaves ``DIR/results/METHOD-seedN.json``.
A second invocation skips finished runs (a result made with a different config is an error),
continues interrupted ones from their ``last.pt``, and rewrites the summary:

- ``DIR/compare.md``: mean +- sample std of the best and last test accuracy per method, the
  number of seeds, the mean of each loss term over the last epoch (already weighted),
- ``DIR/compare.csv``: the same numbers, one row per method, and ``DIR/runs.csv``: one row per run,
- ``DIR/compare.png``: a bar chart of best and last accuracy with std error bars.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spikedistill.atomic import atomic_write, atomic_write_text
from spikedistill.commands.common import add_config_args, load_from_args, training_callbacks
from spikedistill.errors import ConfigError

RESULT_KEYS = ("best_acc", "last_acc", "best_epoch", "loss_means", "teacher_acc", "images_per_s",
               "wall_time_s", "run_dir", "teacher")


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
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------

def parse_methods(text: str) -> List[str]:
    from spikedistill.distill import list_methods

    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods: expected comma-separated method names, e.g. ce,kd,ckd")
    known = list_methods()
    for name in names:
        if name not in known:
            raise ConfigError(f"--methods: unknown method {name!r}; registered methods: "
                              f"{', '.join(known)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods: a method is listed twice in {text!r}")
    return names


def parse_seeds(text: str) -> List[int]:
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds: expected comma-separated integers, e.g. 0,1,2; got "
                              f"{part!r}") from None
    if not seeds:
        raise ConfigError("--seeds: expected at least one integer seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: a seed is listed twice in {text!r}")
    return seeds


def resolve_teacher(path: Optional[str]) -> Optional[str]:
    """A teacher checkpoint file: a run directory means its ``best.pt`` (else ``last.pt``)."""
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return str(p / name)
        raise ConfigError(f"--teacher: run directory '{p}' has neither best.pt nor last.pt")
    if not p.is_file():
        raise ConfigError(f"--teacher: checkpoint '{p}' does not exist (expected RUN_DIR/best.pt)")
    return str(p)


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------

def run_key(method: str, seed: int) -> str:
    return f"{method}-seed{seed}"


def _comparable(cfg_dict: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of a config that decide a run's outcome (``run.*`` only says where it goes)."""
    return {k: v for k, v in cfg_dict.items() if k != "run"}


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[Tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
            if d is not None:
                return d
        return None
    return None if a == b else (prefix, a, b)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def run_one(base_cfg, method: str, seed: int, teacher: Optional[str], out: Path,
            log=print) -> Dict[str, Any]:
    """Train (or skip / continue) one (method, seed) run and return its result record."""
    from spikedistill.distill import method_requires_teacher
    from spikedistill.engine import run_training

    key = run_key(method, seed)
    cfg = base_cfg.copy()
    cfg.distill.method = method
    cfg.train.seed = seed
    if method_requires_teacher(method):
        cfg.teacher.checkpoint = teacher
    else:  # the student alone: no teacher is built, whatever its source
        cfg.teacher.checkpoint = None
        cfg.teacher.source = "spikedistill"
    cfg.run.out_dir = str(out / "runs")
    cfg.run.name = key
    cfg.run.progress = False
    wanted = _comparable(cfg.to_dict())

    result_path = out / "results" / f"{key}.json"
    if result_path.is_file():
        record = json.loads(result_path.read_text())
        diff = _first_difference(record.get("config"), wanted)
        if diff is not None:
            raise ConfigError(f"{result_path} was produced with a different config (key "
                              f"'{diff[0]}': {diff[1]!r} there, {diff[2]!r} now); use another "
                              "--out or delete that result and its run directory")
        log(f"compare: {key}: finished earlier, skipped")
        return record

    run_dir = out / "runs" / key
    if (run_dir / "last.pt").is_file():
        log(f"compare: {key}: continuing the interrupted run in {run_dir}")
        from spikedistill.engine import load_checkpoint

        saved = load_checkpoint(run_dir)
        diff = _first_difference(_comparable(saved["config"]), wanted)
        if diff is not None:
            raise ConfigError(f"run directory '{run_dir}' holds a run with a different config "
                              f"(key '{diff[0]}': {diff[1]!r} there, {diff[2]!r} now); use another "
                              "--out or delete it")
        result = run_training(None, resume=run_dir, callbacks=training_callbacks())
    else:
        log(f"compare: {key}: training")
        result = run_training(cfg, callbacks=training_callbacks())
    record = {k: _finite(getattr(result, k)) for k in RESULT_KEYS}
    record.update(method=method, seed=seed, config=wanted)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(result_path, record)
    return record


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------

def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(records: Sequence[Dict[str, Any]], methods: Sequence[str]) -> List[Dict[str, Any]]:
    """One row per method: n, seeds, best/last accuracy (%) mean and std, mean loss terms."""
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
        rows.append({
            "method": method, "n": len(recs), "seeds": [r["seed"] for r in recs],
            "best_mean": best_m, "best_std": best_s, "last_mean": last_m, "last_std": last_s,
            "losses": {k: statistics.fmean(v) for k, v in terms.items()},
            "teacher_acc": 100 * statistics.fmean(teacher) if teacher else None,
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


def markdown_table(rows: Sequence[Dict[str, Any]]) -> str:
    names = _loss_names(rows)
    head = ["method", "n", "best acc %", "last acc %"] + [f"{n} (mean)" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["method"], str(r["n"]),
                 f"{_fmt(r['best_mean'])} ± {_fmt(r['best_std'])}",
                 f"{_fmt(r['last_mean'])} ± {_fmt(r['last_std'])}"]
        cells += [_fmt(r["losses"].get(n), 4) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(rows: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]], out: Path,
                  title: str = "") -> Dict[str, Path]:
    """Write compare.md, compare.csv, runs.csv and compare.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    names = _loss_names(rows)
    teacher = [r["teacher_acc"] for r in rows if r["teacher_acc"] is not None]
    md = [f"# {title}" if title else "# spikedistill compare", "",
          "Test accuracy over seeds (mean ± sample std), loss terms: means over each run's last "
          "epoch, already weighted.", ""]
    if teacher:
        md += [f"Teacher test accuracy: {statistics.fmean(teacher):.2f} %", ""]
    md += [markdown_table(rows), ""]
    paths = {"md": out / "compare.md", "csv": out / "compare.csv", "runs_csv": out / "runs.csv",
             "png": out / "compare.png"}
    atomic_write_text(paths["md"], "\n".join(md))

    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["method", "n", "seeds", "best_acc_mean", "best_acc_std", "last_acc_mean",
                "last_acc_std", "teacher_acc"] + [f"loss_{n}" for n in names])
    for r in rows:
        w.writerow([r["method"], r["n"], " ".join(map(str, r["seeds"])),
                    _fmt(r["best_mean"], 4), _fmt(r["best_std"], 4), _fmt(r["last_mean"], 4),
                    _fmt(r["last_std"], 4), _fmt(r["teacher_acc"], 4)]
                   + [_fmt(r["losses"].get(n), 6) for n in names])
    atomic_write_text(paths["csv"], fh.getvalue())

    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["method", "seed", "best_acc", "last_acc", "best_epoch", "wall_time_s",
                "images_per_s", "run_dir"] + [f"loss_{n}" for n in names])
    for rec in records:
        lm = rec.get("loss_means") or {}
        w.writerow([rec["method"], rec["seed"], _fmt(_pct(rec["best_acc"]), 4),
                    _fmt(_pct(rec["last_acc"]), 4), rec.get("best_epoch"),
                    _fmt(rec.get("wall_time_s"), 2), _fmt(rec.get("images_per_s"), 1),
                    rec.get("run_dir")] + [_fmt(lm.get(n), 6) for n in names])
    atomic_write_text(paths["runs_csv"], fh.getvalue())

    _bar_chart(rows, paths["png"], title)
    return paths


def _pct(v: Optional[float]) -> Optional[float]:
    return None if v is None else 100 * v


def _bar_chart(rows: Sequence[Dict[str, Any]], path: Path, title: str) -> None:
    from spikedistill.analysis.figures import pyplot
    plt = pyplot()

    def clean(v):
        return v if v is not None and math.isfinite(v) else 0.0

    x = list(range(len(rows)))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6))
    ax.bar([i - width / 2 for i in x], [clean(r["best_mean"]) for r in rows], width,
           yerr=[clean(r["best_std"]) for r in rows], capsize=3, label="best")
    ax.bar([i + width / 2 for i in x], [clean(r["last_mean"]) for r in rows], width,
           yerr=[clean(r["last_std"]) for r in rows], capsize=3, label="last")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['method']}\n(n={r['n']})" for r in rows])
    ax.set_ylabel("test accuracy (%)")
    vals = [clean(r[k]) for r in rows for k in ("best_mean", "last_mean")]
    lo = min(vals) if vals else 0.0
    hi = max(vals or [1.0]) + max([clean(r["best_std"]) for r in rows] + [0.0])
    ax.set_ylim(max(0.0, lo - 10.0), hi + 0.15 * (hi - max(0.0, lo - 10.0)) + 1.0)
    ax.set_title(title or "spikedistill compare")
    ax.legend(loc="upper right", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------

def compare(base_cfg, methods: Sequence[str], seeds: Sequence[int], out, teacher=None,
            log=print) -> Tuple[List[Dict[str, Any]], Dict[str, Path]]:
    """Run every (method, seed) (seeds outermost) and write the summary; returns the per-method
    rows and the paths written."""
    from spikedistill.distill import method_requires_teacher

    out = Path(out)
    teacher = resolve_teacher(teacher if teacher is not None else base_cfg.teacher.checkpoint)
    needing = [m for m in methods if method_requires_teacher(m)]
    if needing and teacher is None and base_cfg.teacher.source == "spikedistill":
        raise ConfigError(f"methods {', '.join(needing)} need a teacher: pass --teacher "
                          "RUN_DIR/best.pt (or set teacher.checkpoint)")
    records = []
    for seed in seeds:
        for method in methods:
            records.append(run_one(base_cfg, method, seed, teacher, out, log=log))
    rows = summarize(records, methods)
    title = f"{base_cfg.model.name} T={base_cfg.model.T} on {base_cfg.data.name}"
    paths = write_summary(rows, records, out, title)
    return rows, paths


def run(args) -> int:
    cfg = load_from_args(args)
    methods = parse_methods(args.methods)
    seeds = parse_seeds(args.seeds)
    rows, paths = compare(cfg, methods, seeds, args.out, teacher=args.teacher)
    print()
    print(markdown_table(rows))
    print(f"\nwrote {paths['md']}, {paths['csv']}, {paths['runs_csv']}, {paths['png']}")
    return 0
