"""``e2kd``: explanation-enhanced KD (``distill.e2kd``).

Parchami-Araghi, Boehle, Rao, Schiele, "Good Teachers Explain: Explanation-Enhanced Knowledge
Distillation", ECCV 2024 (arXiv:2402.03119; code github.com/m-parchami/GoodTeachersExplain).
The paper's loss is ``L = L_KD + lambda * L_exp`` with ``L_exp = 1 - sim(E(T, x), E(S, x))``,
``sim`` the cosine similarity of the two explanations of the class the teacher predicts. The
paper explains with B-cos maps or Grad-CAM; here the teacher's explanation is its Grad-CAM on
its last stage and the student's is the CAM of its time-averaged last spike feature
``mean_t F_s`` through ``classifier_weight()``: for the GAP + Linear head of every student of
the contract the student's Grad-CAM equals that CAM divided by ``H W``, and the cosine ignores
the scale, so both give the same loss without a second backward pass through the SNN.
The CE on the labels is kept (``distill.ce_weight``), as in the paper's KD baselines.

Released code (commit a1b7bb532bff395988e6695d65a49461bfedb099,
``bcos/distillation_methods/TeachersExplain.py`` and the ``final_live`` experiment parameters):
both Grad-CAMs are resized bilinearly to the input image size before ``1 - cos``
(``map_size: input``; ``feature`` compares them at feature size, our earlier reading), and the
KD temperature is 1 (``teacher_logit_temperature``, with the ``T^2`` rescale), loss
coefficients 1. ``tests/distill/test_authors_code.py`` checks values and gradients against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikedistill.config import check_choice, check_range
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import register_method, teacher_input, time_mean
from spikedistill.distill.methods._common import _k, _TeacherStudent
from spikedistill.errors import ConfigError

__all__ = ["E2KD", "E2KDConfig"]

MAP_SIZES = ("input", "feature")


@dataclass
class E2KDConfig:
    """e2KD: ``CE + kd_weight * KD_tau + weight * 1/B sum_b (1 - cos(E_s[b], E_t[b]))``."""

    tau: float = 1.0                 # released teacher_logit_temperature
    kd_weight: float = 1.0
    weight: float = 1.0              # lambda of the explanation term
    map_size: str = "input"          # input: both maps resized to the input's H x W | feature

    def validate(self, prefix: str = "") -> None:
        check_choice(self.map_size, MAP_SIZES, _k(prefix, "map_size"))
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)


@register_method("e2kd", config=E2KDConfig)
class E2KD(_TeacherStudent):
    """e2KD: ``CE + kd_weight * tau^2 KL(p_t || p_s) + weight * (1 - cos(E_s, E_t))``, the
    explanations taken for the teacher's predicted class ``c = argmax z_t``: ``E_t`` the
    teacher's Grad-CAM on its last stage, ``E_s = ReLU(W_s[c] . mean_t F_s)`` (module doc)."""

    def _teacher_explained(self, x):
        """Teacher logits and the Grad-CAM ``(B, H, W)`` of its predicted class (frames with
        ``per_step``: the mean of the per-frame maps, the class from the averaged logits)."""
        xin, T = teacher_input(x, self.teacher_frames)
        with torch.enable_grad():
            xin = xin.detach().requires_grad_(True) if self.teacher_mode == "frozen" else xin
            t_logits_f, t_feats_f = self.teacher(xin, return_features=True)
            t_logits = time_mean(t_logits_f.detach(), T)
            classes = t_logits.argmax(dim=1)
            classes_f = classes if T is None else classes.repeat(T)
            cam = time_mean(Fn.grad_cam(t_logits_f, t_feats_f[-1], classes_f), T)
        return t_logits, cam, classes

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, e_t, classes = self._teacher_explained(x)
        e_s = Fn.class_activation_map(Fn.time_average(feats[-1]), self._s.classifier_weight(),
                                      classes)
        c = self.section
        size = tuple(x.shape[-2:]) if c.map_size == "input" else None
        if size is None and e_s.shape != e_t.shape:
            raise ConfigError(f"config key 'model.features': e2KD compares the student's and the "
                              f"teacher's last-stage explanations, but they are "
                              f"{tuple(e_s.shape[1:])} and {tuple(e_t.shape[1:])} (H, W); choose "
                              "taps of the same resolution (model.features / teacher.features) "
                              "or distill.e2kd.map_size=input")
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau),
                        "exp": c.weight * Fn.explanation_cosine_loss(e_s, e_t, size=size)}
