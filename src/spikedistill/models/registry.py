"""Model registry (timm style): students and teachers registered and built by name.

The entries live in :data:`MODELS`, an instance of the one :class:`spikedistill.plugins.Registry`
(the methods' and datasets' registries are the others). Built-ins are discovered: on the first
query (:func:`list_models`, :func:`model_role`, :func:`create_model`) every module of
``spikedistill.models.zoo`` whose name does not start with ``_`` is imported
(:func:`spikedistill.plugins.import_submodules`), and each registers its models with
``@register_model``; then the plugins are loaded. A new built-in model is one new file in
``spikedistill/models/zoo/``.

One entry carries everything known about a model before it is built: ``obj`` (the factory, a
class or function), ``role`` (``"student"`` / ``"teacher"``; None: decided when built),
``module`` (where the factory is defined) and ``params`` (the keyword arguments it takes, in
order).

Besides the registered names, ``"<source>/<arch>"`` names a network of another library
(``spikingjelly/sew_resnet18``, ``torchvision/resnet18``, ``timm/resnet10t``,
``python/package.module:factory``; see :mod:`spikedistill.models.external`); the registry
resolves them (:func:`external_entry`), so that a checkpoint's ``model_name`` /
``model_kwargs`` rebuild external models too.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.plugins import Registry

ROLES = ("student", "teacher")


def model_meta(factory: Callable[..., nn.Module], role: Optional[str]) -> Dict[str, Any]:
    """The metadata of a model entry: ``role``, ``module`` and ``params`` (the names of the
    factory's parameters, ``inspect.signature`` order)."""
    return {"role": role, "module": getattr(factory, "__module__", None),
            "params": tuple(inspect.signature(factory).parameters)}


def external_entry(name: str) -> Optional[Dict[str, Any]]:
    """The entry of ``"<source>/<arch>"`` (a network of another library), else None."""
    from spikedistill.models.external import SOURCE_ROLES, external_factory, split_external_name
    ext = split_external_name(name)
    if ext is None:
        return None
    factory = external_factory(*ext)
    return {"obj": factory, **model_meta(factory, SOURCE_ROLES[ext[0]])}


def _external_hint() -> str:
    from spikedistill.models.external import SOURCE_ROLES
    return f"or '<source>/<arch>' with source {', '.join(SOURCE_ROLES)}"


#: Students and teachers (entry meta: ``role``, ``module``, ``params``); built-ins: the modules
#: of ``spikedistill.models.zoo``; unknown names resolve through :func:`external_entry`.
MODELS = Registry("model", "model.name", packages=("spikedistill.models.zoo",),
                  resolve=external_entry, hint=_external_hint)


def register_model(name: str, role: str):
    """Decorator registering a model factory (class or function) under ``name``.

    ``role`` is ``"student"`` (an SNN trained by distillation) or ``"teacher"`` (an ANN).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")

    def deco(factory: Callable[..., nn.Module]):
        return MODELS.register(name, factory, **model_meta(factory, role))

    return deco


def list_models(role: Optional[str] = None) -> List[str]:
    """Registered model names, optionally only those of one role."""
    return sorted(n for n, e in MODELS.items() if role is None or e["role"] == role)


def model_entry(name: str) -> Dict[str, Any]:
    """The entry of model ``name`` (registered or ``"<source>/<arch>"``): ``obj`` (the
    factory), ``role``, ``module``, ``params``; ConfigError on ``model.name`` listing the
    registered models and the external sources otherwise."""
    return MODELS.entry(name)


def model_role(name: str) -> Optional[str]:
    """``"student"`` or ``"teacher"``; None for a ``python/...`` model (decided when built:
    a student if it holds spiking neurons)."""
    return model_entry(name)["role"]


def model_params(name: str) -> Tuple[str, ...]:
    """The keyword arguments the factory of model ``name`` takes."""
    return model_entry(name)["params"]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; unknown keyword arguments are a ConfigError listing the accepted
    ones. The result remembers how it was built (``model.model_name``, ``model.model_kwargs``)
    so that checkpoints can rebuild it."""
    entry = model_entry(name)
    params = entry["params"]
    distill_head = bool(kwargs.pop("distill_head", False)) and "distill_head" not in params
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(f"model {name!r} does not take {', '.join(unknown)}; it accepts: "
                          f"{', '.join(p for p in params if p != 'self')}")
    plain = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
             for k, v in kwargs.items()}
    model = entry["obj"](**plain)
    if distill_head:        # DeiT's second head on any contract model (model.distill_head)
        from spikedistill.models.contract import add_distillation_head
        add_distillation_head(model)
        plain["distill_head"] = True
    model.model_name = name
    model.model_kwargs = plain
    model.model_role = entry["role"] or ("student" if getattr(model, "is_spiking", False)
                                         else "teacher")
    return model
