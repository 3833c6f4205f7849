"""Distillation: pure losses and activation maps, the Distiller contract, registered methods."""

from spikedistill.distill.base import (Distiller, build_method, get_method, list_methods,
                                       method_requires_teacher, register_method, unwrap)
from spikedistill.distill.config import DistillConfig

__all__ = ["Distiller", "DistillConfig", "build_method", "get_method", "list_methods",
           "method_requires_teacher", "register_method", "unwrap"]
