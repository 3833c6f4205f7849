"""Shared helpers of the built-in methods (one module per method family in this package).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from spikedistill.distill.base import Distiller, map_tensors, unwrap
from spikedistill.errors import ConfigError


def _k(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_stage(stage: int, key: str) -> None:
    if stage == 0:
        raise ConfigError(f"config key '{key}': stages are numbered from 1 (or from the end with "
                          "-1 = last); got 0")


def resolve_stage(stage: int, n_stages: int, key: str) -> int:
    """0-based index of a 1-based (or negative, from the end) stage number; ConfigError naming
    ``key`` when it is out of range."""
    if stage == 0 or not -n_stages <= stage <= n_stages:
        raise ConfigError(f"config key '{key}': stage {stage} does not exist; the model has "
                          f"{n_stages} stages (use 1..{n_stages}, or -1 for the last)")
    return stage - 1 if stage > 0 else n_stages + stage


class _TeacherStudent(Distiller):
    """Shared helpers: shapes of the two networks, teacher targets."""

    requires_teacher = True

    @property
    def _s(self) -> nn.Module:
        return unwrap(self.student)

    @property
    def _t(self) -> nn.Module:
        return unwrap(self.teacher)

    def _device(self) -> torch.device:
        p = next(self._s.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def teacher_targets(self, x: torch.Tensor, return_features: bool = True):
        """Teacher logits (and stage features) as constants."""
        return map_tensors(torch.Tensor.detach, self.run_teacher(x, return_features=return_features))

    def _channels(self, which: str) -> tuple:
        """``feature_channels`` of the student (``which="model"``) or teacher; ConfigError when
        the model does not know them (an adapter built without an input shape)."""
        m = self._s if which == "model" else self._t
        ch = tuple(getattr(m, "feature_channels", ()) or ())
        if not ch:
            raise ConfigError(f"config key '{which}.features': the {'student' if which == 'model' else 'teacher'} "
                              f"{type(m).__name__} reports no feature_channels; build it with an "
                              "input shape (FeatureTapModel(input_shape=...)) so its taps are probed")
        return ch

    def _n_stages(self) -> int:
        n_s, n_t = len(self._channels("model")), len(self._channels("teacher"))
        if n_s != n_t:
            raise ConfigError(f"config key 'model.features': student has {n_s} stages and teacher "
                              f"{n_t} (teacher.features): feature and map distillation need the "
                              "same number of stages")
        return n_s

    def _same_size(self, f_s: torch.Tensor, f_t: torch.Tensor, key: str, what: str) -> None:
        """ConfigError naming ``key`` unless the student feature ``[B, C', H, W]`` and the
        teacher feature ``[B, C, H, W]`` agree in everything but (adapted) channels."""
        if f_s.shape[2:] != f_t.shape[2:] or f_s.dim() != f_t.dim():
            raise ConfigError(f"config key '{key}': {what} needs student and teacher features "
                              f"of the same spatial size; student {tuple(f_s.shape[1:])} vs "
                              f"teacher {tuple(f_t.shape[1:])} (C, H, W); choose other taps "
                              "(model.features / teacher.features) or another input size")
