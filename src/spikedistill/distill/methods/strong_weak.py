"""``s2w`` and ``w2s``: Strong2Weak / Weak2Strong temporal self-distillation
(``distill.s2w``, ``distill.w2s``).

Ding, Zuo, Jing, Yang, He, Xie, "Synergy Between the Strong and the Weak: Spiking Neural
Networks are Inherently Self-Distillers", NeurIPS 2025 (arXiv:2510.07924). **Paper only,
unverified against code**: no public code was found; this follows Sec. 4 (Eqs. 3-9), Alg. 1
(default one-to-one) and Appendix A / Alg. 2 (cascade). No teacher network: each timestep of
the SNN is a submodel; the timesteps are ranked by their batch-mean confidence
``con(t) = 1/B sum_b max_k softmax(z[t, b])_k`` (Eqs. 3-4) and, with per-timestep logits
``z[t]`` ``[T, B, K]`` and ``KL_tau(a -> b) = KL(softmax(a/tau) || softmax(b/tau))`` (Eq. 5)::

    t_s = argmax_t con(t),  t_w = argmin_t con(t)
    s2w:  L = CE(mean_t z[t], y) + lambda KL_tau(z[t_s] -> z[t_w])      (Eqs. 6-7)
    w2s:  L = CE(mean_t z[t], y) + lambda KL_tau(z[t_w] -> z[t_s])      (Eqs. 8-9)

Defaults (Sec. 4.2-4.3, Appendix D): ``lam`` (lambda_S2W / lambda_W2S) 1, ``tau`` (the
softening factor alpha) 2, ``scheme`` one_to_one. Read from the text and Alg. 1 because the
equations themselves were not legible in the copy we had: no ``tau^2`` factor, the teacher is
not detached (``detach_teacher: false``), the KL is a per-sample sum averaged over the batch
(``reduction: batchmean``; ``mean`` divides by ``K`` as well, as PyTorch's default ``F.kl_div``
would). ``scheme: cascade`` distils each adjacent pair of the confidence ranking (Alg. 2). The
paper's other variants (ensemble teacher / student, simultaneous) are not offered. The paper
sets lambda 0.01 for QKFormer (Appendix B.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import Distiller, register_method
from spikedistill.distill.methods._common import _k
from spikedistill.distill.methods._temporal import timestep_logits

__all__ = ["StrongWeakConfig", "Strong2Weak", "Weak2Strong"]


@dataclass
class StrongWeakConfig:
    """Strong2Weak / Weak2Strong: ``CE(mean_t z, y) + lam KL_tau(teacher timestep -> student timestep)``."""

    lam: float = 1.0                 # lambda_S2W / lambda_W2S (Eqs. 7, 9)
    tau: float = 2.0                 # softening factor alpha (Eq. 5)
    scheme: str = "one_to_one"       # one_to_one (Alg. 1) | cascade (Alg. 2)
    reduction: str = "batchmean"     # batchmean: 1/B sum_b KL_b | mean: F.kl_div's default
    detach_teacher: bool = False     # Alg. 1 detaches nothing

    def validate(self, prefix: str = "") -> None:
        check_range(self.lam, _k(prefix, "lam"), low=0.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_choice(self.scheme, Fn.SD_SCHEMES, _k(prefix, "scheme"))
        check_choice(self.reduction, Fn.SD_REDUCTIONS, _k(prefix, "reduction"))


class _StrongWeak(Distiller):
    """Losses ``ce`` (CE of the mean logits) and ``sd`` (``lam`` times the self-distillation
    term of :func:`~spikedistill.distill.functional.strong_weak_loss`); no teacher."""

    requires_teacher = False
    direction = "s2w"

    def __init__(self, student, teacher=None, cfg=None, **settings):
        super().__init__(student, None, cfg, **settings)

    def forward_train(self, x, y, ctx=None):
        z = timestep_logits(self.student, x)
        logits = z.mean(dim=0)
        c = self.section
        sd = Fn.strong_weak_loss(z, direction=self.direction, tau=c.tau, scheme=c.scheme,
                                 reduction=c.reduction, detach_teacher=c.detach_teacher)
        return logits, {"ce": self.cross_entropy(logits, y), "sd": c.lam * sd}


@register_method("s2w", config=StrongWeakConfig)
class Strong2Weak(_StrongWeak):
    """Strong2Weak (module doc, Sec. 4.2): the most confident timestep teaches the least."""

    direction = "s2w"


@register_method("w2s", config=StrongWeakConfig)
class Weak2Strong(_StrongWeak):
    """Weak2Strong (module doc, Sec. 4.3): the least confident timestep teaches the most."""

    direction = "w2s"
