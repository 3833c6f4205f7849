"""SpikingJelly networks as students (``model.source: spikingjelly``).

``model.arch`` names a builder of ``spikingjelly.activation_based.model`` (``spiking_resnet18``,
``sew_resnet18``, ``spiking_vgg11_bn``, ...; also ``module.builder``, e.g.
``sew_resnet.sew_resnet18``), called with ``pretrained=False`` and ``model.kwargs``, where
``spiking_neuron`` names a class of ``spikingjelly.activation_based.neuron`` (default
``IFNode``) and ``surrogate_function`` a class of ``...surrogate`` (a name, or a mapping
``{name: Sigmoid, alpha: 4.0}``), SEW's ``cnf`` defaults to ``ADD``. The network runs in
multi-step mode (``functional.set_step_mode(net, "m")``): input ``[T, B, C, H, W]``, logits
``[T, B, K]``; ``functional.reset_net`` runs after every forward.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Dict, Optional, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.external.common import (RESNET_FEATURES, adapt_in_channels,
                                                 check_num_classes, is_resnet_like,
                                                 refuse_download_kwargs)

#: submodules of ``spikingjelly.activation_based.model`` searched first for a builder
PREFERRED_MODULES = ("spiking_resnet", "sew_resnet", "spiking_vgg", "ms_resnet")
DEFAULT_NEURON = "IFNode"
DEFAULT_CNF = "ADD"


def sj(key: str = "model"):
    """``(model, neuron, surrogate, functional)`` of ``spikingjelly.activation_based``."""
    try:
        from spikingjelly.activation_based import functional, model, neuron, surrogate
    except ImportError as exc:
        raise ConfigError(f"config key '{key}.source': spikingjelly cannot be imported ({exc}); "
                          "install it with: pip install 'spikedistill[spikingjelly]' && "
                          "pip install --no-deps spikingjelly") from None
    return model, neuron, surrogate, functional


def resolve_builder(arch: str, key: str) -> Callable[..., nn.Module]:
    """The model builder ``arch`` of ``spikingjelly.activation_based.model``."""
    model = sj(key)[0]
    module_name, _, name = arch.rpartition(".")
    if module_name:
        try:
            mod = importlib.import_module(f"{model.__name__}.{module_name}")
        except ImportError:
            mod = None
        fn = getattr(mod, name, None)
    else:
        fn = getattr(model, name, None)
        others = [m.name for m in pkgutil.iter_modules(model.__path__)
                  if m.name not in PREFERRED_MODULES]
        for sub in PREFERRED_MODULES + tuple(others):
            if callable(fn):
                break
            try:
                fn = getattr(importlib.import_module(f"{model.__name__}.{sub}"), name, None)
            except Exception:  # an optional submodule that does not import here
                fn = None
    if not callable(fn):
        raise ConfigError(f"config key '{key}.arch': spikingjelly.activation_based.model has no "
                          f"builder {arch!r} (e.g. spiking_resnet18, sew_resnet18, "
                          "spiking_vgg11_bn)")
    return fn


def _named(namespace, spec: Any, kind: str, key: str):
    """A class of ``namespace`` named by ``spec`` (a class passes through)."""
    if isinstance(spec, type):
        return spec
    cls = getattr(namespace, str(spec), None)
    if not isinstance(cls, type):
        raise ConfigError(f"config key '{key}': spikingjelly has no {kind} {spec!r}")
    return cls


def convert_kwargs(arch: str, kwargs: Dict[str, Any], key: str) -> Dict[str, Any]:
    """Config ``kwargs`` (plain names and numbers) turned into SpikingJelly's arguments."""
    _, neuron, surrogate, _ = sj(key)
    kw = dict(kwargs)
    cls = _named(neuron, kw.get("spiking_neuron", DEFAULT_NEURON), "neuron",
                 f"{key}.kwargs.spiking_neuron")
    if not issubclass(cls, neuron.BaseNode):
        raise ConfigError(f"config key '{key}.kwargs.spiking_neuron': {cls.__name__} is not a "
                          "spiking neuron (a subclass of neuron.BaseNode)")
    kw["spiking_neuron"] = cls
    sg = kw.get("surrogate_function")
    if sg is not None and not callable(sg):
        params: Dict[str, Any] = {}
        if isinstance(sg, dict):
            params = dict(sg)
            sg = params.pop("name", None)
        sg_cls = _named(surrogate, sg, "surrogate function", f"{key}.kwargs.surrogate_function")
        try:
            kw["surrogate_function"] = sg_cls(**params)
        except TypeError as exc:
            raise ConfigError(f"config key '{key}.kwargs.surrogate_function': {exc}") from None
    if arch.rpartition(".")[2].startswith("sew_"):
        kw.setdefault("cnf", DEFAULT_CNF)
    return kw


def build_net(arch: str, *, num_classes: int, in_channels: Optional[int], kwargs: Dict[str, Any],
              key: str) -> nn.Module:
    """SpikingJelly model ``arch`` with K outputs, in multi-step mode (``[T, B, ...]``)."""
    functional = sj(key)[3]
    refuse_download_kwargs(kwargs, key)
    fn = resolve_builder(arch, key)
    kw = convert_kwargs(arch, check_num_classes(kwargs, num_classes, key), key)
    if "pretrained" in inspect.signature(fn).parameters:
        kw["pretrained"] = False
    try:
        net = fn(num_classes=int(num_classes), **kw)
    except TypeError as exc:
        raise ConfigError(f"config key '{key}.kwargs': spikingjelly {arch}: {exc}") from None
    adapt_in_channels(net, in_channels, key, f"spikingjelly {arch}")
    functional.set_step_mode(net, "m")
    return net


def reset(net: nn.Module) -> None:
    """``functional.reset_net``: every neuron's membrane back to its initial state."""
    sj()[3].reset_net(net)


def spike_types() -> Tuple[type, ...]:
    """The neuron base class whose outputs are spikes."""
    return (sj()[1].BaseNode,)


def has_neurons(net: nn.Module) -> bool:
    """True when ``net`` holds SpikingJelly neurons (False, without importing it, when it is
    not loaded)."""
    import sys
    if "spikingjelly.activation_based.neuron" not in sys.modules:
        return False
    base = sys.modules["spikingjelly.activation_based.neuron"].BaseNode
    return any(isinstance(m, base) for m in net.modules())


def default_taps(net: nn.Module, arch: str) -> Tuple[Tuple[str, ...], Optional[str]]:
    """SpikingJelly ResNets: ``layer1..layer4`` and ``fc``; others: to be named."""
    if is_resnet_like(net):
        return RESNET_FEATURES, "fc"
    return (), None
