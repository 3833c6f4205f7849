"""The registered distillation methods: small Distillers around :mod:`.functional`.

Every ``forward_train(x, y, ctx=None)`` returns ``(z_s, losses)`` with *already weighted* terms:

=============  ====================================================================
method         losses
=============  ====================================================================
kd             ce, kd                     (``distill.kd``)
kdsnn          ce, kd, feat               (``distill.kdsnn``; 1x1 adapter in ``extras``)
bkdsnn         ce, kd, bkd                (``distill.bkdsnn``; generator in ``extras``)
enof           ce, laf                    (``distill.enof``; Linear adapter if C_s != C_t)
samd           ce, samd                   (``distill.ckd``, NLD off)
nld            ce, nld                    (``distill.ckd``, SAMD off)
ckd            ce, samd, nld              (``distill.ckd``, preset ``distill.ckd.preset``)
ckd-released   ce, samd, nld              (``distill.ckd``, released-code preset)
ckd-paper      ce, samd, nld              (``distill.ckd``, paper preset)
=============  ====================================================================

Teacher outputs are always targets (detached), also with ``teacher.mode=released``.

Students and teachers are :class:`~spikedistill.models.contract.DistillModel` s: the number of
stages and their channels ``C_i`` come from ``feature_channels``, the pooled feature from
``pool(F_n)``, CAM weights from ``classifier_weight()`` and the teacher's head from
``classifier``; nothing assumes a particular architecture. Inputs may be images
``[B, C, H, W]`` or frames ``[T, B, C, H, W]`` (the teacher sees them as ``teacher.frames`` says,
:meth:`~spikedistill.distill.base.Distiller.run_teacher`).
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn

from spikedistill.distill import functional as Fn
from spikedistill.distill.base import (Distiller, map_tensors, register_method, teacher_input,
                                      time_mean, unwrap)
from spikedistill.distill.config import (BKDSNNConfig, CKDConfig, DistillConfig, EnOFConfig,
                                         KDConfig, KDSNNConfig, resolve_ckd)
from spikedistill.errors import ConfigError


def _section(cfg, name: str):
    sub = getattr(cfg, name, None)
    if sub is None:
        sub = getattr(DistillConfig(), name)
    return sub


def resolve_stage(stage: int, n_stages: int, key: str) -> int:
    """0-based index of a 1-based (or negative, from the end) stage number; ConfigError naming
    ``key`` when it is out of range."""
    if stage == 0 or not -n_stages <= stage <= n_stages:
        raise ConfigError(f"config key '{key}': stage {stage} does not exist; the model has "
                          f"{n_stages} stages (use 1..{n_stages}, or -1 for the last)")
    return stage - 1 if stage > 0 else n_stages + stage


class _TeacherStudent(Distiller):
    """Shared helpers: shapes of the two networks, teacher targets."""

    requires_teacher = True

    @property
    def _s(self) -> nn.Module:
        return unwrap(self.student)

    @property
    def _t(self) -> nn.Module:
        return unwrap(self.teacher)

    def _device(self) -> torch.device:
        p = next(self._s.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def teacher_targets(self, x: torch.Tensor, return_features: bool = True):
        """Teacher logits (and stage features) as constants."""
        return map_tensors(torch.Tensor.detach, self.run_teacher(x, return_features=return_features))

    def _channels(self, which: str) -> tuple:
        """``feature_channels`` of the student (``which="model"``) or teacher; ConfigError when
        the model does not know them (an adapter built without an input shape)."""
        m = self._s if which == "model" else self._t
        ch = tuple(getattr(m, "feature_channels", ()) or ())
        if not ch:
            raise ConfigError(f"config key '{which}.features': the {'student' if which == 'model' else 'teacher'} "
                              f"{type(m).__name__} reports no feature_channels; build it with an "
                              "input shape (FeatureTapModel(input_shape=...)) so its taps are probed")
        return ch

    def _n_stages(self) -> int:
        n_s, n_t = len(self._channels("model")), len(self._channels("teacher"))
        if n_s != n_t:
            raise ConfigError(f"config key 'model.features': student has {n_s} stages and teacher "
                              f"{n_t} (teacher.features): feature and map distillation need the "
                              "same number of stages")
        return n_s

    def _same_size(self, f_s: torch.Tensor, f_t: torch.Tensor, key: str, what: str) -> None:
        """ConfigError naming ``key`` unless the student feature ``[B, C', H, W]`` and the
        teacher feature ``[B, C, H, W]`` agree in everything but (adapted) channels."""
        if f_s.shape[2:] != f_t.shape[2:] or f_s.dim() != f_t.dim():
            raise ConfigError(f"config key '{key}': {what} needs student and teacher features "
                              f"of the same spatial size; student {tuple(f_s.shape[1:])} vs "
                              f"teacher {tuple(f_t.shape[1:])} (C, H, W); choose other taps "
                              "(model.features / teacher.features) or another input size")


@register_method("kd", config=KDConfig)
class KD(_TeacherStudent):
    """Hinton KD: ``CE + weight * tau^2 KL(softmax(z_t/tau) || softmax(z_s/tau))``
    (``distill.kd.tau``, ``distill.kd.weight``)."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.kd_cfg = _section(cfg, "kd")

    def forward_train(self, x, y, ctx=None):
        logits = self.student(x)
        t_logits = self.teacher_targets(x, return_features=False)
        c = self.kd_cfg
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.weight * Fn.kd_loss(logits, t_logits, tau=c.tau)}


@register_method("kdsnn", config=KDSNNConfig)
class KDSNN(_TeacherStudent):
    """KDSNN: ``CE + kd_weight * KD + feature_weight * MSE(A(mean_t F_s), F_t)`` at
    ``distill.kdsnn.stage``; ``A`` a 1x1 conv adapter (``extras["adapter"]``) where the channel
    counts differ, else the identity."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.kc = _section(cfg, "kdsnn")
        self.stage = resolve_stage(self.kc.stage, self._n_stages(), "distill.kdsnn.stage")
        c_s, c_t = self._channels("model")[self.stage], self._channels("teacher")[self.stage]
        if c_s != c_t:
            self.extras["adapter"] = nn.Conv2d(c_s, c_t, kernel_size=1, bias=False).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        f_s = Fn.time_average(feats[self.stage])
        self._same_size(f_s, t_feats[self.stage], "distill.kdsnn.stage", "KDSNN's feature MSE")
        if "adapter" in self.extras:
            f_s = self.extras["adapter"](f_s)
        c = self.kc
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau),
                        "feat": c.feature_weight * Fn.feature_mse_loss(f_s, t_feats[self.stage])}


@register_method("bkdsnn", config=BKDSNNConfig)
class BKDSNN(_TeacherStudent):
    """BKDSNN: ``CE + kd_weight * KD + feature_weight * sum((G(M * mean_t F_s) - F_t)^2) / B`` on
    the last stage, ``M`` a fresh random channel mask (ratio ``distill.bkdsnn.mask_ratio``) and
    ``G`` = conv3x3 - ReLU - conv3x3 (``extras["generator"]``, trained with the student)."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.bc = _section(cfg, "bkdsnn")
        c_s, c_t = self._channels("model")[-1], self._channels("teacher")[-1]
        self.extras["generator"] = nn.Sequential(
            nn.Conv2d(c_s, c_t, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_t, c_t, kernel_size=3, padding=1),
        ).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, t_feats = self.teacher_targets(x)
        f_s = Fn.time_average(feats[-1])
        self._same_size(f_s, t_feats[-1], "model.features", "BKDSNN's restored-feature MSE "
                        "(last taps)")
        mask = Fn.channel_mask(f_s.shape[0], f_s.shape[1], self.bc.mask_ratio, device=f_s.device)
        c = self.bc
        bkd = Fn.blurred_feature_loss(f_s, t_feats[-1], self.extras["generator"], mask)
        return logits, {"ce": self.cross_entropy(logits, y),
                        "kd": c.kd_weight * Fn.kd_loss(logits, t_logits, tau=c.tau),
                        "bkd": c.feature_weight * bkd}


@register_method("enof", config=EnOFConfig)
class EnOF(_TeacherStudent):
    """EnOF's LAF: ``CE + weight * tau^2 KL(softmax(z_t/tau) || softmax(W_t pool(F_s)/tau))``,
    ``W_t`` the teacher's classifier (detached: never trained). A ``Linear(C_s, C_t)`` adapter
    (``extras["adapter"]``) is added only when the feature sizes differ. RepAct is the model
    option ``model.last_activation=relu``."""

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        self.ec = _section(cfg, "enof")
        if not isinstance(self._t.classifier, nn.Linear):
            raise ConfigError(f"config key 'teacher.classifier': EnOF passes the student feature "
                              f"through the teacher's classifier, which must be a Linear, not "
                              f"{type(self._t.classifier).__name__}")
        d_s, d_t = self._s.feature_dim, self._t.feature_dim
        if d_s != d_t:
            self.extras["adapter"] = nn.Linear(d_s, d_t, bias=False).to(self._device())

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits = self.teacher_targets(x, return_features=False)
        pooled = self._s.pool(feats[-1])
        if "adapter" in self.extras:
            pooled = self.extras["adapter"](pooled)
        fc = self._t.classifier
        laf = Fn.laf_loss(pooled, t_logits, fc.weight, fc.bias, tau=self.ec.tau)
        return logits, {"ce": self.cross_entropy(logits, y), "laf": self.ec.weight * laf}


@register_method("ckd", config=CKDConfig)
class CKD(_TeacherStudent):
    """CKDSNN: ``CE(z_s, y) + beta * L_SAMD + gamma * L_NLD`` (``distill.ckd``).

    Switches left ``null`` come from the preset (``distill.ckd.preset``, or the method name for
    ``ckd-released`` / ``ckd-paper``; see :mod:`spikedistill.distill.config`). The resolved
    switches are in :attr:`settings`. With several SAMD stages the loss is their mean.
    """

    use_samd = True
    use_nld = True

    def __init__(self, student, teacher=None, cfg=None, teacher_mode="frozen"):
        super().__init__(student, teacher, cfg, teacher_mode)
        cfg = cfg if isinstance(cfg, DistillConfig) else DistillConfig(method=self.method_name)
        self.settings = resolve_ckd(cfg, method=self.method_name)
        sc = self.settings.samd
        self.stages: List[int] = []
        if not self.use_samd:
            return
        n = self._n_stages()
        for i, s in enumerate(sc.stages):
            idx = resolve_stage(s, n, f"distill.ckd.samd.stages[{i}]")
            if idx not in self.stages:
                self.stages.append(idx)
        non_last = [i + 1 for i in self.stages if i != n - 1]
        if non_last and sc.teacher_map == "cam":
            raise ConfigError(
                f"config key 'distill.ckd.samd.teacher_map': a CAM needs the classifier "
                f"weights, so it exists only at the last stage ({n}); for stage(s) "
                f"{non_last} use gradcam_label or gradcam_pred")
        if non_last and sc.student_map == "cam":
            raise ConfigError(
                f"config key 'distill.ckd.samd.student_map': the student CAM exists only at "
                f"the last stage ({n}); for stage(s) {non_last} use spike_sum")

    # -- maps ---------------------------------------------------------------------------------

    def _teacher_with_gradcam(self, x: torch.Tensor, y: torch.Tensor):
        """Teacher forward in an autograd graph (parameters stay frozen), Grad-CAM maps of the
        SAMD stages for the label or the teacher's prediction.

        Frames with ``teacher_frames="per_step"``: the class comes from the time-averaged logits
        and the map is the mean of the per-frame maps, ``M_t = 1/T sum_t GradCAM(z_t(x[t]),
        F_t(x[t]))`` (logits and features are averaged over T as in :meth:`run_teacher`)."""
        xin, T = teacher_input(x, self.teacher_frames)
        with torch.enable_grad():
            xin = xin.detach().requires_grad_(True) if self.teacher_mode == "frozen" else xin
            t_logits_f, t_feats_f = self.teacher(xin, return_features=True)
            t_logits = time_mean(t_logits_f.detach(), T)
            if self.settings.samd.teacher_map == "gradcam_label":
                classes = y
            else:
                classes = t_logits.argmax(dim=1)
            classes_f = classes if T is None else classes.repeat(T)
            maps = {}
            for j, idx in enumerate(self.stages):
                maps[idx] = time_mean(Fn.grad_cam(t_logits_f, t_feats_f[idx], classes_f,
                                                  retain_graph=j < len(self.stages) - 1), T)
        t_feats = [time_mean(f.detach(), T) for f in t_feats_f]
        return t_logits, t_feats, maps, classes

    def _teacher(self, x, y):
        if self.use_samd and self.settings.samd.teacher_map.startswith("gradcam"):
            return self._teacher_with_gradcam(x, y)
        t_logits, t_feats = self.teacher_targets(x)
        classes = t_logits.argmax(dim=1)       # the released code's CAM class: teacher argmax
        maps = {}
        if self.use_samd:
            last = t_feats[-1]
            w = self._t.classifier_weight().detach()
            maps = {idx: Fn.class_activation_map(last, w, classes) for idx in self.stages}
        return t_logits, t_feats, maps, classes

    def _student_map(self, feats, idx: int, classes: torch.Tensor) -> torch.Tensor:
        if self.settings.samd.student_map == "cam":
            return Fn.class_activation_map(Fn.time_average(feats[idx]),
                                           self._s.classifier_weight(), classes)
        return Fn.spike_activation_map(feats[idx])

    def samd(self, feats, teacher_maps: Dict[int, torch.Tensor], classes) -> torch.Tensor:
        sc = self.settings.samd
        terms = []
        for idx in self.stages:
            m_s, m_t = self._student_map(feats, idx, classes), teacher_maps[idx]
            if m_s.shape != m_t.shape:
                raise ConfigError(
                    f"config key 'distill.ckd.samd.stages': at stage {idx + 1} the student map is "
                    f"{tuple(m_s.shape[1:])} (H, W) but the teacher map is {tuple(m_t.shape[1:])}; "
                    "SAMD needs stages of the same spatial resolution (choose other taps in "
                    "model.features / teacher.features, or other SAMD stages)")
            terms.append(Fn.samd_loss(m_s, m_t, tau=sc.tau, normalize=sc.normalize,
                                      scaling=sc.scaling, tau_squared=sc.tau_squared,
                                      log_eps=sc.log_eps))
        return torch.stack(terms).mean()

    def nld(self, logits, t_logits) -> torch.Tensor:
        nc = self.settings.nld
        return Fn.nld_loss(logits, t_logits, tau=nc.tau, mode=nc.mode, weight=nc.weight,
                           sigma=nc.sigma)

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, _, t_maps, classes = self._teacher(x, y)
        losses = {"ce": self.cross_entropy(logits, y)}
        if self.use_samd:
            losses["samd"] = self.settings.beta * self.samd(feats, t_maps, classes)
        if self.use_nld:
            losses["nld"] = self.settings.gamma * self.nld(logits, t_logits)
        return logits, losses


@register_method("ckd-released", config=CKDConfig, section="ckd")
class CKDReleased(CKD):
    """CKDSNN with every unset switch as in the released code (``distill.ckd`` overrides win)."""


@register_method("ckd-paper", config=CKDConfig, section="ckd")
class CKDPaper(CKD):
    """CKDSNN with every unset switch as the paper describes it (``distill.ckd`` overrides win)."""


@register_method("samd", config=CKDConfig, section="ckd")
class SAMDOnly(CKD):
    """Ablation: ``CE + beta * L_SAMD`` (switches from ``distill.ckd.samd``)."""

    use_nld = False


@register_method("nld", config=CKDConfig, section="ckd")
class NLDOnly(CKD):
    """Ablation: ``CE + gamma * L_NLD`` (switches from ``distill.ckd.nld``)."""

    use_samd = False
