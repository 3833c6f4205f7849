"""Typed configuration of the distillation methods (the ``distill`` section of a run config).

``method`` picks a registered method by name (see :func:`spikedistill.distill.list_methods`);
each method reads its own sub-section, so ``--set distill.method=kd distill.kd.tau=4`` works.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DistillConfig:
    """Which method trains the student, and the weight of the plain cross-entropy term."""

    method: str = "ce"
    ce_weight: float = 1.0
