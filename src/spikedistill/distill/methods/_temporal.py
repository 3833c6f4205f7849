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
