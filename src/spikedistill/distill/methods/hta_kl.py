"""``hta-kl``: head-tail-aware KL distillation (``distill.hta_kl``).

Zhang, Zhu, Yu, Wang, "Head-Tail-Aware KL Divergence in Knowledge Distillation for Spiking
Neural Networks", arXiv:2504.20445 (2025). A cumulative-probability mask splits the teacher's
distribution into a head (the high-probability classes) and a tail; the forward KL (mass
covering, dominated by the head) and the reverse KL (which weighs the tail) are combined with
weights from the student's gap on each part (:func:`~spikedistill.distill.functional.hta_kl_loss`),
applied to every timestep of the student and averaged over T (``per_timestep: true``) or to the
time-averaged logits (``false``)::

    L = CE(mean_t z_s[t], y) + weight * 1/T sum_t HTA(z_s[t], z_t)

NOT VERIFIED against the paper: its equations, equation numbers and CIFAR hyper-parameters were
not reachable (the stored copies of arxiv.org/html/2504.20445 and of the pages about it give
the abstract only; no code for it was found), so ``HTA`` here is the adaptive KL of Wu et al.
(arXiv:2404.02657) with its head threshold ``mu`` (default 0.5), which has every element the
abstract names (cumulative-probability mask, adaptive head/tail weights, FKL + RKL). The
per-timestep reduction, ``tau`` 2 and ``weight`` 1 are our defaults. Treat its numbers as
those of "adaptive KL per timestep" until checked against the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _section, _TeacherStudent
from spikedistill.distill.methods._temporal import timestep_logits

__all__ = ["HTAKL", "HTAKLConfig"]


@dataclass
class HTAKLConfig:
    """HTA-KL: ``CE + weight * tau^2 (w_head KL(p || q) + w_tail KL(q || p))``, head mask at ``mu``."""

    tau: float = 2.0
    weight: float = 1.0
    mu: float = 0.5
    per_timestep: bool = True

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)
        check_range(self.mu, _k(prefix, "mu"), low=0.0, high=1.0, low_open=True)


@register_method("hta-kl", config=HTAKLConfig, section="hta_kl")
class HTAKL(_TeacherStudent):
    """HTA-KL (module doc): losses ``ce`` and ``hta``."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.hc = _section(cfg, "hta_kl")

    def forward_train(self, x, y, ctx=None):
        z = timestep_logits(self.student, x)
        logits = z.mean(dim=0)
        t_logits = self.teacher_targets(x, return_features=False)
        c = self.hc
        s = z if c.per_timestep else logits
        return logits, {"ce": self.cross_entropy(logits, y),
                        "hta": c.weight * Fn.hta_kl_loss(s, t_logits, tau=c.tau, mu=c.mu)}
