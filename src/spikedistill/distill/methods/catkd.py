"""``catkd``: class attention transfer (``distill.catkd``).

Guo, Li, Li, Fang, Chen, "Class Attention Transfer Based Knowledge Distillation", CVPR 2023
(arXiv:2304.12777; code github.com/GzyAftermath/CAT-KD, ``mdistiller/distillers/CAT_KD.py``).
Both networks' classifiers become 1x1 convolutions applied to their last stage, giving the
class activation maps of every class ``A = W F`` ``[B, K, H, W]`` (the student's on its
time-averaged spike feature ``mean_t F_s``, through ``classifier_weight()``); they are average
pooled to ``resolution x resolution``, optionally L2-normalised per map, and matched by MSE::

    L = CE(z_s, y) + weight * MSE(N(P(A_s)), N(P(A_t))) + kd_weight * KD_tau

Defaults follow the released CIFAR-100 config of CAT-KD (``CAT_loss_weight`` 15,
``CAM_RESOLUTION`` 2, ``IF_NORMALIZE`` False) and its loss, which has no logit-KD term
(``kd_weight: 0``; set it to add Hinton KD on top).
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _section, _TeacherStudent
from spikedistill.errors import ConfigError

__all__ = ["CATKD", "CATKDConfig"]


@dataclass
class CATKDConfig:
    """CAT-KD: ``CE + weight * MSE(N(pool_r(W_s mean_t F_s)), N(pool_r(W_t F_t))) + kd_weight * KD``."""

    weight: float = 15.0
    resolution: int = 2
    normalize: bool = False
    kd_weight: float = 0.0
    tau: float = 4.0

    def validate(self, prefix: str = "") -> None:
        check_range(self.weight, _k(prefix, "weight"), low=0.0)
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) \
                or self.resolution < 1:
            raise ConfigError(f"config key '{_k(prefix, 'resolution')}': expected a positive "
                              f"integer (the pooled CAM size), got {self.resolution!r}")
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)


@register_method("catkd", config=CATKDConfig)
class CATKD(_TeacherStudent):
    """CAT-KD: MSE between the pooled class activation maps of all K classes of student and
    teacher (module doc); the CAMs come from ``classifier_weight()`` of each network."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.cc = _section(cfg, "catkd")

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        a_s = Fn.class_activation_maps(Fn.time_average(feats[-1]), self._s.classifier_weight())
        a_t = Fn.class_activation_maps(t_feats[-1], self._t.classifier_weight().detach())
        c = self.cc
        losses = {"ce": self.cross_entropy(logits, y),
                  "cat": c.weight * Fn.cat_loss(a_s, a_t, resolution=c.resolution,
                                                normalize=c.normalize)}
        if c.kd_weight > 0:
            losses["kd"] = c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau)
        return logits, losses
