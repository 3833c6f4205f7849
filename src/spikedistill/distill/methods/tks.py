"""``tks``: temporal knowledge sharing, a self-distillation across timesteps (``distill.tks``).

Dong, Zhao, Zeng, "Temporal Knowledge Sharing enable Spiking Neural Network Learning from Past
and Future", IEEE Transactions on Artificial Intelligence 2024 (arXiv:2304.06540); code: the
TKS repository built on BrainCog (model ``metarightsltet``, loss ``Custom_CrossEntropy_PSKD``
and the ``current_alpha`` schedule in ``train_main.py``). No teacher network: the teacher is
the student's own correct timesteps. With per-timestep logits ``z[t]`` ``[T, B, K]``::

    S      = sum_t 1[argmax z[t] = y] z[t]                      (past and future shared)
    L_TKS  = 1/T sum_t tau^2 * CE_soft(softmax(S / tau), z[t])
    L      = alpha_e * CE(mean_t z[t], y) + (1 - alpha_e) * L_TKS
    alpha_e = 1 - alpha * epoch / epochs   (schedule "linear", the code's default, per epoch)
              or alpha                     (schedule "static", the code's --staticalpha:
                                            ``current_alpha = args.alpha``, train_main.py)

We follow the released code where it is more specific than the paper: the target ``S`` is a
*sum* of logits, it is not detached (``detach_target: false``; set true for a constant
target), the student side is not softened by ``tau``, and the term is a soft cross-entropy.
Defaults are the README's command (``--alpha 0.7 --T 3``). ``epoch`` (0-based) and
``epochs`` come from the engine's step context (outside the engine: epoch 0, alpha_e = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import Distiller, register_method
from spikedistill.distill.methods._common import _k
from spikedistill.distill.methods._temporal import timestep_logits

__all__ = ["TKS", "TKSConfig"]

SCHEDULES = ("linear", "static")


@dataclass
class TKSConfig:
    """TKS: ``alpha_e CE(mean_t z, y) + (1 - alpha_e) 1/T sum_t tau^2 CE(softmax(S/tau), z[t])``."""

    alpha: float = 0.7
    tau: float = 3.0
    schedule: str = "linear"         # linear: alpha_e = 1 - alpha * epoch / epochs | static: alpha
    detach_target: bool = False

    def validate(self, prefix: str = "") -> None:
        check_range(self.alpha, _k(prefix, "alpha"), low=0.0, high=1.0)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_choice(self.schedule, SCHEDULES, _k(prefix, "schedule"))


@register_method("tks", config=TKSConfig)
class TKS(Distiller):
    """TKS (module doc): the losses ``ce`` (``alpha_e`` times the CE of the mean logits) and
    ``tks`` (``1 - alpha_e`` times the sharing term); no teacher."""

    requires_teacher = False

    def __init__(self, student, teacher=None, cfg=None, **settings):
        super().__init__(student, None, cfg, **settings)

    def alpha_e(self, ctx=None) -> float:
        """The CE weight of this step: ``1 - alpha * min(epoch / epochs, 1)`` (linear) or
        ``alpha`` (static; the released ``--staticalpha`` sets ``current_alpha = args.alpha``)."""
        c = self.section
        if c.schedule == "static":
            return c.alpha
        epochs = int(getattr(ctx, "epochs", 0) or 0) if ctx is not None else 0
        if epochs <= 0:
            return 1.0
        frac = min(max(float(ctx.epoch) / epochs, 0.0), 1.0)
        return 1.0 - c.alpha * frac

    def forward_train(self, x, y, ctx=None):
        z = timestep_logits(self.student, x)
        logits = z.mean(dim=0)
        target = Fn.tks_target_logits(z, y)
        if self.section.detach_target:
            target = target.detach()
        a = self.alpha_e(ctx)
        return logits, {"ce": a * self.cross_entropy(logits, y),
                        "tks": (1.0 - a) * Fn.tks_loss(z, target, tau=self.section.tau)}
