"""Model registry (timm style): students and teachers registered and built by name.

Built-ins are discovered: on the first query (:func:`list_models`, :func:`model_role`,
:func:`create_model`) every module of the packages in :data:`BUILTIN_PACKAGES` whose name does
not start with ``_`` is imported (:func:`spikedistill.plugins.import_submodules`), and each
registers its models with ``@register_model``; then the plugins are loaded. A new built-in
model is one new file in ``spikedistill/models/zoo/``.

Besides the registered names, ``"<source>/<arch>"`` names a network of another library
(``spikingjelly/sew_resnet18``, ``torchvision/resnet18``, ``timm/resnet10t``,
``python/package.module:factory``; see :mod:`spikedistill.models.external`), so that a
checkpoint's ``model_name`` / ``model_kwargs`` rebuild external models too.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.plugins import import_submodules, load_plugins, loading_plugin

ROLES = ("student", "teacher")
#: The packages whose non-private modules are the built-in models.
BUILTIN_PACKAGES: Tuple[str, ...] = ("spikedistill.models.zoo",)
_MODELS: Dict[str, Dict[str, Any]] = {}
_state = {"ready": False}
_lock = threading.RLock()


def _ensure() -> None:
    """Import the built-in model modules (once) and load the plugins."""
    _load_builtins()
    load_plugins()


def _load_builtins() -> None:
    if not _state["ready"]:
        with _lock:
            if not _state["ready"]:
                _state["ready"] = True       # before importing: the modules register into us
                try:
                    for package in BUILTIN_PACKAGES:
                        import_submodules(package)
                except BaseException:
                    _state["ready"] = False
                    raise


def register_model(name: str, role: str):
    """Decorator registering a model factory (class or function) under ``name``.

    ``role`` is ``"student"`` (an SNN trained by distillation) or ``"teacher"`` (an ANN).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")

    def deco(factory: Callable[..., nn.Module]):
        if loading_plugin() is not None:
            _load_builtins()                 # a plugin cannot take a built-in's name
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice (a built-in or another plugin "
                             "has that name)")
        _MODELS[name] = {"factory": factory, "role": role}
        return factory

    return deco


def list_models(role: Optional[str] = None) -> List[str]:
    """Registered model names, optionally only those of one role."""
    _ensure()
    return sorted(n for n, e in _MODELS.items() if role is None or e["role"] == role)


def model_role(name: str) -> Optional[str]:
    """``"student"`` or ``"teacher"``; None for a ``python/...`` model (decided when built:
    a student if it holds spiking neurons)."""
    return _entry(name)["role"]


def _entry(name: str) -> Dict[str, Any]:
    _ensure()
    if name in _MODELS:
        return _MODELS[name]
    from spikedistill.models.external import SOURCE_ROLES, external_factory, split_external_name
    ext = split_external_name(name)
    if ext is not None:
        return {"factory": external_factory(*ext), "role": SOURCE_ROLES[ext[0]]}
    raise ConfigError(f"config key 'model.name': unknown model {name!r}; registered models: "
                      f"{', '.join(list_models())} (or '<source>/<arch>' with source "
                      f"{', '.join(SOURCE_ROLES)})")


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; unknown keyword arguments are a ConfigError listing the accepted
    ones. The result remembers how it was built (``model.model_name``, ``model.model_kwargs``)
    so that checkpoints can rebuild it."""
    entry = _entry(name)
    factory = entry["factory"]
    params = inspect.signature(factory).parameters
    distill_head = bool(kwargs.pop("distill_head", False)) and "distill_head" not in params
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(f"model {name!r} does not take {', '.join(unknown)}; it accepts: "
                          f"{', '.join(p for p in params if p != 'self')}")
    plain = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
             for k, v in kwargs.items()}
    model = factory(**plain)
    if distill_head:        # DeiT's second head on any contract model (model.distill_head)
        from spikedistill.models.contract import add_distillation_head
        add_distillation_head(model)
        plain["distill_head"] = True
    model.model_name = name
    model.model_kwargs = plain
    model.model_role = entry["role"] or ("student" if getattr(model, "is_spiking", False)
                                         else "teacher")
    return model
