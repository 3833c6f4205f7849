"""``enof``: EnOF's LAF loss through the teacher's classifier (``distill.enof``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.errors import ConfigError

__all__ = ["EnOF", "EnOFConfig"]


@dataclass
class EnOFConfig:
    """EnOF's LAF loss: ``weight * tau^2 KL(softmax(z_t/tau) || softmax(W_t pool(F_s)/tau))``
    through the frozen teacher classifier. (RepAct is ``model.last_activation=relu``.)"""

    tau: float = 1.0
    weight: float = 1.0

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)


@register_method("enof", config=EnOFConfig)
class EnOF(_TeacherStudent):
    """EnOF's LAF: ``CE + weight * tau^2 KL(softmax(z_t/tau) || softmax(W_t pool(F_s)/tau))``,
    ``W_t`` the teacher's classifier (detached: never trained). A ``Linear(C_s, C_t)`` adapter
    (``extras["adapter"]``) is added only when the feature sizes differ. RepAct is the model
    option ``model.last_activation=relu``."""

    def __init__(self, student, teacher=None, cfg=None, **settings):
        super().__init__(student, teacher, cfg, **settings)
        if not isinstance(self._t.classifier, nn.Linear):
            raise ConfigError(f"config key 'teacher.classifier': EnOF passes the student feature "
                              f"through the teacher's classifier, which must be a Linear, not "
                              f"{type(self._t.classifier).__name__}")
        d_s, d_t = self._s.feature_dim, self._t.feature_dim
        if d_s != d_t:
            self.extras["adapter"] = nn.Linear(d_s, d_t, bias=False).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits = self.teacher_targets(x, return_features=False)
        pooled = self._s.pool(feats[-1])
        if "adapter" in self.extras:
            pooled = self.extras["adapter"](pooled)
        fc = self._t.classifier
        laf = Fn.laf_loss(pooled, t_logits, fc.weight, fc.bias, tau=self.section.tau)
        return logits, {"ce": self.cross_entropy(logits, y), "laf": self.section.weight * laf}
