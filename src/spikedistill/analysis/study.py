"""A comparison study: every (method, seed) run of one recipe, trained (or skipped / continued),
then summarised (:mod:`spikedistill.analysis.study_summary`).

Every (method, seed) run uses the same recipe, the same teacher and, for the same seed, the same
initialisation and data order (``train.seed`` = seed, which seeds the student's init and the
loader's per-epoch permutation and augmentation). Runs are written to ``DIR/runs/METHOD-seedN``;
each finished run leaves ``DIR/results/METHOD-seedN.json``. A second call skips finished runs (a
result made with a different config is an error), continues interrupted ones from their newest
intact checkpoint (``last.pt``, else ``best.pt``, as ``train --resume`` does), and rewrites the
summary.

With ``energy_images=N`` (``compare --energy-images``) every run's ``best.pt`` is also counted
on the same N test images (:func:`add_energy`): its energy per image under a named cost model,
which the summary reports beside the accuracy with the same paired statistics.

With ``jobs=N`` the runs go to N worker processes: each run's output is written to
``DIR/logs/METHOD-seedN.log`` as it comes, and its lines are handed to ``log`` as they come,
prefixed with ``METHOD-seedN:``. A run's numbers do not depend on N (same seed, same
``train.threads``).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spikedistill.analysis.curves import training_callbacks
from spikedistill.analysis.study_summary import _fmt, _pct, run_key, summarize, write_summary
from spikedistill.atomic import atomic_write_text
from spikedistill.errors import ConfigError, SpikeDistillError
from spikedistill.run_files import resolve_teacher

RESULT_KEYS = ("best_acc", "last_acc", "best_epoch", "loss_means", "teacher_acc", "images_per_s",
               "wall_time_s", "run_dir", "teacher", "selected_on", "best_val_acc",
               "at_chance", "silent_layers", "spiking_layers")



def parse_baseline(name: Optional[str], methods: Sequence[str]) -> str:
    """The baseline method: a name among ``methods`` (one clear line otherwise)."""
    name = str(name or "").strip()
    if name not in methods:
        from spikedistill.distill import list_methods

        what = ("is not one of --methods" if name in list_methods()
                else "is not a registered method; it must be one of --methods")
        raise ConfigError(f"--baseline: {name!r} {what} ({', '.join(methods)}); add it to "
                          "--methods or pass --baseline METHOD")
    return name


def parse_jobs(jobs: Any) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs: expected a positive integer, got {jobs!r}")
    return jobs



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
    from spikedistill.engine.resume import find_resume_checkpoint
    from spikedistill.engine.run_dir import checkpoint_files

    key = run_key(method, seed)
    cfg = base_cfg.copy()
    cfg.distill.method = method
    if method == "deit":        # DeiT trains a second head (model.distill_head); others do not
        cfg.model.distill_head = True
    cfg.train.seed = seed
    if method_requires_teacher(method):
        cfg.teacher.checkpoint = teacher
    else:  # the student alone: no teacher is built, whatever its source
        cfg.teacher.checkpoint = None
        cfg.teacher.source = "spikedistill"
        cfg.teacher.zoo = None
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
    if checkpoint_files(run_dir):          # last.pt and/or best.pt: continue as train --resume
        log(f"compare: {key}: continuing the interrupted run in {run_dir}")
        saved = find_resume_checkpoint(run_dir, announce=False)
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



def _run_streamed(job) -> Dict[str, Any]:
    """Worker side of ``--jobs``: :func:`run_one` with its output (and, on failure, its
    traceback) written to ``logs/KEY.log`` line by line as it comes; the parent prints the
    file's new lines (:class:`_LogTail`). The config travels as plain data, so a plugin's
    config class need not pickle."""
    import traceback

    from spikedistill.config import Config, from_dict

    cfg_dict, method, seed, teacher, out = job
    base_cfg = from_dict(Config, cfg_dict)     # plugins' config classes by name, in this process
    logs = Path(out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{run_key(method, seed)}.log", "w", encoding="utf-8", buffering=1) as fh:
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                return run_one(base_cfg, method, seed, teacher, Path(out))
            except BaseException:
                traceback.print_exc(file=fh)
                raise


class _LogTail:
    """The runs' log files as they grow: :meth:`poll` hands each new complete non-empty line
    (``\\r`` counts as a line end), prefixed ``KEY: ``, to ``log``."""

    def __init__(self, logs: Path, keys: Sequence[str], log) -> None:
        self.paths = {k: logs / f"{k}.log" for k in keys}
        self.offsets = {k: 0 for k in keys}
        self.pending = {k: "" for k in keys}
        self.log = log

    def poll(self) -> None:
        for key, path in self.paths.items():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets[key])
                    data = fh.read()
            except FileNotFoundError:
                continue
            self.offsets[key] += len(data)
            text = self.pending[key] + data.decode("utf-8", errors="replace").replace("\r", "\n")
            *lines, self.pending[key] = text.split("\n")
            for line in lines:
                if line.strip():
                    self.log(f"{key}: {line.rstrip()}")


def run_all(base_cfg, jobs_list, teacher, out: Path, jobs: int, log) -> List[Dict[str, Any]]:
    """Every (method, seed) of ``jobs_list`` in order, in this process (``jobs`` = 1) or in
    ``jobs`` spawned worker processes; records come back in the order of ``jobs_list``."""
    if jobs == 1 or len(jobs_list) <= 1:
        return [run_one(base_cfg, m, s, teacher, out, log=log) for m, s in jobs_list]
    import concurrent.futures as cf
    import multiprocessing as mp

    from spikedistill.data.workers import pool_failure, process_pool, stop_pool

    records: List[Optional[Dict[str, Any]]] = [None] * len(jobs_list)
    cfg_dict = base_cfg.to_dict()          # plain data: a plugin's config class need not pickle
    pool = process_pool(min(jobs, len(jobs_list)), mp.get_context("spawn"))
    tail = _LogTail(out / "logs", [run_key(m, s) for m, s in jobs_list], log)
    try:
        futures = {}
        for i, (m, s) in enumerate(jobs_list):
            futures[pool.submit(_run_streamed, (cfg_dict, m, s, teacher, str(out)))] = i
        log(f"compare: {len(jobs_list)} runs in {min(jobs, len(jobs_list))} worker processes "
            f"(each run's output, as it comes: {out / 'logs'}/METHOD-seedN.log)")
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            tail.poll()
            for fut in done:
                i = futures[fut]
                try:
                    record = fut.result()
                except SpikeDistillError:
                    raise
                except Exception as exc:
                    key = run_key(*jobs_list[i])
                    line = pool_failure(exc, f"compare: {key}") or (
                        f"compare: {key} failed in its worker: {type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''} "
                        f"(its output and traceback: {out / 'logs' / (key + '.log')})")
                    raise SpikeDistillError(line) from None
                records[i] = record
                m, s = jobs_list[i]
                log(f"compare: {run_key(m, s)}: best {_fmt(_pct(record['best_acc']))} %, last "
                    f"{_fmt(_pct(record['last_acc']))} % ({_fmt(record.get('wall_time_s'), 1)} s)")
    except BaseException:
        stop_pool(pool)            # Ctrl-C or an error: the other runs stop now, not at their end
        raise
    finally:
        pool.shutdown(wait=True)
        tail.poll()
    return [r for r in records if r is not None]


#: test images per run whose energy ``compare`` counts by default (``--energy-images``): few,
#: so that compare stays cheap (each image is counted alone, :mod:`spikedistill.analysis.energy`)
ENERGY_IMAGES = 16


def parse_energy_images(images: Any) -> int:
    """``--energy-images``: a non-negative integer (0: no energy)."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ConfigError(f"--energy-images: expected a non-negative integer (0: no energy), "
                          f"got {images!r}")
    return images


def parse_cost_model(name: Any) -> str:
    """``--cost-model``: one of :data:`spikedistill.analysis.energy.COST_MODELS`."""
    from spikedistill.analysis.energy import COST_MODELS

    if name not in COST_MODELS:
        raise ConfigError(f"--cost-model: expected one of {', '.join(COST_MODELS)}, got "
                          f"{name!r}")
    return str(name)


def compare(base_cfg, methods: Sequence[str], seeds: Sequence[int], out, teacher=None,
            log=print, baseline: Optional[str] = "ce", jobs: int = 1,
            every_timestep: bool = False, energy_images: int = 0,
            cost_model: str = "45nm_fp32") -> Tuple[List[Dict[str, Any]], Dict[str, Path]]:
    """Run every (method, seed) (seeds outermost; ``jobs`` at once in worker processes) and
    write the summary with the paired comparison against ``baseline`` (one of ``methods``, or
    None); with ``energy_images`` > 0 each run's energy per image on that many test images
    under ``cost_model`` too (:func:`add_energy`; 0: no energy, not even one stored by an earlier
    compare). Returns the per-method rows and the paths
    written."""
    out = Path(out)
    if baseline is not None:
        baseline = parse_baseline(baseline, methods)
    jobs = parse_jobs(jobs)
    energy_images = parse_energy_images(energy_images)
    if energy_images:
        cost_model = parse_cost_model(cost_model)
    teacher = resolve_teacher(teacher if teacher is not None else base_cfg.teacher.checkpoint)
    check_teacher_for(methods, teacher, base_cfg)
    records = run_all(base_cfg, [(m, s) for s in seeds for m in methods], teacher, out, jobs,
                       log)
    if every_timestep:
        add_timestep_accuracies(base_cfg, records, out, log)
    if energy_images:
        add_energy(base_cfg, records, out, energy_images, cost_model, log)
    else:  # off: energies an earlier compare stored in the result files are not reported
        records = [{k: v for k, v in r.items() if k != "energy"} for r in records]
    rows = summarize(records, methods, baseline)
    title = f"{base_cfg.model.name} T={base_cfg.model.T} on {base_cfg.data.name}"
    paths = write_summary(rows, records, out, title)
    return rows, paths


def add_timestep_accuracies(base_cfg, records: Sequence[Dict[str, Any]], out: Path,
                            log=print) -> None:
    """Give every record ``top1_by_timestep``: the test top-1 (%) of its run's ``best.pt`` at
    each ``T' = 1..T`` (:func:`spikedistill.analysis.timesteps.accuracy_by_timestep`, one pass
    per run), stored into its result JSON so a later compare reuses it."""
    import torch

    from spikedistill.analysis.loading import eval_loader
    from spikedistill.analysis.timesteps import accuracy_by_timestep
    from spikedistill.engine.checkpoint import load_model_from_checkpoint
    from spikedistill.engine.distributed import resolve_device

    todo = [r for r in records if not r.get("top1_by_timestep")]
    if not todo:
        return
    device = resolve_device(base_cfg.train.device)
    loader, _ = eval_loader(base_cfg, device)
    for rec in todo:
        key = run_key(rec["method"], rec["seed"])
        model, _ = load_model_from_checkpoint(Path(rec["run_dir"]) / "best.pt", device)
        with torch.no_grad():
            rows = accuracy_by_timestep(model, loader, device)
        rec["top1_by_timestep"] = [r["top1"] for r in rows]
        _write_json(out / "results" / f"{key}.json", rec)
        log(f"compare: {key}: top-1 at T' = 1..{len(rows)}: "
            + ", ".join(f"{v:.2f}" for v in rec["top1_by_timestep"]) + " %")


def add_energy(base_cfg, records: Sequence[Dict[str, Any]], out: Path, images: int,
               cost: str = "45nm_fp32", log=print) -> None:
    """Give every record ``energy``: its run's ``best.pt`` counted image by image on the first
    ``images`` test images of one fixed random permutation (seed 0: the same images for every
    run; :func:`spikedistill.analysis.energy.energy_distribution`) under the cost model
    ``cost``: ``energy_mj`` = mean over the images of ``E_i = e_mac MACs_i + e_ac SOPs_i``
    (mJ per image) with its 95 % interval over the images, the mean ``sops`` and ``macs``, the
    cost model's constants and what the counter did not count. Stored into the result JSON, so
    a later compare with the same ``images`` and ``cost`` reuses it."""
    from spikedistill.analysis.energy import energy_distribution
    from spikedistill.analysis.loading import eval_loader, input_affine_of
    from spikedistill.engine.checkpoint import load_model_from_checkpoint
    from spikedistill.engine.distributed import resolve_device

    todo = [r for r in records if (r.get("energy") or {}).get("requested") != images
            or (r.get("energy") or {}).get("cost_model") != cost]
    if not todo:
        return
    device = resolve_device(base_cfg.train.device)
    loader, pipe = eval_loader(base_cfg, device,
                               min(images, int(base_cfg.train.eval_batch_size)), sample=True)
    affine = input_affine_of(pipe)
    for rec in todo:
        key = run_key(rec["method"], rec["seed"])
        model, _ = load_model_from_checkpoint(Path(rec["run_dir"]) / "best.pt", device)
        res = energy_distribution(model, ((x.to(device), y) for x, y in loader), cost=cost,
                                  input_affine=affine, max_images=images)
        tot, cm = res["totals"], res["cost_model"]
        rec["energy"] = {"requested": images, "images": res["images"], "cost_model": cost,
                         "e_mac_pj": cm["e_mac_pj"], "e_ac_pj": cm["e_ac_pj"],
                         "source": cm["source"], "energy_mj": tot["energy_mj"]["mean"],
                         "energy_mj_ci95": list(tot["energy_mj"]["ci95"]),
                         "sops": tot["sops"]["mean"], "macs": tot["macs"]["mean"],
                         "not_counted": res["not_counted"]}
        _write_json(out / "results" / f"{key}.json", rec)
        log(f"compare: {key}: energy {rec['energy']['energy_mj']:.4g} mJ per image "
            f"({res['images']} test images, {cost})")


def check_teacher_for(methods: Sequence[str], teacher: Optional[str], base_cfg) -> None:
    """ConfigError, before anything trains, when some of ``methods`` need a teacher and neither
    ``teacher`` (a checkpoint) nor an external ``teacher.source`` gives one."""
    from spikedistill.distill import method_requires_teacher

    needing = [m for m in dict.fromkeys(methods) if method_requires_teacher(m)]
    if needing and teacher is None and base_cfg.teacher.source == "spikedistill" \
            and not base_cfg.teacher.zoo:
        raise ConfigError(f"methods {', '.join(needing)} need a teacher: pass --teacher "
                          "RUN_DIR/best.pt (or set teacher.checkpoint)")
