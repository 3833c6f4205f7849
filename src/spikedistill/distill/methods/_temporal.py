"""Helpers of the methods on per-timestep logits ``[T, B, K]`` (``tks``, ``tser-kd``,
``hta-kl``); discovery skips this module (leading ``_``)."""

from __future__ import annotations

import torch

from spikedistill.distill.base import unwrap


def timestep_logits(student, x: torch.Tensor) -> torch.Tensor:
    """The student's per-timestep logits ``z_s[t]`` ``[T, B, K]`` (``timestep_logits=True`` of the
    model contract); a non-spiking student gives its logits as a single timestep ``[1, B, K]``."""
    if getattr(unwrap(student), "is_spiking", True):
        z = student(x, timestep_logits=True)
    else:
        z = student(x)
    return z if z.dim() == 3 else z.unsqueeze(0)


def timestep_and_teacher_logits(distiller, x: torch.Tensor):
    """``(z_s[t] [T, B, K], z_t [B, K])``: the student's per-timestep logits and the teacher's
    logits as constants, the inputs of the per-timestep teacher-student methods."""
    return timestep_logits(distiller.student, x), distiller.teacher_targets(x, return_features=False)


def timestep_cross_entropy(cross_entropy, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1/T sum_t CE(z[t], y)`` with the distiller's ``cross_entropy`` (label smoothing, soft
    targets and ``ce_weight`` included)."""
    return torch.stack([cross_entropy(z[t], y) for t in range(z.shape[0])]).mean()
