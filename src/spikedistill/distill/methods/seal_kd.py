"""``seal-kd``: selective alignment distillation (``distill.seal_kd``).

SeAl-KD (arXiv:2605.14252); code github.com/KaiSUN1/SeAl (commit
b30ead65797a3eab1b96d4827ee954637a5170b6, ``experiment/cifar/main.py`` ``train`` and
``model/layer.py`` ``align_teacher_student_logits``, ``time_step_kd_loss``, ``kd_loss``,
``cal_loss``). Per-timestep supervision plus two alignments::

    L = 1/T sum_t CE(z[t], y)
        + alpha * 1/T sum_t tau^2 KL(softmax(t'_t / tau) || softmax(s'_t / tau))   (ELA)
        + beta  * STA_tau(z)

``(s'_t, t'_t) = ELA(z[t], z_t, y)`` the error-aware logit alignment
(:func:`~spikedistill.distill.functional.error_aware_align`): where timestep ``t`` predicts a
wrong class, that class's student logit is tied to the label's and the teacher's two logits are
lowered to their minimum; ``STA`` the similarity-aware temporal alignment
(:func:`~spikedistill.distill.functional.similarity_temporal_loss`): every timestep learns
from the confidence- and similarity-weighted mix of the other timesteps. Defaults: the README's
commands (``--alpha 0.6 --beta 0.15``), temperature 3 in both terms (the code's).
``tests/distill/test_authors_code.py`` checks values and gradients against the released code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.distill.methods._temporal import (timestep_and_teacher_logits,
                                                    timestep_cross_entropy)

__all__ = ["SeAlKD", "SeAlKDConfig"]


@dataclass
class SeAlKDConfig:
    """SeAl-KD: ``1/T sum_t CE(z[t], y) + alpha 1/T sum_t KD_tau(ELA(z[t], z_t, y)) + beta STA_tau(z)``."""

    alpha: float = 0.6               # error-aware logit alignment to the ANN teacher
    beta: float = 0.15               # similarity-aware temporal alignment
    tau: float = 3.0                 # temperature of both alignment terms (the released default)

    def validate(self, prefix: str = "") -> None:
        check_range(self.alpha, _k(prefix, "alpha"), low=0.0)
        check_range(self.beta, _k(prefix, "beta"), low=0.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)


@register_method("seal-kd", config=SeAlKDConfig, section="seal_kd")
class SeAlKD(_TeacherStudent):
    """SeAl-KD (module doc): losses ``ce``, ``ela`` and ``sta``."""

    def forward_train(self, x, y, ctx=None):
        z, t_logits = timestep_and_teacher_logits(self, x)
        c = self.section
        steps = range(z.shape[0])
        ce = timestep_cross_entropy(self.cross_entropy, z, y)
        ela = []
        for t in steps:
            s_al, t_al = Fn.error_aware_align(z[t], t_logits, y)
            ela.append(Fn.kd_loss(s_al, t_al, tau=c.tau))
        return z.mean(dim=0), {"ce": ce,
                               "ela": c.alpha * torch.stack(ela).mean(),
                               "sta": c.beta * Fn.similarity_temporal_loss(z, tau=c.tau)}
