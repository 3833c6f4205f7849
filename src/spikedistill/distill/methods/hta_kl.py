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
abstract names (cumulative-probability mask, adaptive head/tail weights, FKL + RKL). By
default it is AKL as released (github.com/wutaiqiang/LLM_KD_AKL, commit
ff278be603df44b10afc07da3c7962ec8218aca7, ``AKL.py``): descending cumulative sum, the class that
crosses ``mu`` is tail, the top-1 always head (``rule: akl``), weights from the detached student
probabilities (``detach_weights: true``), no temperature (``tau`` 1); values and gradients are
checked against that code in ``tests/distill/test_authors_code.py``. ``rule: ascending`` with
``detach_weights: false`` is spikedistill's earlier reading, registered under its own name
``hta-kl-ascending`` (with ``distill.hta_kl.tau=2`` it is the earlier default). The per-timestep reduction and ``weight`` 1 are ours.
Treat its numbers as those of "adaptive KL per timestep" until checked against the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.distill.methods._temporal import timestep_logits

__all__ = ["HTAKL", "HTAKLAscending", "HTAKLConfig"]


@dataclass
class HTAKLConfig:
    """HTA-KL: ``CE + weight * tau^2 (w_head KL(p || q) + w_tail KL(q || p))``, head mask at ``mu``."""

    tau: float = 1.0                 # AKL has no temperature
    weight: float = 1.0
    mu: float = 0.5
    per_timestep: bool = True
    rule: str = "akl"                # akl (released AKL) | ascending (our earlier reading)
    detach_weights: bool = True      # AKL detaches the student probabilities of the weights

    def validate(self, prefix: str = "") -> None:
        check_choice(self.rule, Fn.HEAD_RULES, _k(prefix, "rule"))
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)
        check_range(self.mu, _k(prefix, "mu"), low=0.0, high=1.0, low_open=True)


@register_method("hta-kl", config=HTAKLConfig, section="hta_kl")
class HTAKL(_TeacherStudent):
    """HTA-KL (module doc): losses ``ce`` and ``hta``."""

    def _rule(self):
        """``(rule, detach_weights)`` of the head/tail split (the config's)."""
        return self.section.rule, self.section.detach_weights

    def forward_train(self, x, y, ctx=None):
        z = timestep_logits(self.student, x)
        logits = z.mean(dim=0)
        t_logits = self.teacher_targets(x, return_features=False)
        c = self.section
        s = z if c.per_timestep else logits
        rule, detach = self._rule()
        return logits, {"ce": self.cross_entropy(logits, y),
                        "hta": c.weight * Fn.hta_kl_loss(s, t_logits, tau=c.tau, mu=c.mu, rule=rule,
                                                         detach_weights=detach)}


@register_method("hta-kl-ascending", config=HTAKLConfig, section="hta_kl")
class HTAKLAscending(HTAKL):
    """spikedistill's earlier reading of HTA-KL: the ascending head rule (the class crossing
    ``mu`` is head) and head/tail weights that carry gradient; ``distill.hta_kl.rule`` and
    ``detach_weights`` are ignored, the other keys apply."""

    def _rule(self):
        return "ascending", False
