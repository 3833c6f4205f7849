"""Typed configuration of the built-in distillation methods (``distill.<section>``), gathered
in one place; each dataclass is defined next to its method in :mod:`spikedistill.distill.methods`
(``KDConfig`` in ``methods/kd.py``, ``CKDConfig`` and the CKDSNN presets in ``methods/ckd.py``).

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

CKDSNN presets (:mod:`spikedistill.distill.methods.ckd`)
--------------------------------------------------------
The switches on which the paper and the released code disagree default to ``null``; a preset
fills the fields still ``null`` when the method is built (:func:`resolve_ckd`), so anything the
user sets wins. ``ckd-released`` / ``ckd-paper`` fix the preset; ``ckd``, ``samd`` and ``nld``
use ``distill.ckd.preset`` or :data:`DEFAULT_CKD_PRESET`. See :data:`CKD_PRESETS`.
"""

from __future__ import annotations

from spikedistill.config import DistillConfig
from spikedistill.distill.methods.bkdsnn import BKDSNNConfig
from spikedistill.distill.methods.ckd import (  # noqa: F401  (the switches' choices too)
    CKD_PRESETS, DEFAULT_CKD_PRESET, METHOD_PRESETS, NLD_MODE_CHOICES, NORMALIZE_CHOICES,
    PRESET_CHOICES, SCALING_CHOICES, STUDENT_MAP_CHOICES, TEACHER_MAP_CHOICES, CKDConfig,
    NLDConfig, SAMDConfig, preset_for, resolve_ckd)
from spikedistill.distill.methods.enof import EnOFConfig
from spikedistill.distill.methods.kd import KDConfig
from spikedistill.distill.methods.kdsnn import KDSNNConfig

__all__ = ["BKDSNNConfig", "CKDConfig", "CKD_PRESETS", "DEFAULT_CKD_PRESET", "DistillConfig",
           "EnOFConfig", "KDConfig", "KDSNNConfig", "METHOD_PRESETS", "NLDConfig", "SAMDConfig",
           "preset_for", "resolve_ckd"]
