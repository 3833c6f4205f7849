"""``bkdsnn``: logit KD plus blurred KD on the last-stage feature (``distill.bkdsnn``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _section, _TeacherStudent
from spikedistill.errors import ConfigError

__all__ = ["BKDSNN", "BKDSNNConfig"]


@dataclass
class BKDSNNConfig:
    """BKDSNN: logit KD plus blurred KD on the last-stage feature (random channel mask,
    conv3x3-ReLU-conv3x3 generator, ``sum((G(mask * F_s) - F_t)^2) / B``)."""

    tau: float = 4.0
    kd_weight: float = 1.0
    feature_weight: float = 7e-5
    mask_ratio: float = 0.15

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.feature_weight, _k(prefix, "feature_weight"), low=0.0)
        check_range(self.mask_ratio, _k(prefix, "mask_ratio"), low=0.0, high=1.0)
        if self.mask_ratio >= 1.0:
            raise ConfigError(f"config key '{_k(prefix, 'mask_ratio')}': expected a value < 1 "
                              f"(1 masks every channel), got {self.mask_ratio!r}")


@register_method("bkdsnn", config=BKDSNNConfig)
class BKDSNN(_TeacherStudent):
    """BKDSNN: ``CE + kd_weight * KD + feature_weight * sum((G(M * mean_t F_s) - F_t)^2) / B`` on
    the last stage, ``M`` a fresh random channel mask (ratio ``distill.bkdsnn.mask_ratio``) and
    ``G`` = conv3x3 - ReLU - conv3x3 (``extras["generator"]``, trained with the student)."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.bc = _section(cfg, "bkdsnn")
        c_s, c_t = self._channels("model")[-1], self._channels("teacher")[-1]
        self.extras["generator"] = nn.Sequential(
            nn.Conv2d(c_s, c_t, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_t, c_t, kernel_size=3, padding=1),
        ).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        f_s = Fn.time_average(feats[-1])
        self._same_size(f_s, t_feats[-1], "model.features", "BKDSNN's restored-feature MSE "
                        "(last taps)")
        mask = Fn.channel_mask(f_s.shape[0], f_s.shape[1], self.bc.mask_ratio, device=f_s.device)
        c = self.bc
        bkd = Fn.blurred_feature_loss(f_s, t_feats[-1], self.extras["generator"], mask)
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau),
                        "bkd": c.feature_weight * bkd}
