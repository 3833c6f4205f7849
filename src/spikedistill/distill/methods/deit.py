"""``deit``: distillation through a second (distillation) head (``distill.deit``).

Touvron, Cord, Douze, Massa, Sablayrolles, Jegou, "Training data-efficient image transformers &
distillation through attention", ICML 2021 (arXiv:2012.12877), as the Spike-driven Transformer
V2 (Yao et al., ICLR 2024) trains its SNNs: BICLab/Spike-Driven-Transformer-V2 @
35f245f4f79acf1a2b3ef22698c58ab05c1ede33, ``classification/util/kd_loss.py``
(``DistillationLoss``), ``classification/models.py`` (``head_kd``: a second ``Linear`` on the
same pre-classifier feature as ``head``; training returns both, eval their average) and
``classification/main_finetune.py`` (defaults). The student needs ``model.distill_head: true``
(:class:`~spikedistill.models.contract.DistillationHead`). With the class head's logits ``z``
and the distillation head's ``z_kd`` (both ``mean_t`` of the per-timestep heads)::

    L = (1 - alpha) CE(z, y) + alpha L_dist
    hard: L_dist = CE(z_kd, argmax_k z_t)
    soft: L_dist = tau^2 sum_{b,k} KL_k(softmax(z_t/tau) || softmax(z_kd/tau)) / (B K)

Defaults: ``type`` hard (``--kd`` turns ``--distillation_type none`` into hard, and
``train_finetune_from_t1_to_t4.sh`` passes ``hard``), ``alpha`` 0.5, ``tau`` 1.0
(``--distillation_alpha``, ``--distillation_tau``). Evaluation of the student averages both
heads, ``(z + z_kd) / 2``, as DeiT and SDT-V2 do. ``tests/distill/test_deit.py`` checks values
and gradients against ``DistillationLoss``.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.errors import ConfigError
from spikedistill.models.contract import distillation_head

__all__ = ["DeiT", "DeiTConfig"]


@dataclass
class DeiTConfig:
    """DeiT: ``(1 - alpha) CE(z, y) + alpha L_dist(z_kd, z_t)`` through a distillation head."""

    type: str = "hard"               # hard: CE to the teacher's top-1 | soft: tau^2 KL / (B K)
    alpha: float = 0.5               # L = (1 - alpha) CE(class head) + alpha L_distill(kd head)
    tau: float = 1.0                 # temperature of the soft distillation term

    def validate(self, prefix: str = "") -> None:
        check_choice(self.type, Fn.DEIT_TYPES, _k(prefix, "type"))
        check_range(self.alpha, _k(prefix, "alpha"), low=0.0, high=1.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)


@register_method("deit", config=DeiTConfig)
class DeiT(_TeacherStudent):
    """DeiT (module doc): losses ``ce`` (``(1 - alpha)`` times the class head's CE) and ``kd``
    (``alpha`` times the distillation head's term); returns the average of both heads."""

    def __init__(self, student, teacher=None, cfg=None, **settings):
        super().__init__(student, teacher, cfg, **settings)
        if distillation_head(self._s) is None:
            raise ConfigError("config key 'model.distill_head': method deit trains a second "
                              "(distillation) head; set model.distill_head: true")

    def forward_train(self, x, y, ctx=None):
        head = distillation_head(self._s)
        z = self.student(x)
        z_kd = head.pop_kd(like=z) if head.training else z
        t_logits = self.teacher_targets(x, return_features=False)
        c = self.section
        dist = Fn.deit_distillation_loss(z_kd, t_logits, kind=c.type, tau=c.tau)
        return (z + z_kd) / 2, {"ce": (1.0 - c.alpha) * self.cross_entropy(z, y),
                                "kd": c.alpha * dist}
