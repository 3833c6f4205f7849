"""``tser-kd``: temporal separation with entropy regularisation (``distill.tser_kd``).

Yu, Yu, Zhang, Zhao, Yang, Wang, Zhang, Xu, "Temporal Separation with Entropy Regularization
for Knowledge Distillation in Spiking Neural Networks", CVPR 2025 (arXiv:2503.03144; the
paper's code is announced at github.com/yukairong/TSER). Instead of distilling the
time-averaged logits, every timestep ``z_s[t]`` of the student is matched to the teacher and
supervised by the label, and the entropy of the per-timestep predictions is regularised::

    L_CE = 1/T sum_t CE(z_s[t] / tau_ce, y)          tau_ce = tau if tau_on_ce else 1
    L_KL = tau^2 * 1/T sum_t KL(softmax(z_t / tau) || softmax(z_s[t] / tau))
    L_ER = 1/T sum_t H(softmax(z_s[t] / tau))
    L    = (1 - alpha) L_CE + alpha L_KL - gamma L_ER

The paper's own code was not reachable (only its abstract and third-party summaries, which
confirm the per-timestep KL and CE, an entropy term that is rewarded, and a temperature the
results are stable in from 2 to 6). The defaults and the loss follow the public implementation
github.com/matteogianferrari/tser-kd (commit 86d3653c9c31f53f995ab57583e28a3efd31396a,
``tser_kd/model/loss.py`` ``TSERKDLoss`` and ``config_kd.py``): all three terms at temperature
``tau`` (``tau_on_ce: true``), ``alpha`` 1e-2, ``gamma`` 1e-3, ``tau`` 5, and the test
``tests/distill/test_authors_code.py`` checks values and gradients against it. That repository is
a third-party reimplementation, not the paper authors' release, so the method stays marked
"not verified against the paper". ``tau_on_ce: false`` keeps the CE unsoftened (Hinton's form).
With T = 1 and ``gamma = 0`` the loss is ``(1 - alpha) CE + alpha KD``.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.distill.methods._temporal import (timestep_and_teacher_logits,
                                                    timestep_cross_entropy)

__all__ = ["TSERKD", "TSERKDConfig"]


@dataclass
class TSERKDConfig:
    """TSER-KD: ``(1 - alpha) 1/T sum_t CE(z_s[t] / tau_ce, y) + alpha tau^2 1/T sum_t KL(p || q_t) - gamma 1/T sum_t H(q_t)``
    (``tau_ce = tau`` when ``tau_on_ce``, else 1)."""

    alpha: float = 1e-2              # matteogianferrari/tser-kd config_kd.py
    tau: float = 5.0
    gamma: float = 1e-3
    tau_on_ce: bool = True           # TSCELoss(tau=tau)

    def validate(self, prefix: str = "") -> None:
        check_range(self.alpha, _k(prefix, "alpha"), low=0.0, high=1.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.gamma, _k(prefix, "gamma"), low=0.0)


@register_method("tser-kd", config=TSERKDConfig, section="tser_kd")
class TSERKD(_TeacherStudent):
    """TSER-KD (module doc): losses ``ce`` (per-timestep CE), ``kd`` (per-timestep KL) and
    ``er`` (minus gamma times the per-timestep entropy)."""

    def forward_train(self, x, y, ctx=None):
        z, t_logits = timestep_and_teacher_logits(self, x)
        c = self.section
        zc = z / c.tau if c.tau_on_ce else z
        ce = timestep_cross_entropy(self.cross_entropy, zc, y)
        return z.mean(dim=0), {
            "ce": (1.0 - c.alpha) * ce,
            "kd": c.alpha * Fn.temporal_kl_loss(z, t_logits, tau=c.tau),
            "er": -c.gamma * Fn.temporal_entropy(z, tau=c.tau)}
