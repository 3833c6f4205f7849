"""``tdd``: temporal decoupling distillation (``distill.tdd``).

Yu, Zhao, Liu, Yang, Wang, Li, Wang, "Efficient Logit-based Knowledge Distillation of Deep
Spiking Neural Networks for Full-Range Timestep Deployment", ICML 2025 (arXiv:2501.15925);
code github.com/Intelli-Chip-Lab/snn_temporal_decoupling_distillation (commit
e3f5fd43b8ecca6804775cd9cd54a8d148cb1c57, ``experiment/cifar/main.py`` ``train`` and
``model/layer.py`` ``kd_loss``, ``cal_loss``, ``make_teacher``). Every timestep of the student is
supervised by the label, by the ANN teacher and by the student's own correct timesteps, so that
the model is good at every ``T' <= T``. With per-timestep logits ``z[t]`` ``[T, B, K]``::

    S    = sum_t 1[argmax z[t] = y] z[t] / (sum_t 1[argmax z[t] = y] + 1e-8)   (detached)
    L    = 1/T sum_t CE(z[t], y)
           + alpha * 1/T sum_t tau^2 KL(softmax(z_t / tau) || softmax(z[t] / tau))
           + beta  * 1/T sum_t tau^2 KL(softmax(S / tau)   || softmax(z[t] / tau))

Defaults are the README's commands (``--alpha 0.2 --beta 0.5``) and the code's temperature 3.
``tests/distill/test_authors_code.py`` checks values and gradients against the released code.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.distill.methods._temporal import (timestep_and_teacher_logits,
                                                    timestep_cross_entropy)

__all__ = ["TDD", "TDDConfig"]


@dataclass
class TDDConfig:
    """TDD: ``1/T sum_t CE(z[t], y) + alpha 1/T sum_t KD_tau(z[t], z_t) + beta 1/T sum_t KD_tau(z[t], S)``."""

    alpha: float = 0.2               # weight of the per-timestep KL to the ANN teacher
    beta: float = 0.5                # weight of the per-timestep KL to the self-teacher S
    tau: float = 3.0                 # temperature of both KL terms (the released default)

    def validate(self, prefix: str = "") -> None:
        check_range(self.alpha, _k(prefix, "alpha"), low=0.0)
        check_range(self.beta, _k(prefix, "beta"), low=0.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)


@register_method("tdd", config=TDDConfig)
class TDD(_TeacherStudent):
    """TDD (module doc): losses ``ce`` (per-timestep CE), ``kd`` (per-timestep KL to the ANN)
    and ``self`` (per-timestep KL to the mean of the correct timesteps' logits)."""

    def forward_train(self, x, y, ctx=None):
        z, t_logits = timestep_and_teacher_logits(self, x)
        c = self.section
        ce = timestep_cross_entropy(self.cross_entropy, z, y)
        target = Fn.tdd_target_logits(z, y).detach()
        return z.mean(dim=0), {
            "ce": ce,
            "kd": c.alpha * Fn.temporal_kl_loss(z, t_logits, tau=c.tau),
            "self": c.beta * Fn.temporal_kl_loss(z, target, tau=c.tau)}
