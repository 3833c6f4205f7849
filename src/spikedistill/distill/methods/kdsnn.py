"""``kdsnn``: logit KD plus a stage-feature MSE (``distill.kdsnn``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import (_check_stage, _k, _section, _TeacherStudent,
                                                  resolve_stage)

__all__ = ["KDSNN", "KDSNNConfig"]


@dataclass
class KDSNNConfig:
    """KDSNN: logit KD plus element-wise MSE between the teacher's stage feature and the
    time-averaged student feature of the same stage (1x1 conv adapter where channels differ)."""

    tau: float = 4.0
    kd_weight: float = 1.0
    feature_weight: float = 1.0
    stage: int = -1                  # 1-based stage, or negative from the end (-1: last)

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.feature_weight, _k(prefix, "feature_weight"), low=0.0)
        _check_stage(self.stage, _k(prefix, "stage"))


@register_method("kdsnn", config=KDSNNConfig)
class KDSNN(_TeacherStudent):
    """KDSNN: ``CE + kd_weight * KD + feature_weight * MSE(A(mean_t F_s), F_t)`` at
    ``distill.kdsnn.stage``; ``A`` a 1x1 conv adapter (``extras["adapter"]``) where the channel
    counts differ, else the identity."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.kc = _section(cfg, "kdsnn")
        self.stage = resolve_stage(self.kc.stage, self._n_stages(), "distill.kdsnn.stage")
        c_s, c_t = self._channels("model")[self.stage], self._channels("teacher")[self.stage]
        if c_s != c_t:
            self.extras["adapter"] = nn.Conv2d(c_s, c_t, kernel_size=1, bias=False).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        f_s = Fn.time_average(feats[self.stage])
        self._same_size(f_s, t_feats[self.stage], "distill.kdsnn.stage", "KDSNN's feature MSE")
        if "adapter" in self.extras:
            f_s = self.extras["adapter"](f_s)
        c = self.kc
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau),
                        "feat": c.feature_weight * Fn.feature_mse_loss(f_s, t_feats[self.stage])}
