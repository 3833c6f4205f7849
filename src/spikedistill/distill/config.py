"""Typed configuration of the built-in distillation methods (``distill.<section>``).

``method`` picks a registered method by name (see :func:`spikedistill.distill.list_methods`);
each method registers the dataclass of its own sub-section with it
(``@register_method("kd", config=KDConfig)``, :mod:`spikedistill.distill.registry`), so
``--set distill.method=kd distill.kd.tau=4`` works. :class:`DistillConfig` itself (``method``,
``ce_weight`` and the registered sections) lives in :mod:`spikedistill.config`. Built-ins::

    distill.method            ce | kd | kdsnn | bkdsnn | enof | samd | nld | ckd | ckd-released | ckd-paper
    distill.ce_weight         weight of CE(z_s, y) in every method
    distill.kd.*              tau, weight
    distill.kdsnn.*           tau, kd_weight, feature_weight, stage
    distill.bkdsnn.*          tau, kd_weight, feature_weight, mask_ratio
    distill.enof.*            tau, weight
    distill.ckd.*             preset, beta, gamma, samd.*, nld.*   (also read by samd and nld)

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

from spikedistill.config import DistillConfig, check_choice, check_range
from spikedistill.errors import ConfigError

__all__ = ["BKDSNNConfig", "CKDConfig", "CKD_PRESETS", "DEFAULT_CKD_PRESET", "DistillConfig",
           "EnOFConfig", "KDConfig", "KDSNNConfig", "METHOD_PRESETS", "NLDConfig", "SAMDConfig",
           "preset_for", "resolve_ckd"]

NORMALIZE_CHOICES = ("batch_minmax", "sample_minmax", "none")
SCALING_CHOICES = ("softmax", "zscore", "l2", "none")
TEACHER_MAP_CHOICES = ("cam", "gradcam_label", "gradcam_pred")
STUDENT_MAP_CHOICES = ("spike_sum", "cam")
NLD_MODE_CHOICES = ("released", "paper", "fixed", "none")
PRESET_CHOICES = ("released", "paper")

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


def _k(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass
class KDConfig:
    """Hinton KD: ``CE + weight * tau^2 KL(softmax(z_t/tau) || softmax(z_s/tau))``."""

    tau: float = 4.0
    weight: float = 1.0

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)


@dataclass
class KDSNNConfig:
    """KDSNN: logit KD plus element-wise MSE between the teacher's stage feature and the
    time-averaged student feature of the same stage (1x1 conv adapter where channels differ)."""

    tau: float = 4.0
    kd_weight: float = 1.0
    feature_weight: float = 1.0
    stage: int = -1                  # 1-based stage, or negative from the end (-1: last)

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.feature_weight, _k(prefix, "feature_weight"), low=0.0)
        _check_stage(self.stage, _k(prefix, "stage"))


@dataclass
class BKDSNNConfig:
    """BKDSNN: logit KD plus blurred KD on the last-stage feature (random channel mask,
    conv3x3-ReLU-conv3x3 generator, ``sum((G(mask * F_s) - F_t)^2) / B``)."""

    tau: float = 4.0
    kd_weight: float = 1.0
    feature_weight: float = 7e-5
    mask_ratio: float = 0.15

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.kd_weight, _k(prefix, "kd_weight"), low=0.0)
        check_range(self.feature_weight, _k(prefix, "feature_weight"), low=0.0)
        check_range(self.mask_ratio, _k(prefix, "mask_ratio"), low=0.0, high=1.0)
        if self.mask_ratio >= 1.0:
            raise ConfigError(f"config key '{_k(prefix, 'mask_ratio')}': expected a value < 1 "
                              f"(1 masks every channel), got {self.mask_ratio!r}")


@dataclass
class EnOFConfig:
    """EnOF's LAF loss: ``weight * tau^2 KL(softmax(z_t/tau) || softmax(W_t pool(F_s)/tau))``
    through the frozen teacher classifier. (RepAct is ``model.last_activation=relu``.)"""

    tau: float = 1.0
    weight: float = 1.0

    def validate(self, prefix: str = "") -> None:
        check_range(self.tau, _k(prefix, "tau"), low=0.0, low_open=True)
        check_range(self.weight, _k(prefix, "weight"), low=0.0)


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
        if self.normalize is not None:
            check_choice(self.normalize, NORMALIZE_CHOICES, _k(prefix, "normalize"))
        check_choice(self.scaling, SCALING_CHOICES, _k(prefix, "scaling"))
        if self.teacher_map is not None:
            check_choice(self.teacher_map, TEACHER_MAP_CHOICES, _k(prefix, "teacher_map"))
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
        if self.mode is not None:
            check_choice(self.mode, NLD_MODE_CHOICES, _k(prefix, "mode"))
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
        if self.preset is not None:
            check_choice(self.preset, PRESET_CHOICES, _k(prefix, "preset"))
        check_range(self.beta, _k(prefix, "beta"), low=0.0)
        check_range(self.gamma, _k(prefix, "gamma"), low=0.0)


def _check_stage(stage: int, key: str) -> None:
    if stage == 0:
        raise ConfigError(f"config key '{key}': stages are numbered from 1 (or from the end with "
                          "-1 = last); got 0")


def preset_for(cfg: DistillConfig, method: Optional[str] = None) -> str:
    """The CKDSNN preset that ``method`` (default ``cfg.method``) uses (see the module docstring)."""
    method = cfg.method if method is None else method
    fixed = METHOD_PRESETS.get(method)
    chosen = cfg.ckd.preset
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
    preset = preset_for(cfg, method)
    out = copy.deepcopy(cfg.ckd)
    out.preset = preset
    for section, values in CKD_PRESETS[preset].items():
        sub = getattr(out, section)
        for name, value in values.items():
            if getattr(sub, name) is None:
                setattr(sub, name, value)
    out.samd.validate("distill.ckd.samd")
    out.nld.validate("distill.ckd.nld")
    return out
