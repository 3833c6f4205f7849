"""``catkd``: class attention transfer (``distill.catkd``).

Guo, Yan, Li, Lin, "Class Attention Transfer Based Knowledge Distillation", CVPR 2023
(arXiv:2304.12777; code github.com/GzyAftermath/CAT-KD, commit
4467073ca31b9929e7c45f5a6761e5e1b7c9442f, ``mdistiller/distillers/CAT_KD.py``).
Both networks' classifiers become 1x1 convolutions applied to their last stage, giving the
class activation maps of every class ``A = W F`` ``[B, K, H, W]`` (the student's on its
time-averaged spike feature ``mean_t F_s``, through ``classifier_weight()``); they are average
pooled to ``resolution x resolution``, optionally L2-normalised per map, and matched by MSE::

    L = CE(z_s, y) + weight * MSE(N(P(A_s)), N(P(A_t))) + kd_weight * KD_tau

Defaults follow the released CIFAR-100 config of CAT-KD (``CAT_loss_weight`` 15,
``CAM_RESOLUTION`` 2, ``IF_NORMALIZE`` False) and its loss, which has no logit-KD term
(``kd_weight: 0``; set it to add Hinton KD on top). The released weight depends on the
teacher-student pair (0.5 to 600): ``pair`` names one of the released configs
(:data:`CATKD_PAIRS`, e.g. ``res56_res20``) and then sets ``weight``, ``resolution`` and
``normalize`` to its values; recipes name the pair closest to theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.errors import ConfigError

__all__ = ["CATKD", "CATKDConfig", "CATKD_PAIRS"]

#: the released configs (configs/cifar100/CAT_KD/*.yaml, configs/imagenet/CAT-KD/*.yaml):
#: pair -> (CAT_loss_weight, CAM_RESOLUTION, IF_NORMALIZE)
CATKD_PAIRS = {
    "res32x4_res8x4": (15.0, 2, False), "res56_res20": (0.7, 2, False),
    "res110_res32": (1.8, 2, False), "wrn_40_2_wrn_16_2": (12.0, 2, False),
    "wrn_40_2_wrn_40_1": (1.5, 2, False), "vgg13_vgg8": (4.5, 2, False),
    "res32x4_shuv1": (600.0, 4, True), "res32x4_shuv2": (600.0, 4, True),
    "res50_mv2": (40.0, 2, True), "vgg13_mv2": (15.0, 2, True), "wrn40_2_shuv1": (80.0, 4, True),
    "imagenet_r34_r18": (0.5, 4, False), "imagenet_r50_mv2": (10.0, 2, True),
}


@dataclass
class CATKDConfig:
    """CAT-KD: ``CE + weight * MSE(N(pool_r(W_s mean_t F_s)), N(pool_r(W_t F_t))) + kd_weight * KD``."""

    weight: float = 15.0
    resolution: int = 2
    normalize: bool = False
    kd_weight: float = 0.0
    tau: float = 4.0
    pair: Optional[str] = None       # a released pair: sets weight, resolution, normalize

    def validate(self, prefix: str = "") -> None:
        check_choice(self.pair, tuple(CATKD_PAIRS), _k(prefix, "pair"), optional=True)
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

    def settings(self):
        """``(weight, resolution, normalize)``: the released pair's when ``pair`` is set."""
        c = self.section
        if c.pair is not None:
            return CATKD_PAIRS[c.pair]
        return c.weight, c.resolution, c.normalize

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        a_s = Fn.class_activation_maps(Fn.time_average(feats[-1]), self._s.classifier_weight())
        a_t = Fn.class_activation_maps(t_feats[-1], self._t.classifier_weight().detach())
        c = self.section
        weight, resolution, normalize = self.settings()
        losses = {"ce": self.cross_entropy(logits, y),
                  "cat": weight * Fn.cat_loss(a_s, a_t, resolution=resolution, normalize=normalize)}
        if c.kd_weight > 0:
            losses["kd"] = c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau)
        return logits, losses
