"""``bkdsnn``: BKDSNN's "mixed" loss, a WSLD logit term plus blurred KD on the last-stage
feature (``distill.bkdsnn``).

Xu et al., "BKDSNN: Enhancing the Performance of Learning-based Spiking Neural Networks
Training with Blurred Knowledge Distillation", ECCV 2024; code
github.com/Intelligent-Computing-Research-Group/BKDSNN (commit
dd6bd539479d4f3ce70836084be0f64d86060824), ``Spike-Element-Wise-ResNet/cifar10dvs/loss.py``
(``BRDLoss``, ``get_logits_loss``) and the ``train_distillation.py`` scripts
(``--distill_type mixed``)::

    L = CE(z_s, y) + kd_weight * WSLD_tau(z_s, z_t, y)
        + feature_weight * 1/B sum (G(A(mean_t F_s) * M) - F_t)^2

``WSLD`` the weighted soft-label term of :func:`~spikedistill.distill.functional.wsld_loss`
(``logit_loss: wsld``; ``kd`` is Hinton KD, spikedistill's earlier reading), ``tau`` 2 (the
scripts' ``--temp``), ``A`` a 1x1 conv with bias ``C_s -> C_t`` when the widths differ
(``extras["align"]``), ``M`` a fresh random mask over the aligned channels (drop ratio
``mask_ratio``, the code's ``lambda_mgd`` 0.15), ``G`` conv3x3 - ReLU - conv3x3 at teacher width
(``extras["generator"]``). ``feature_weight`` (the code's ``alpha_mgd``) depends on the setting
the authors ran: ``setting: cifar`` 2e-3 (the CIFAR-10/100 configs and the CIFAR10-DVS script)
or ``imagenet`` 7e-5 (the ImageNet script); an explicit ``feature_weight`` wins. The code's
``use_clip`` (off unless ``--use_clip``) is not offered. The CIFAR10-DVS script passes
``dist_loss(out_feature_t[0], out_feature_s[0])`` (teacher and student swapped relative to
``BRDLoss.forward(preds_S, preds_T)``); we follow the ImageNet script's order (student
restored towards the teacher), which is what the paper describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch.nn as nn

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.errors import ConfigError

__all__ = ["BKDSNN", "BKDSNNConfig", "BKDSNN_FEATURE_WEIGHTS"]

#: the released ``alpha_mgd`` per setting (CIFAR configs / CIFAR10-DVS script; ImageNet script)
BKDSNN_FEATURE_WEIGHTS = {"cifar": 2e-3, "imagenet": 7e-5}
LOGIT_LOSSES = ("wsld", "kd")


@dataclass
class BKDSNNConfig:
    """BKDSNN: ``CE + kd_weight * WSLD_tau + feature_weight * sum((G(A(F_s) * M) - F_t)^2) / B``;
    ``feature_weight`` null: the released ``alpha_mgd`` of ``setting``."""

    tau: float = 2.0
    kd_weight: float = 1.0
    feature_weight: Optional[float] = None
    setting: str = "cifar"           # cifar: alpha_mgd 2e-3 | imagenet: 7e-5
    mask_ratio: float = 0.15
    logit_loss: str = "wsld"         # wsld (released) | kd (Hinton KD)

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.feature_weight, _k(prefix, "feature_weight"), low=0.0)
        check_choice(self.setting, tuple(BKDSNN_FEATURE_WEIGHTS), _k(prefix, "setting"))
        check_choice(self.logit_loss, LOGIT_LOSSES, _k(prefix, "logit_loss"))
        check_range(self.mask_ratio, _k(prefix, "mask_ratio"), low=0.0, high=1.0)
        if self.mask_ratio >= 1.0:
            raise ConfigError(f"config key '{_k(prefix, 'mask_ratio')}': expected a value < 1 "
                              f"(1 masks every channel), got {self.mask_ratio!r}")

    def resolved_feature_weight(self) -> float:
        """``feature_weight``, or the released ``alpha_mgd`` of ``setting`` when it is null."""
        if self.feature_weight is not None:
            return float(self.feature_weight)
        return BKDSNN_FEATURE_WEIGHTS[self.setting]


@register_method("bkdsnn", config=BKDSNNConfig)
class BKDSNN(_TeacherStudent):
    """BKDSNN (module doc): losses ``ce``, ``kd`` (WSLD or KD) and ``bkd`` (blurred feature)."""

    def __init__(self, student, teacher=None, cfg=None, **settings):
        super().__init__(student, teacher, cfg, **settings)
        c_s, c_t = self._channels("model")[-1], self._channels("teacher")[-1]
        if c_s != c_t:
            self.extras["align"] = nn.Conv2d(c_s, c_t, kernel_size=1).to(self._device())
        self.extras["generator"] = nn.Sequential(
            nn.Conv2d(c_t, c_t, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_t, c_t, kernel_size=3, padding=1),
        ).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        f_s = Fn.time_average(feats[-1])
        self._same_size(f_s, t_feats[-1], "model.features", "BKDSNN's restored-feature MSE "
                        "(last taps)")
        c = self.section
        channels = t_feats[-1].shape[1]
        mask = Fn.channel_mask(f_s.shape[0], channels, c.mask_ratio, device=f_s.device)
        align = self.extras["align"] if "align" in self.extras else None
        bkd = Fn.blurred_feature_loss(f_s, t_feats[-1], self.extras["generator"], mask, align=align)
        if c.logit_loss == "wsld":
            kd = Fn.wsld_loss(logits, t_logits, y, tau=c.tau)
        else:
            kd = Fn.kd_loss(logits, t_logits, tau=c.tau)
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.kd_weight * kd,
                        "bkd": c.resolved_feature_weight() * bkd}
