"""Energy with its uncertainty: per-image SOPs / MACs / energy as a distribution over a test set.

:func:`~spikedistill.analysis.counting.count_model` gives the *mean* operations per image of a
set. An SNN's cost depends on the image (its spikes), so here every image is counted on its own
(a batch of one: the counts are exact per image, BatchNorm runs in eval mode) and each quantity
``v_i`` over the ``n`` images is summarised by :func:`distribution`::

    mean = (1/n) sum v_i,   sd = sqrt(sum (v_i - mean)^2 / (n - 1))
    95 % interval of the mean:  mean +- t_{0.975, n-1} * sd / sqrt(n)
    percentiles p2.5, p5, p25, p50, p75, p95, p97.5 (linear interpolation between order
    statistics: position q (n - 1) in the sorted values, numpy's default "linear")

for the totals, for every layer and for every timestep (``counting.per_step_totals``: the layers
run once per step; the stem of a static image, the head and the functional products are the
``static`` part). Energy per image is ``E = e_mac * MACs + e_ac * SOPs`` with a named cost model
(:data:`COST_MODELS`; pJ, reported in mJ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn as nn

from spikedistill.analysis.counting import E_AC_PJ, E_MAC_PJ, PJ_TO_MJ, count_model
from spikedistill.analysis.stats import t_quantile
from spikedistill.models.contract import is_frames

PERCENTILES = (2.5, 5.0, 25.0, 50.0, 75.0, 95.0, 97.5)


@dataclass(frozen=True)
class CostModel:
    """Energy per multiply-accumulate (``e_mac``) and per accumulate (``e_ac``), in pJ."""

    name: str
    e_mac: float
    e_ac: float
    source: str


#: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm at
#: 0.9 V: MAC = multiply + add, AC = add.
COST_MODELS: Dict[str, CostModel] = {m.name: m for m in (
    CostModel("45nm_fp32", E_MAC_PJ, E_AC_PJ, "Horowitz ISSCC 2014, 45 nm 0.9 V, 32-bit float: mult 3.7 + "
              "add 0.9 pJ; the SNN papers' constants (Spikformer, SEW, CKDSNN) and this "
              "package's default (counting.E_MAC_PJ / E_AC_PJ)"),
    CostModel("45nm_fp16", 1.5, 0.4, "Horowitz ISSCC 2014, 45 nm, 16-bit float: mult 1.1 + add 0.4 pJ"),
    CostModel("45nm_int32", 3.2, 0.1, "Horowitz ISSCC 2014, 45 nm, 32-bit integer: mult 3.1 + "
              "add 0.1 pJ"),
    CostModel("45nm_int8", 0.23, 0.03, "Horowitz ISSCC 2014, 45 nm, 8-bit integer: mult 0.2 + "
              "add 0.03 pJ"),
)}
DEFAULT_COST_MODEL = "45nm_fp32"


def cost_model(name: str) -> CostModel:
    """The named cost model; ValueError naming the choices for another name."""
    if name not in COST_MODELS:
        raise ValueError(f"unknown energy cost model {name!r}; expected one of "
                         f"{', '.join(COST_MODELS)}")
    return COST_MODELS[name]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ascending ``sorted_values``: linear interpolation at
    position ``q / 100 * (n - 1)``."""
    n = len(sorted_values)
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo]))


def distribution(values: Sequence[float]) -> Dict[str, Any]:
    """``n, mean, sd, ci95 (low, high), p2.5 .. p97.5`` of ``values`` (module docstring); one
    value: ``sd`` 0 and the interval is the value itself."""
    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        raise ValueError("distribution of no values")
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    half = t_quantile(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else 0.0
    s = sorted(v)
    out: Dict[str, Any] = {"n": n, "mean": mean, "sd": sd, "ci95": (mean - half, mean + half)}
    for q in PERCENTILES:
        out[f"p{q:g}"] = percentile(s, q)
    return out


def _images(batch: torch.Tensor) -> List[torch.Tensor]:
    """The images of a batch, each a batch of one (frames ``[T, B, ...]``: split on dim 1)."""
    if is_frames(batch):
        return [batch[:, i:i + 1] for i in range(batch.shape[1])]
    return [batch[i:i + 1] for i in range(batch.shape[0])]


def per_image_counts(model: nn.Module, batches: Iterable, *, input_affine: Optional[tuple] = None,
                     max_images: Optional[int] = None) -> List[Dict[str, Any]]:
    """One :func:`count_model` summary per image of ``batches`` (tensors, or ``(x, y)`` pairs),
    at most ``max_images``."""
    out: List[Dict[str, Any]] = []
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        for img in _images(x):
            if max_images is not None and len(out) >= max_images:
                return out
            out.append(count_model(model, img, input_affine=input_affine))
    return out


def _energy(macs: float, sops: float, cm: CostModel) -> float:
    return (cm.e_mac * macs + cm.e_ac * sops) * PJ_TO_MJ


def summarize_images(counts: Sequence[Dict[str, Any]], cost: str = DEFAULT_COST_MODEL
                     ) -> Dict[str, Any]:
    """Distributions over the per-image summaries ``counts`` (:func:`per_image_counts`) under
    the cost model ``cost``: ``totals`` (``sops``, ``macs``, ``energy_mj``), ``layers`` (name,
    type and the three distributions; a layer absent from an image counts 0 there), ``per_step``
    (one row per timestep t with ``sops`` and ``energy_mj``), ``static`` (the rest),
    ``cost_model`` (name, e_mac_pj, e_ac_pj, source) and ``not_counted`` (of the first image)."""
    if not counts:
        raise ValueError("no images were counted")
    cm = cost_model(cost)
    tot = {"sops": [], "macs": [], "energy_mj": []}
    layer_names: Dict[str, str] = {}
    for c in counts:
        for r in c["layers"]:
            layer_names.setdefault(r["name"], r["type"])
    per_layer = {n: {"sops": [], "macs": [], "energy_mj": []} for n in layer_names}
    T = max(len(c["per_step"]["sops"]) for c in counts)
    steps = [{"sops": [], "energy_mj": []} for _ in range(T)]
    static = {"sops": [], "energy_mj": []}
    for c in counts:
        t = c["totals"]
        tot["sops"].append(t["sops"])
        tot["macs"].append(t["macs"])
        tot["energy_mj"].append(_energy(t["macs"], t["sops"], cm))
        rows = {r["name"]: r for r in c["layers"]}
        for n, acc in per_layer.items():
            r = rows.get(n, {"macs": 0.0, "sops": 0.0})
            acc["sops"].append(r["sops"])
            acc["macs"].append(r["macs"])
            acc["energy_mj"].append(_energy(r["macs"], r["sops"], cm))
        ps = c["per_step"]
        for i in range(T):
            m = ps["macs"][i] if i < len(ps["macs"]) else 0.0
            s = ps["sops"][i] if i < len(ps["sops"]) else 0.0
            steps[i]["sops"].append(s)
            steps[i]["energy_mj"].append(_energy(m, s, cm))
        static["sops"].append(ps["static"]["sops"])
        static["energy_mj"].append(_energy(ps["static"]["macs"], ps["static"]["sops"], cm))
    dist = lambda d: {k: distribution(v) for k, v in d.items()}  # noqa: E731
    return {
        "images": len(counts),
        "cost_model": {"name": cm.name, "e_mac_pj": cm.e_mac, "e_ac_pj": cm.e_ac,
                       "source": cm.source},
        "totals": dist(tot),
        "layers": [{"name": n, "type": layer_names[n], **dist(per_layer[n])} for n in layer_names],
        "per_step": [{"t": i, **dist(s)} for i, s in enumerate(steps)],
        "static": dist(static),
        "not_counted": dict(counts[0].get("not_counted") or {}),
    }


def energy_distribution(model: nn.Module, batches: Iterable, *, cost: str = DEFAULT_COST_MODEL,
                        input_affine: Optional[tuple] = None,
                        max_images: Optional[int] = None) -> Dict[str, Any]:
    """Per-image SOPs / MACs / energy of ``model`` over ``batches`` as distributions
    (:func:`summarize_images` of :func:`per_image_counts`)."""
    counts = per_image_counts(model, batches, input_affine=input_affine, max_images=max_images)
    return summarize_images(counts, cost)


def to_markdown(result: Dict[str, Any]) -> str:
    """The totals and per-timestep energy as a Markdown table (mean [95 % interval], p2.5 - p97.5)."""
    cm = result["cost_model"]

    def cell(d, scale=1.0, fmt="{:.4g}"):
        lo, hi = d["ci95"]
        return (f"{fmt.format(d['mean'] * scale)} [{fmt.format(lo * scale)}, "
                f"{fmt.format(hi * scale)}] | {fmt.format(d['p2.5'] * scale)} - "
                f"{fmt.format(d['p97.5'] * scale)}")

    lines = [f"Energy per image over {result['images']} images, cost model {cm['name']} "
             f"({cm['e_mac_pj']} pJ / MAC, {cm['e_ac_pj']} pJ / AC: {cm['source']})", "",
             "| quantity | mean [95 % interval of the mean] | p2.5 - p97.5 |", "|---|---|---|"]
    for k in ("sops", "macs", "energy_mj"):
        lines.append(f"| {k} | {cell(result['totals'][k])} |")
    for row in result["per_step"]:
        lines.append(f"| energy_mj at t = {row['t']} | {cell(row['energy_mj'])} |")
    lines.append(f"| energy_mj once per image (static) | {cell(result['static']['energy_mj'])} |")
    return "\n".join(lines) + "\n"


__all__ = ["COST_MODELS", "CostModel", "DEFAULT_COST_MODEL", "PERCENTILES", "cost_model",
           "distribution", "energy_distribution", "per_image_counts", "percentile",
           "summarize_images", "to_markdown"]
