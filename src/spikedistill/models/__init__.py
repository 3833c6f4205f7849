"""Students (spiking ResNets) and teachers (ANN ResNets), registered by name.

See ``docs/design.md`` for the API every model offers (``forward(x, return_features)``,
``classifier``, ``pool``, ``stage_channels``, ``feature_dim``, ``is_spiking``).
"""

from __future__ import annotations

from typing import Any, Dict

from spikedistill.models import resnet, spiking_resnet  # noqa: F401  (registers the models)
from spikedistill.models.registry import ROLES, create_model, list_models, model_role, register_model


def model_kwargs(model_cfg, num_classes: int, in_channels: int) -> Dict[str, Any]:
    """Keyword arguments for :func:`create_model` from a ``model`` config section: students take
    T, width, last activation and neuron settings; teachers take only the width."""
    kwargs: Dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    if model_cfg.width_mult is not None:
        kwargs["width_mult"] = model_cfg.width_mult
    if model_role(model_cfg.name) == "student":
        from dataclasses import asdict
        kwargs.update(T=model_cfg.T, last_activation=model_cfg.last_activation,
                      neuron=asdict(model_cfg.neuron))
    return kwargs


def build_model(model_cfg, num_classes: int, in_channels: int, input_shape=None):
    """The model a ``model`` config section describes, for a dataset with ``num_classes``
    classes and ``in_channels`` input channels (``input_shape`` ``(C, H, W)``: used by external
    sources)."""
    return create_model(model_cfg.name, **model_kwargs(model_cfg, num_classes, in_channels))


__all__ = ["ROLES", "build_model", "create_model", "list_models", "model_kwargs", "model_role",
           "register_model"]
