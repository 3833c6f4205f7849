"""Distillation: pure losses and activation maps, the Distiller contract, registered methods."""

from spikedistill.distill.base import (Distiller, build_method, get_method, list_methods,
                                       method_requires_teacher, register_method, unwrap)
from spikedistill.distill.config import (CKD_PRESETS, DEFAULT_CKD_PRESET, BKDSNNConfig, CKDConfig,
                                         DistillConfig, EnOFConfig, KDConfig, KDSNNConfig,
                                         NLDConfig, SAMDConfig, preset_for, resolve_ckd)
from spikedistill.distill.functional import (blurred_feature_loss, channel_mask,
                                             class_activation_map, feature_mse_loss, grad_cam,
                                             kd_loss, laf_loss, log_scale_map, nld_loss,
                                             normalize_map, samd_loss, scale_map,
                                             spike_activation_map, time_average)
from spikedistill.distill import methods  # noqa: F401,E402  (every module of methods/, discovered)

__all__ = ["BKDSNNConfig", "CKDConfig", "CKD_PRESETS", "DEFAULT_CKD_PRESET", "Distiller",
           "DistillConfig", "EnOFConfig", "KDConfig", "KDSNNConfig", "NLDConfig", "SAMDConfig",
           "blurred_feature_loss", "build_method", "channel_mask", "class_activation_map",
           "feature_mse_loss", "get_method", "grad_cam", "kd_loss", "laf_loss", "list_methods",
           "log_scale_map", "method_requires_teacher", "nld_loss", "normalize_map", "preset_for",
           "register_method", "resolve_ckd", "samd_loss", "scale_map", "spike_activation_map",
           "time_average", "unwrap"]
