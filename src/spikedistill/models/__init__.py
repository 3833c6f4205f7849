"""Students (spiking ResNets) and teachers (ANN ResNets), registered by name (the built-ins are
the modules of :mod:`spikedistill.models.zoo`, discovered on the first query); networks of
other libraries (torchvision, timm, SpikingJelly, any Python factory) through
:mod:`spikedistill.models.external`.

See ``docs/design.md`` for the API every model offers (``forward(x, return_features)``,
``classifier``, ``pool``, ``stage_channels``, ``feature_dim``, ``is_spiking``).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from spikedistill.errors import ConfigError
from spikedistill.models.registry import (MODELS, ROLES, create_model, list_models, model_entry,
                                          model_params, model_role, register_model)


def model_name(model_cfg) -> str:
    """The registry name of a ``model`` section: ``name`` for ``source: spikedistill``, else
    ``"<source>/<arch>"`` (what checkpoints store as ``model_name``)."""
    if model_cfg.source == "spikedistill":
        return model_cfg.name
    from spikedistill.models.external import external_name
    return external_name(model_cfg.source, model_cfg.arch)


def config_role(model_cfg) -> Optional[str]:
    """``"student"`` / ``"teacher"`` of a ``model`` section before building it (None for a
    ``python`` source, which is a student when it holds spiking neurons)."""
    return model_role(model_name(model_cfg))


def input_frames(model_cfg) -> Optional[int]:
    """The number of frames a frame dataset with a ``T`` option is read with for this ``model``
    section (:func:`spikedistill.data.pipeline.open_pipeline`): a student's ``model.T``; None
    (the dataset's own T) for a teacher or a ``python`` source."""
    return model_cfg.T if config_role(model_cfg) == "student" else None


def model_kwargs(model_cfg, num_classes: int, in_channels: int,
                 input_shape: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Keyword arguments for :func:`create_model` from a ``model`` config section.

    ``source: spikedistill``: students take T, width, last activation and neuron settings;
    teachers take only the width (``input_shape`` is not used); ``model.kwargs`` are passed
    on too (e.g. a Spikformer's ``depth`` / ``dim``). Other sources:
    ``num_classes, in_channels, kwargs, features, classifier, input_shape`` and, for a
    spiking source, ``T`` (:func:`spikedistill.models.external.external_kwargs`)."""
    if model_cfg.source != "spikedistill":
        from spikedistill.models.external import external_kwargs
        out = external_kwargs(model_cfg, num_classes, in_channels, input_shape,
                              spiking=model_cfg.source in ("spikingjelly", "python"))
        return dict(out, distill_head=True) if getattr(model_cfg, "distill_head", False) else out
    kwargs: Dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    if model_cfg.width_mult is not None:
        kwargs["width_mult"] = model_cfg.width_mult
    if model_role(model_cfg.name) == "student":
        from dataclasses import asdict
        kwargs.update(T=model_cfg.T, neuron=asdict(model_cfg.neuron))
        kwargs.update(student_options(model_cfg))
    for key, value in dict(model_cfg.kwargs or {}).items():
        if key in kwargs:
            raise ConfigError(f"config key 'model.kwargs.{key}': set it as model.{key}, not "
                              "through model.kwargs")
        kwargs[key] = value
    if getattr(model_cfg, "distill_head", False):
        kwargs["distill_head"] = True           # DeiT distillation head (method deit)
    return kwargs


def student_options(model_cfg) -> Dict[str, Any]:
    """The architecture options of a registered student that its factory takes:
    ``last_activation`` (spiking ResNets) and ``connect`` (SEW-ResNets; ConfigError naming
    ``model.connect`` when set for a model without a connect function)."""
    from spikedistill.errors import ConfigError

    params = model_params(model_cfg.name)
    out: Dict[str, Any] = {}
    if "last_activation" in params:
        out["last_activation"] = model_cfg.last_activation
    connect = getattr(model_cfg, "connect", None)
    if connect is not None:
        if "connect" not in params:
            raise ConfigError(f"config key 'model.connect': model {model_cfg.name!r} has no "
                              "spike-element-wise connect function (SEW-ResNets have one); "
                              "leave it null")
        out["connect"] = connect
    return out


def build_model(model_cfg, num_classes: int, in_channels: int,
                input_shape: Optional[Sequence[int]] = None):
    """The model a ``model`` config section describes, for a dataset with ``num_classes``
    classes and ``in_channels`` input channels (``input_shape``: ``(C, H, W)`` of one sample,
    which external models need to record their taps' channels). The result carries
    ``model_name`` / ``model_kwargs``, so ``create_model`` rebuilds it from a checkpoint."""
    return create_model(model_name(model_cfg),
                        **model_kwargs(model_cfg, num_classes, in_channels, input_shape))


def export_state_dict(checkpoint, out_path):
    """A checkpoint's weights as a plain state-dict file of the original library
    (:func:`spikedistill.models.external.export_state_dict`)."""
    from spikedistill.models.external import export_state_dict as _export
    return _export(checkpoint, out_path)


__all__ = ["MODELS", "ROLES", "build_model", "config_role", "create_model",
           "export_state_dict", "input_frames", "list_models", "model_entry", "model_kwargs",
           "model_name", "model_params", "model_role", "register_model"]
