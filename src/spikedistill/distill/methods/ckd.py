"""``ckd``: CKDSNN (SAMD + NLD), its presets ``ckd-released`` / ``ckd-paper`` and the
ablations ``samd`` / ``nld``, all reading ``distill.ckd``.

CKDSNN presets
--------------
The switches on which the paper and the released code disagree default to ``null`` ("take it
from the preset"). A preset fills exactly the fields that are still ``null`` when the method is
built (:func:`resolve_ckd`), so anything the user sets explicitly wins::

    --set distill.method=ckd-paper distill.ckd.nld.weight=0.2     # paper preset, lambda 0.2
    --set distill.method=ckd-paper distill.ckd.samd.normalize=sample_minmax

The preset is chosen by the method name (``ckd-released`` -> ``released``, ``ckd-paper`` ->
``paper``); ``ckd``, ``samd`` and ``nld`` use ``distill.ckd.preset`` or, when that is null too,
:data:`DEFAULT_CKD_PRESET`. See :data:`CKD_PRESETS` for the table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from spikedistill.config import (CKD_NLD_MODE_CHOICES, CKD_NORMALIZE_CHOICES, CKD_PRESET_CHOICES,
                                 CKD_SCALING_CHOICES, CKD_STUDENT_MAP_CHOICES,
                                 CKD_TEACHER_MAP_CHOICES, DistillConfig, check_choice, check_range)
from spikedistill.distill import functional as Fn
from spikedistill.distill.base import hard_labels, register_method, teacher_input, time_mean
from spikedistill.distill.methods._common import _TeacherStudent, _check_stage, _k, resolve_stage
from spikedistill.errors import ConfigError

__all__ = ["CKD", "CKDConfig", "CKDPaper", "CKDReleased", "CKD_PRESETS", "DEFAULT_CKD_PRESET",
           "METHOD_PRESETS", "NLDConfig", "NLDOnly", "SAMDConfig", "SAMDOnly", "cam_teacher_maps",
           "gradcam_teacher_maps", "preset_for", "resolve_ckd", "resolve_ckd_section",
           "student_samd_map"]


# the switches' vocabularies live in the config layer (spikedistill.config)
NORMALIZE_CHOICES = CKD_NORMALIZE_CHOICES
SCALING_CHOICES = CKD_SCALING_CHOICES
TEACHER_MAP_CHOICES = CKD_TEACHER_MAP_CHOICES
STUDENT_MAP_CHOICES = CKD_STUDENT_MAP_CHOICES
NLD_MODE_CHOICES = CKD_NLD_MODE_CHOICES
PRESET_CHOICES = CKD_PRESET_CHOICES

#: The preset ``ckd`` (and ``samd``, ``nld``) uses when ``distill.ckd.preset`` is null.
#: ``released`` measured better on real data (CIFAR-10 JPEG copy, spiking ResNet-20 T=1, 3 seeds:
#: 33.30 +- 0.72 % best vs 33.00 +- 2.40 % for ``paper``; README, "Measured results").
DEFAULT_CKD_PRESET = "released"

#: Methods whose name fixes the preset.
METHOD_PRESETS = {"ckd-released": "released", "ckd-paper": "paper"}

#: What each preset puts into the fields left null. Switches on which paper and code agree
#: (stage = last, softmax scaling, tau = 2, spike-sum student map, noise weight 0.1, NLD tau = 2,
#: beta = gamma = 1) are plain defaults instead.
#: The paper does not state a map normalisation. Its equation ``P = softmax(vec(M) / tau)`` on
#: the raw maps (``normalize=none``) was measured to kill the student: on the embedded digits
#: (spiking ResNet-20, T = 2, teacher at 99.3 %) SAMD started at 22, the network fell silent
#: within one epoch and stayed at chance (10 %) for 6 epochs, while KD reached 56 %. The paper
#: preset therefore min-max normalises each map on its own (``sample_minmax``: the per-sample
#: reading of the released code's batch-global step); ``none`` stays available as a switch.
CKD_PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "released": {
        "samd": {"normalize": "batch_minmax", "tau_squared": False, "teacher_map": "cam",
                 "log_eps": 1e-10},
        "nld": {"mode": "released"},
    },
    "paper": {
        "samd": {"normalize": "sample_minmax", "tau_squared": True, "teacher_map": "gradcam_label",
                 "log_eps": 0.0},
        "nld": {"mode": "paper"},
    },
}


@dataclass
class SAMDConfig:
    """Saliency-scaled activation map distillation. ``null`` fields come from the preset."""

    stages: List[int] = field(default_factory=lambda: [-1])  # 1-based, or negative (-1: last)
    normalize: Optional[str] = None      # batch_minmax | sample_minmax | none
    scaling: str = "softmax"             # softmax | zscore | l2 | none
    tau: float = 2.0
    tau_squared: Optional[bool] = None
    teacher_map: Optional[str] = None    # cam | gradcam_label | gradcam_pred
    student_map: str = "spike_sum"       # spike_sum | cam
    log_eps: Optional[float] = None      # added to both probabilities before the log (0: exact)

    def validate(self, prefix: str = "") -> None:
        check_choice(self.normalize, NORMALIZE_CHOICES, _k(prefix, "normalize"), optional=True)
        check_choice(self.scaling, SCALING_CHOICES, _k(prefix, "scaling"))
        check_choice(self.teacher_map, TEACHER_MAP_CHOICES, _k(prefix, "teacher_map"), optional=True)
        check_choice(self.student_map, STUDENT_MAP_CHOICES, _k(prefix, "student_map"))
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.log_eps, _k(prefix, "log_eps"), low=0.0)
        if not self.stages:
            raise ConfigError(f"config key '{_k(prefix, 'stages')}': expected at least one stage, "
                              "e.g. [-1] (the last stage) or [1, 3]")
        for i, s in enumerate(self.stages):
            _check_stage(s, f"{_k(prefix, 'stages')}[{i}]")


@dataclass
class NLDConfig:
    """Noise-smoothed logits distillation. ``mode: null`` comes from the preset."""

    mode: Optional[str] = None           # released | paper | fixed | none
    weight: float = 0.1                  # mixture weight (released) / lambda (paper, fixed)
    sigma: Optional[float] = None        # noise std of mode 'fixed'
    tau: float = 2.0

    def validate(self, prefix: str = "") -> None:
        check_choice(self.mode, NLD_MODE_CHOICES, _k(prefix, "mode"), optional=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)
        check_range(self.sigma, _k(prefix, "sigma"), low=0.0, low_open=True)
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        if self.mode == "fixed" and self.sigma is None:
            raise ConfigError(f"config key '{_k(prefix, 'sigma')}': NLD mode 'fixed' needs a noise "
                              "standard deviation, e.g. sigma=1.0")
        if self.mode == "released" and self.weight > 1.0:
            raise ConfigError(f"config key '{_k(prefix, 'weight')}': the released NLD mixes "
                              f"probabilities, so the weight must be <= 1, got {self.weight!r}")


@dataclass
class CKDConfig:
    """CKDSNN: ``L = CE + beta * L_SAMD + gamma * L_NLD``."""

    preset: Optional[str] = None         # released | paper (null: by method name / DEFAULT_CKD_PRESET)
    beta: float = 1.0
    gamma: float = 1.0
    samd: SAMDConfig = field(default_factory=SAMDConfig)
    nld: NLDConfig = field(default_factory=NLDConfig)

    def validate(self, prefix: str = "") -> None:
        check_choice(self.preset, PRESET_CHOICES, _k(prefix, "preset"), optional=True)
        check_range(self.beta, _k(prefix, "beta"), low=0.0)
        check_range(self.gamma, _k(prefix, "gamma"), low=0.0)


def preset_for(cfg: DistillConfig, method: Optional[str] = None) -> str:
    """The CKDSNN preset that ``method`` (default ``cfg.method``) uses (see the module docstring)."""
    return _preset_of(cfg.ckd, cfg.method if method is None else method)


def _preset_of(section: CKDConfig, method: str) -> str:
    """The preset of ``method`` given its ``distill.ckd`` section (:func:`preset_for`)."""
    fixed = METHOD_PRESETS.get(method)
    chosen = section.preset
    if fixed is not None:
        if chosen is not None and chosen != fixed:
            raise ConfigError(f"config key 'distill.ckd.preset': method {method!r} fixes the "
                              f"preset to {fixed!r}, got {chosen!r} (use distill.method=ckd with "
                              "distill.ckd.preset=... instead)")
        return fixed
    return chosen if chosen is not None else DEFAULT_CKD_PRESET


def resolve_ckd(cfg: DistillConfig, method: Optional[str] = None) -> CKDConfig:
    """A copy of ``cfg.ckd`` with every ``null`` switch filled from the preset of ``method``
    (default ``cfg.method``).

    Fields the user set (non-null) are kept: the preset never overrides them.
    """
    return resolve_ckd_section(cfg.ckd, cfg.method if method is None else method)


def resolve_ckd_section(section: CKDConfig, method: str) -> CKDConfig:
    """A copy of the ``distill.ckd`` ``section`` with every ``null`` switch filled from the preset
    of ``method`` (:func:`resolve_ckd`; the user's non-null fields are kept)."""
    preset = _preset_of(section, method)
    out = copy.deepcopy(section)
    out.preset = preset
    for section, values in CKD_PRESETS[preset].items():
        sub = getattr(out, section)
        for name, value in values.items():
            if getattr(sub, name) is None:
                setattr(sub, name, value)
    out.samd.validate("distill.ckd.samd")
    out.nld.validate("distill.ckd.nld")
    return out




# -- SAMD's maps (the loss and the maps picture, analysis/maps.py, both call these) -----------

def gradcam_teacher_maps(teacher, x: torch.Tensor, y: torch.Tensor, teacher_map: str,
                         stages: List[int], teacher_frames: str = "mean",
                         frozen: bool = True):
    """``(t_logits, t_feats, {stage index: M_t}, classes)``: the teacher's Grad-CAM maps of the
    0-based ``stages`` for the class ``k`` of each image,

        M_t = ReLU(sum_c alpha_c F_c),  alpha_c = mean_ij d z_k / d F_c[i, j],

    with ``k = hard_labels(y)`` (``gradcam_label``: the label, the dominant one of a soft Mixup
    target) or the teacher's prediction ``argmax z`` (``gradcam_pred``). The teacher runs in an
    autograd graph (its parameters are not updated; with ``frozen`` the input is a fresh leaf).
    Frames with ``teacher_frames="per_step"``: the class comes from the time-averaged logits and
    ``M_t = 1/T sum_t GradCAM(z_t(x[t]), F_t(x[t]))`` (logits and features averaged over T)."""
    xin, T = teacher_input(x, teacher_frames)
    with torch.enable_grad():
        xin = xin.detach().requires_grad_(True) if frozen else xin
        t_logits_f, t_feats_f = teacher(xin, return_features=True)
        t_logits = time_mean(t_logits_f.detach(), T)
        if teacher_map == "gradcam_label":
            classes = hard_labels(y)      # soft (mixup) targets: the dominant label
        else:
            classes = t_logits.argmax(dim=1)
        classes_f = classes if T is None else classes.repeat(T)
        maps = {}
        for j, idx in enumerate(stages):
            maps[idx] = time_mean(Fn.grad_cam(t_logits_f, t_feats_f[idx], classes_f,
                                              retain_graph=j < len(stages) - 1), T)
    t_feats = [time_mean(f.detach(), T) for f in t_feats_f]
    return t_logits, t_feats, maps, classes


def cam_teacher_maps(t_logits: torch.Tensor, t_feats, classifier_weight: torch.Tensor,
                     stages: List[int]):
    """``({stage index: M_t}, classes)``: the teacher's CAM of its prediction ``k = argmax z``
    (the released code's class) on the last stage, ``M_t[i, j] = sum_c W[k, c] F_L[c, i, j]``,
    for every SAMD stage (a CAM exists only at the last one)."""
    classes = t_logits.argmax(dim=1)
    w = classifier_weight.detach()
    return {idx: Fn.class_activation_map(t_feats[-1], w, classes) for idx in stages}, classes


def student_samd_map(feats, idx: int, student_map: str, classifier_weight,
                     classes: torch.Tensor) -> torch.Tensor:
    """The student's SAMD map at stage ``idx``: the spike activation map ``M_s[i, j] = sum_t
    sum_c F[t, c, i, j]`` (``spike_sum``) or its CAM on the time-averaged feature
    ``sum_c W[k, c] mean_t F[t, c, i, j]`` (``cam``; ``classifier_weight`` ``[K, C]``)."""
    if student_map == "cam":
        return Fn.class_activation_map(Fn.time_average(feats[idx]), classifier_weight, classes)
    return Fn.spike_activation_map(feats[idx])

@register_method("ckd", config=CKDConfig)
class CKD(_TeacherStudent):
    """CKDSNN: ``CE(z_s, y) + beta * L_SAMD + gamma * L_NLD`` (``distill.ckd``).

    Switches left ``null`` come from the preset (``distill.ckd.preset``, or the method name for
    ``ckd-released`` / ``ckd-paper``; see the module docstring). The resolved
    switches are in :attr:`section` (also :attr:`settings`). With several SAMD stages the loss
    is their mean.
    """

    use_samd = True
    use_nld = True

    def __init__(self, student, teacher=None, cfg=None, **settings):
        super().__init__(student, teacher, cfg, **settings)
        sc = self.section.samd
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

    def resolve_section(self, section: CKDConfig) -> CKDConfig:
        """``distill.ckd`` with the preset's switches filled (:func:`resolve_ckd_section`)."""
        return resolve_ckd_section(section, self.method_name)

    @property
    def settings(self) -> CKDConfig:
        """The resolved ``distill.ckd`` switches (:attr:`section`)."""
        return self.section

    # -- maps ---------------------------------------------------------------------------------

    def _teacher_with_gradcam(self, x: torch.Tensor, y: torch.Tensor):
        """Teacher forward in an autograd graph (parameters stay frozen), Grad-CAM maps of the
        SAMD stages for the label or the teacher's prediction.

        Frames with ``teacher_frames="per_step"``: the class comes from the time-averaged logits
        and the map is the mean of the per-frame maps, ``M_t = 1/T sum_t GradCAM(z_t(x[t]),
        F_t(x[t]))`` (logits and features are averaged over T as in :meth:`run_teacher`)."""
        return gradcam_teacher_maps(self.teacher, x, y, self.section.samd.teacher_map,
                                    self.stages, self.teacher_frames,
                                    frozen=self.teacher_mode == "frozen")

    def _teacher(self, x, y):
        if self.use_samd and self.section.samd.teacher_map.startswith("gradcam"):
            return self._teacher_with_gradcam(x, y)
        t_logits, t_feats = self.teacher_targets(x)
        classes = t_logits.argmax(dim=1)       # the released code's CAM class: teacher argmax
        maps = {}
        if self.use_samd:
            maps, classes = cam_teacher_maps(t_logits, t_feats, self._t.classifier_weight(),
                                             self.stages)
        return t_logits, t_feats, maps, classes

    def _student_map(self, feats, idx: int, classes: torch.Tensor) -> torch.Tensor:
        w = self._s.classifier_weight() if self.section.samd.student_map == "cam" else None
        return student_samd_map(feats, idx, self.section.samd.student_map, w, classes)

    def samd(self, feats, teacher_maps: Dict[int, torch.Tensor], classes) -> torch.Tensor:
        sc = self.section.samd
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
        nc = self.section.nld
        return Fn.nld_loss(logits, t_logits, tau=nc.tau, mode=nc.mode, weight=nc.weight,
                           sigma=nc.sigma)

    def forward_train(self, x, y, ctx=None):
        logits, feats = self.student(x, return_features=True)
        t_logits, _, t_maps, classes = self._teacher(x, y)
        losses = {"ce": self.cross_entropy(logits, y)}
        if self.use_samd:
            losses["samd"] = self.section.beta * self.samd(feats, t_maps, classes)
        if self.use_nld:
            losses["nld"] = self.section.gamma * self.nld(logits, t_logits)
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
