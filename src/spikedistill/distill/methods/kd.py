"""``kd``: Hinton knowledge distillation on the logits (``distill.kd``)."""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent

__all__ = ["KD", "KDConfig"]


@dataclass
class KDConfig:
    """Hinton KD: ``CE + weight * tau^2 KL(softmax(z_t/tau) || softmax(z_s/tau))``."""

    tau: float = 4.0
    weight: float = 1.0

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)


@register_method("kd", config=KDConfig)
class KD(_TeacherStudent):
    """Hinton KD: ``CE + weight * tau^2 KL(softmax(z_t/tau) || softmax(z_s/tau))``
    (``distill.kd.tau``, ``distill.kd.weight``)."""

    def forward_train(self, x, y, ctx=None):
        logits = self.student(x)
        t_logits = self.teacher_targets(x, return_features=False)
        c = self.section
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.weight * Fn.kd_loss(logits, t_logits, tau=c.tau)}
