"""Analysis report of a trained student: accuracy, firing rates, FLOPs/SOPs, energy.

:func:`analyze` evaluates a model on (a number of) batches of a loader while
:class:`~spikedistill.analysis.counting.OpCounter` counts spikes and operations, optionally
beside a teacher ANN and at several timesteps; :func:`write_report` writes ``report.md``,
``report.json`` and ``firing_rates.png``. The counting conventions (firing rate, FLOPs, SOPs,
``E = e_mac * MACs + e_ac * SOPs``) are those of :mod:`spikedistill.analysis.counting`.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import torch
import torch.nn as nn

from spikedistill.analysis.counting import E_AC_PJ, E_MAC_PJ, OpCounter
from spikedistill.analysis.figures import pyplot, save_figure
from spikedistill.analysis.timesteps import (accuracy_by_timestep, plot_accuracy_by_timestep,
                                             timestep_table)
from spikedistill.atomic import atomic_write_text
from spikedistill.errors import ConfigError

PathLike = Any


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batches(loader: Iterable, batches: Optional[int]):
    """The first ``batches`` ``(x, y)`` pairs of ``loader`` (all when None)."""
    it = iter(loader)
    return islice(it, batches) if batches is not None else it


def _logits(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def is_spiking_model(model: nn.Module) -> bool:
    """The contract's ``is_spiking`` (a module outside the contract: spiking if it has a ``T``)."""
    flag = getattr(model, "is_spiking", None)
    return bool(flag) if flag is not None else hasattr(model, "T")


class FramesView(nn.Module):
    """An ANN teacher seeing frames ``[T, B, C, H, W]`` as ``teacher.frames`` says
    (:func:`spikedistill.distill.base.teacher_input`): logits ``time_mean(teacher(view(x)))``.
    Counted as one model, so its per-image counts use the frames' ``B`` and a ``per_step``
    teacher runs ``T`` calls per image."""

    def __init__(self, teacher: nn.Module, frames: str = "mean"):
        super().__init__()
        self.teacher = teacher
        self.frames = frames
        self.model_name = getattr(teacher, "model_name", type(teacher).__name__)
        self.train(teacher.training)        # restoring the view's mode restores the teacher's

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikedistill.distill.base import teacher_input, time_mean

        xin, steps = teacher_input(x, self.frames)
        return time_mean(_logits(self.teacher(xin)), steps)


def evaluate_counted(model: nn.Module, batches: Iterable, *, e_mac: float = E_MAC_PJ,
                     e_ac: float = E_AC_PJ, input_affine: Optional[tuple] = None) -> Dict[str, Any]:
    """Top-1 accuracy (%) of ``model`` on ``batches`` of ``(x, y)`` (``x`` images ``[B, C, H, W]``
    or frames ``[T, B, C, H, W]``) with the op counts of :meth:`OpCounter.summary` (per image)
    and ``frames`` (whether the inputs were frame sequences). The model runs in eval mode; its
    mode is restored."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    correct = seen = 0
    try:
        with OpCounter(model, input_affine=input_affine) as counter:
            for batch in batches:
                x, y = batch[0].to(device), batch[1].to(device)
                pred = _logits(model(x)).argmax(dim=1)
                correct += int((pred == y).sum())
                seen += int(y.numel())
    finally:
        model.train(was_training)
    if seen == 0:
        raise ConfigError("analysis: the data loader yielded no batches (check --batches and the "
                          "dataset)")
    summary = counter.summary(e_mac=e_mac, e_ac=e_ac)
    summary["top1"] = 100.0 * correct / seen
    summary["frames"] = bool(counter.frames)
    return summary


def _reiterable(loader: Iterable, batches: Optional[int], repeats: int):
    """A loader that can be iterated ``repeats`` times: the loader itself when iterating it
    twice gives fresh iterators, else the first ``batches`` batches kept in a list."""
    if repeats <= 1 or iter(loader) is not loader:
        return loader
    return list(_batches(loader, batches))


def analyze(model: nn.Module, loader: Iterable, *, batches: Optional[int] = None,
            teacher: Optional[nn.Module] = None, e_mac: float = E_MAC_PJ,
            e_ac: float = E_AC_PJ, timesteps: Optional[Sequence[int]] = None,
            input_affine: Optional[tuple] = None, teacher_frames: str = "mean") -> Dict[str, Any]:
    """Evaluate and count ``model`` on the first ``batches`` batches of ``loader``.

    ``loader`` yields ``(x, y)`` with images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``
    (counted as :mod:`spikedistill.analysis.counting` says: spike-driven first layer for binary or
    event-count frames). The teacher sees frames as ``teacher_frames`` says (:class:`FramesView`). Returns a JSON-ready dict:
    ``model``, ``T`` (None for an ANN), ``input`` (``images`` or ``frames``), ``images``, ``top1`` (%),
    ``layers`` / ``neurons`` / ``totals`` (see :func:`spikedistill.analysis.counting.summarize`;
    all per image), ``teacher`` (None, or ``model``, ``top1``, ``flops``, ``macs``, ``energy_mj``
    = ``e_mac * FLOPs`` of the teacher on the same batches), ``energy_ratio`` (teacher energy /
    student energy) and ``timesteps``: one row per T in ``timesteps`` (``T``, ``top1``,
    ``firing_rate``, ``macs``, ``sops``, ``energy_mj``), evaluated by setting ``model.T``
    (restored afterwards); only for spiking models (``is_spiking``) on images: frames fix T.
    ``by_timestep``: for a spiking model, the top-1 at every ``T' <= T`` from one run's
    per-timestep logits (:func:`~spikedistill.analysis.timesteps.accuracy_by_timestep`; rows
    ``T``, ``top1``), else ``[]``.
    ``input_affine``: the frames are normalised event counts (:func:`~spikedistill.analysis.
    counting.loader_affine`), so the first layer counts SOPs of the counts.
    """
    if batches is not None and int(batches) < 1:
        raise ConfigError(f"analysis: --batches must be a positive integer, got {batches!r}")
    timesteps = [int(t) for t in (timesteps or [])]
    if any(t < 1 for t in timesteps):
        raise ConfigError(f"analysis: --timesteps must be positive integers, got {timesteps}")
    has_T = is_spiking_model(model)
    if timesteps and not has_T:
        raise ConfigError(f"analysis: --timesteps needs a spiking model with a T attribute; "
                          f"{getattr(model, 'model_name', type(model).__name__)} has none")
    data = _reiterable(loader, batches, 1 + len(timesteps) + (teacher is not None) + has_T)

    result = evaluate_counted(model, _batches(data, batches), e_mac=e_mac, e_ac=e_ac,
                              input_affine=input_affine)
    if timesteps and result["frames"]:
        raise ConfigError(f"analysis: --timesteps re-evaluates at other T, but the data are frame "
                          f"sequences with T={model.T} fixed by the dataset; drop --timesteps")
    out: Dict[str, Any] = {
        "model": getattr(model, "model_name", type(model).__name__),
        "T": int(model.T) if has_T else None,
        "input": "frames" if result["frames"] else "images",
        "images": result["images"],
        "top1": result["top1"],
        "layers": result["layers"],
        "neurons": result["neurons"],
        "totals": result["totals"],
        "teacher": None,
        "energy_ratio": None,
        "timesteps": [],
        "by_timestep": (accuracy_by_timestep(model, _batches(data, batches)) if has_T else []),
    }
    out["dead"] = dead_report(out, int(getattr(model, "num_classes", 0) or 0))
    if teacher is not None:
        tdata = _batches(data, batches)
        seen_by = FramesView(teacher, teacher_frames) if result["frames"] else teacher
        tres = evaluate_counted(seen_by, tdata, e_mac=e_mac, e_ac=e_ac)
        # an ANN: every layer a MAC layer, n_l FLOPs_l per image (n_l = T for per_step)
        t_macs = sum(row["flops"] * row["calls_per_image"] for row in tres["layers"])
        t_energy = e_mac * t_macs * 1e-9
        out["teacher"] = {"model": getattr(teacher, "model_name", type(teacher).__name__),
                          "top1": tres["top1"], "flops": tres["totals"]["flops"],
                          "macs": t_macs, "energy_mj": t_energy}
        s_energy = out["totals"]["energy_mj"]
        out["energy_ratio"] = t_energy / s_energy if s_energy > 0 else None
    if timesteps:
        original = model.T
        try:
            for T in timesteps:
                model.T = T
                r = evaluate_counted(model, _batches(data, batches), e_mac=e_mac, e_ac=e_ac,
                                     input_affine=input_affine)
                tot = r["totals"]
                out["timesteps"].append({"T": T, "top1": r["top1"],
                                         "firing_rate": tot["firing_rate"], "macs": tot["macs"],
                                         "sops": tot["sops"], "energy_mj": tot["energy_mj"]})
        finally:
            model.T = original
    return out


def dead_report(result: Dict[str, Any], num_classes: int) -> Dict[str, Any]:
    """Is the analysed network dead (:mod:`spikedistill.engine.health`)? ``at_chance``: its
    top-1 is within the chance band of ``num_classes`` classes on the images evaluated;
    ``silent_layers``: the spiking layers whose firing rate is 0; ``text``: the one-line
    verdict ("" for a live network)."""
    from spikedistill.engine.health import dead_student_text, is_at_chance

    silent = [r["name"] for r in result["neurons"] if r["firing_rate"] == 0.0]
    at_chance = bool(num_classes) and is_at_chance(result["top1"] / 100.0, num_classes,
                                                   int(result["images"]))
    return {"at_chance": at_chance, "silent_layers": silent,
            "spiking_layers": len(result["neurons"]),
            "text": dead_student_text(at_chance, silent, len(result["neurons"]),
                                      result["top1"] / 100.0, num_classes or None)}


def _energy_caveat(result: Dict[str, Any]) -> str:
    """`` -- the energy of a silent network (...)`` for a dead network, else ``""``."""
    dead = result.get("dead") or {}
    if dead.get("silent_layers"):
        return (f" -- the energy of a SILENT network ({len(dead['silent_layers'])} of "
                f"{dead['spiking_layers']} spiking layers never fire): low because it computes "
                "nothing, not because it is efficient")
    if dead.get("at_chance"):
        return " -- the energy of a network at CHANCE accuracy: no task is being solved"
    return ""


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def _g(x: float) -> str:
    """Human-readable count: 2.285 G, 13.4 M, 512."""
    x = float(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {unit}"
    return f"{x:.4g}"


def to_markdown(result: Dict[str, Any]) -> str:
    """The report as Markdown text."""
    tot = result["totals"]
    lines = [f"# Analysis of {result['model']}", ""]
    dead_text = (result.get("dead") or {}).get("text")
    if dead_text:
        lines += [f"**{dead_text}**", ""]
    lines += [f"- images evaluated: {result['images']}"
              + (" (frame sequences)" if result.get("input") == "frames" else ""),
              f"- timesteps T: {result['T']}",
              f"- top-1: {result['top1']:.2f} %",
              f"- network firing rate (total spikes / total neuron-timesteps): "
              f"{tot['firing_rate']:.4f}",
              f"- ANN-equivalent FLOPs (MACs, one timestep): {_g(tot['flops'])}",
              f"- MACs per image (real-valued inputs): {_g(tot['macs'])}",
              f"- SOPs per image (spike-driven inputs): {_g(tot['sops'])}",
              f"- energy per image: {tot['energy_mj']:.6g} mJ "
              f"(E = {tot['e_mac_pj']} pJ x MACs + {tot['e_ac_pj']} pJ x SOPs)"
              + _energy_caveat(result)]
    t = result.get("teacher")
    if t:
        ratio = result.get("energy_ratio")
        lines += [f"- teacher {t['model']}: top-1 {t['top1']:.2f} %, FLOPs {_g(t['flops'])}, "
                  f"energy {t['energy_mj']:.6g} mJ ({tot['e_mac_pj']} pJ x MACs: FLOPs x calls per image)"
                  + (f"; teacher / student energy = {ratio:.3g}" if ratio is not None else "")]
    lines += ["", "## Synaptic layers", "",
              "| layer | type | input | FLOPs/step | calls/image | input rate | MACs | SOPs | "
              "energy (mJ) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["layers"]:
        lines.append(f"| {r['name']} | {r['type']} | {r['input_kind']} | {_g(r['flops'])} | "
                     f"{r['calls_per_image']:.3g} | {r['input_rate']:.4f} | {_g(r['macs'])} | "
                     f"{_g(r['sops'])} | {r['energy_mj']:.4g} |")
    if result["neurons"]:
        lines += ["", "## Spiking layers", "", "| layer | neurons | firing rate | spikes/image |",
                  "|---|---:|---:|---:|"]
        for r in result["neurons"]:
            lines.append(f"| {r['name']} | {r['neurons']} | {r['firing_rate']:.4f} | "
                         f"{r['spikes_per_image']:.1f} |")
    if result.get("timesteps"):
        lines += ["", "## Accuracy and energy versus timesteps", "",
                  "| T | top-1 (%) | firing rate | MACs | SOPs | energy (mJ) |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in result["timesteps"]:
            lines.append(f"| {r['T']} | {r['top1']:.2f} | {r['firing_rate']:.4f} | "
                         f"{_g(r['macs'])} | {_g(r['sops'])} | {r['energy_mj']:.4g} |")
    if result.get("by_timestep"):
        lines += ["", "## Accuracy at every T' <= T (one run, mean of the first T' timesteps)", "",
                  timestep_table(result["by_timestep"])]
    lines += ["", "Conventions: see `spikedistill.analysis.counting` (SOPs = r x calls x FLOPs "
              "with r = mean(input != 0); the image-fed layer and real-valued inputs count as MACs).",
              ""]
    return "\n".join(lines)


def plot_firing_rates(result: Dict[str, Any], path: PathLike) -> Path:
    """Bar chart of the per-layer firing rates (PNG, matplotlib Agg)."""
    plt = pyplot()

    rows = result["neurons"]
    if not rows:
        raise ConfigError(f"{result.get('model')}: no spiking (LIF) layers to plot")
    names = [r["name"] for r in rows]
    rates = [r["firing_rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(rows) + 2), 4.0), dpi=100)
    ax.bar(range(len(rows)), rates, color="tab:blue")
    avg = result["totals"]["firing_rate"]
    ax.axhline(avg, color="tab:red", linestyle="--", label=f"network average {avg:.4f}")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=75, fontsize=7)
    ax.set_ylabel("firing rate (spikes / neuron / timestep)")
    silent = (result.get("dead") or {}).get("silent_layers") or []
    ax.set_title(f"{result.get('model')} (T = {result.get('T')})"
                 + (f": SILENT network, {len(silent)} of {len(rows)} layers never fire"
                    if silent else ""))
    ax.legend(loc="upper right")
    return save_figure(fig, path)


def write_report(result: Dict[str, Any], out_dir: PathLike) -> Dict[str, Path]:
    """Write ``report.md``, ``report.json`` and (for SNNs) ``firing_rates.png`` and
    ``accuracy_by_timestep.png`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["markdown"], to_markdown(result))
    atomic_write_text(paths["json"], json.dumps(result, indent=2, default=float) + "\n")
    if result["neurons"]:
        paths["firing_rates"] = plot_firing_rates(result, out / "firing_rates.png")
    if result.get("by_timestep"):
        paths["by_timestep"] = plot_accuracy_by_timestep(
            result["by_timestep"], out / "accuracy_by_timestep.png", title=str(result.get("model")))
    return paths


__all__ = ["analyze", "evaluate_counted", "plot_firing_rates", "to_markdown", "write_report"]
