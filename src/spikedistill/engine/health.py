"""Is a trained student dead? Accuracy at chance, and spiking layers that never fire.

A *silent* layer is a spiking layer whose output holds no spike on the images checked: its rate
``r_l = (1 / N_l) * sum s_l`` (spikes over every neuron, timestep and image) is exactly 0.
Accuracy is *at chance* when it lies within the upper end of the 95 % binomial band of a
guesser on ``n`` test images and ``K`` balanced classes::

    acc <= 1/K + 1.96 * sqrt((1/K) * (1 - 1/K) / n)

(for the digits, K = 10 and n = 450: 12.77 %).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from spikedistill.models.contract import spiking_modules_of

__all__ = ["chance_ceiling", "dead_student_text", "firing_rates", "is_at_chance",
           "silent_layers"]


@torch.no_grad()
def firing_rates(model: nn.Module, x: torch.Tensor) -> Dict[str, float]:
    """``{layer: r_l}`` for every spiking layer of ``model``
    (:func:`~spikedistill.models.contract.spiking_modules_of`) over one eval-mode forward of
    ``x``: ``r_l = (1 / N_l) * sum s_l`` (the mean of its output spikes); {} for an ANN. The
    model's train/eval mode is restored."""
    mods = spiking_modules_of(model)
    if not mods:
        return {}
    sums: Dict[str, List[float]] = {n: [0.0, 0.0] for n, _ in mods}

    def hook(name):
        def record(module, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            sums[name][0] += float(out.detach().float().sum())
            sums[name][1] += float(out.numel())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in mods]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: (s / c if c else 0.0) for n, (s, c) in sums.items()}


def silent_layers(rates: Dict[str, float]) -> List[str]:
    """The layers of ``rates`` (from :func:`firing_rates`) that never fired (rate exactly 0)."""
    return [n for n, r in rates.items() if r == 0.0]


def chance_ceiling(num_classes: int, n: int) -> float:
    """``1/K + 1.96 sqrt((1/K)(1 - 1/K)/n)``: the highest accuracy still at chance."""
    p = 1.0 / max(int(num_classes), 1)
    return p + 1.96 * math.sqrt(p * (1.0 - p) / max(int(n), 1))


def is_at_chance(acc: Optional[float], num_classes: int, n: int) -> bool:
    """True when the accuracy ``acc`` (a fraction) is at or below :func:`chance_ceiling`."""
    if acc is None or not math.isfinite(acc):
        return False
    return acc <= chance_ceiling(num_classes, n)


def dead_student_text(at_chance: bool, silent: Sequence[str], total_layers: int,
                      acc: Optional[float] = None, num_classes: Optional[int] = None) -> str:
    """One line: ``""`` for a live student, else what is dead: the accuracy at chance
    and / or the silent layers by name (``k of N spiking layers never fire: a, b``)."""
    parts = []
    if at_chance:
        chance = f" (chance 1/{num_classes} = {100.0 / num_classes:.1f} %)" if num_classes else ""
        got = f" {100.0 * acc:.2f} %" if acc is not None else ""
        parts.append(f"accuracy{got} at chance{chance}")
    if silent:
        parts.append(f"{len(silent)} of {total_layers} spiking layers never fire: "
                     + ", ".join(silent))
    return ("DEAD STUDENT: " + "; ".join(parts)) if parts else ""
