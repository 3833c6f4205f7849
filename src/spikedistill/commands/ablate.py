"""``spikedistill ablate``: run an ablation grid (variants x seeds) with ``compare``'s machinery.

    spikedistill ablate --grid configs/ablations/samd_scaling.yaml --teacher RUN_DIR/best.pt \\
        [--seeds 0,1,2] [--jobs N] [--set k=v ...] [--out DIR]

A grid file (``configs/ablations/*.yaml``) names the recipe, the seeds, the variants and the
variant every other one is compared with::

    base: ../digits/compare_all_methods.yaml     # a run config, relative to the grid file
    seeds: [0, 1, 2]
    baseline: softmax
    variants:
      softmax: {method: samd, set: {distill.ckd.samd.scaling: softmax}}
      zscore:  {method: samd, set: {distill.ckd.samd.scaling: zscore}}

Each variant is a method plus dotted overrides on the base (``--set`` of the command line comes
last and applies to every variant). Its runs go to ``DIR/VARIANT/`` exactly as ``compare``
writes them (``runs/METHOD-seedN``, ``results/``, resumable), and ``DIR/compare.md`` /
``.csv`` / ``.png`` tabulate the variants with the paired statistics against the baseline
(:func:`spikedistill.analysis.study_summary.summarize`). :func:`expand_grid` gives the runs without
training anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spikedistill.commands.common import overrides_from_args, parse_methods, parse_seeds
from spikedistill.config import Config, load_config, read_yaml
from spikedistill.errors import ConfigError

GRID_KEYS = ("base", "seeds", "baseline", "variants")
VARIANT_KEYS = ("method", "set")


@dataclass
class GridRun:
    """One run of a grid: variant name, method, seed and the resolved config."""

    variant: str
    method: str
    seed: int
    overrides: List[str]
    config: Config


@dataclass
class Grid:
    path: Path
    base: Path
    seeds: List[int]
    baseline: str
    variants: Dict[str, Dict[str, Any]]


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def load_grid(path) -> Grid:
    """Read and check a grid file (ConfigError naming the file and the key otherwise)."""
    p = Path(path)
    data = read_yaml(p)
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"grid file '{p}': unknown key(s) {', '.join(unknown)}; expected "
                          f"{', '.join(GRID_KEYS)}")
    for key in ("base", "variants", "baseline"):
        if key not in data:
            raise ConfigError(f"grid file '{p}': missing '{key}'")
    variants = data["variants"]
    if not isinstance(variants, dict) or len(variants) < 2:
        raise ConfigError(f"grid file '{p}': 'variants' must map at least two names to "
                          "{method: NAME, set: {KEY: VALUE}}")
    from spikedistill.engine.run_dir import check_folder_name

    names = [check_folder_name(n, f"grid file '{p}': variant name {n!r}", "--out") for n in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid file '{p}': variant names {names} name one folder twice")
    variants = dict(zip(names, variants.values()))
    for name, v in variants.items():
        if not isinstance(v, dict) or "method" not in v:
            raise ConfigError(f"grid file '{p}': variant '{name}' needs a 'method'")
        bad = sorted(set(v) - set(VARIANT_KEYS))
        if bad:
            raise ConfigError(f"grid file '{p}': variant '{name}': unknown key(s) "
                              f"{', '.join(bad)}; expected method, set")
        if not isinstance(v.get("set", {}) or {}, dict):
            raise ConfigError(f"grid file '{p}': variant '{name}': 'set' must map dotted keys "
                              "to values")
        if "distill.method" in (v.get("set") or {}):
            raise ConfigError(f"grid file '{p}': variant '{name}': 'set' gives distill.method, "
                              "which the variant's 'method' decides; write method: "
                              f"{v['set']['distill.method']} instead")
    if str(data["baseline"]) not in variants:
        raise ConfigError(f"grid file '{p}': baseline '{data['baseline']}' is not one of the "
                          f"variants ({', '.join(variants)})")
    seeds = data.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ConfigError(f"grid file '{p}': 'seeds' must be a list of distinct integers, got "
                          f"{seeds!r}")
    return Grid(path=p, base=(p.parent / str(data["base"])), seeds=list(seeds),
                baseline=str(data["baseline"]), variants=dict(variants))


def expand_grid(path, overrides: Sequence[str] = (),
                seeds: Optional[Sequence[int]] = None) -> List[GridRun]:
    """Every (variant, seed) of the grid with its resolved config (variants in file order,
    seeds outermost as in ``compare``); nothing is trained. Unknown methods or keys raise
    ConfigError."""
    grid = load_grid(path)
    runs: List[GridRun] = []
    configs = {}
    for name, v in grid.variants.items():
        try:
            parse_methods(str(v["method"]))
        except ConfigError as exc:
            raise ConfigError(f"grid file '{grid.path}', variant '{name}': {exc}") from None
    for name, v in grid.variants.items():
        method = str(v["method"])
        ov = [f"distill.method={method}"] + [f"{k}={_fmt_value(val)}"
                                            for k, val in (v.get("set") or {}).items()]
        ov += list(overrides)
        try:
            configs[name] = (method, ov, load_config(grid.base, ov))
        except ConfigError as exc:
            raise ConfigError(f"grid file '{grid.path}', variant '{name}': {exc}") from None
    for seed in (list(seeds) if seeds is not None else grid.seeds):
        for name, (method, ov, cfg) in configs.items():
            c = cfg.copy()
            c.train.seed = seed
            runs.append(GridRun(name, method, seed, ov, c))
    return runs


def register(sub) -> None:
    p = sub.add_parser("ablate", help="run an ablation grid (configs/ablations/*.yaml): "
                                      "variants x seeds, tabulated like compare")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="dotted overrides applied to every variant")
    p.add_argument("--grid", required=True, help="grid file (configs/ablations/*.yaml)")
    p.add_argument("--teacher", default=None, help="teacher checkpoint (RUN_DIR or best.pt)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the grid's)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--out", default="runs/ablate", help="output folder (default runs/ablate)")
    p.set_defaults(func=run)


def ablate(grid_path, out, teacher=None, overrides: Sequence[str] = (),
           seeds: Optional[Sequence[int]] = None, jobs: int = 1, log=print):
    """Train every run of the grid (skipping finished ones) and write the summary."""
    from spikedistill.analysis import study as C
    from spikedistill.analysis.study_summary import summarize, write_summary
    from spikedistill.run_files import resolve_teacher

    grid = load_grid(grid_path)
    runs = expand_grid(grid_path, overrides, seeds)
    out = Path(out)
    teacher = resolve_teacher(teacher)
    for name in grid.variants:           # every variant's teacher need, before anything trains
        mine = [r for r in runs if r.variant == name]
        C.check_teacher_for([r.method for r in mine], teacher, mine[0].config)
    records = []
    for name in grid.variants:
        mine = [r for r in runs if r.variant == name]
        cfg = mine[0].config
        for rec in C.run_all(cfg, [(r.method, r.seed) for r in mine], teacher, out / name,
                              C.parse_jobs(jobs), log):
            records.append({**rec, "method": name})
    names = list(grid.variants)
    rows = summarize(records, names, grid.baseline)
    paths = write_summary(rows, records, out, f"ablation {grid.path.stem}")
    return rows, paths


def run(args) -> int:
    from spikedistill.analysis.study_summary import markdown_table, paired_table, verdict_lines

    seeds = parse_seeds(args.seeds) if args.seeds else None
    rows, paths = ablate(args.grid, args.out, teacher=args.teacher,
                         overrides=overrides_from_args(args), seeds=seeds, jobs=args.jobs)
    print()
    print(markdown_table(rows))
    print()
    print(paired_table(rows))
    for line in verdict_lines(rows):
        print(line)
    print(f"\nwrote {paths['md']}, {paths['csv']}, {paths['runs_csv']}, {paths['png']}")
    return 0
