"""Any Python network (``source: python``): ``arch: "package.module:factory"``.

The factory is called with ``kwargs`` (and ``num_classes=K`` when its signature takes
``num_classes`` and ``kwargs`` does not give it). ``features`` and ``classifier`` are required.
A network holding spiking neurons (spikedistill's ``LIF`` or SpikingJelly's) is a student and
must be multi-step and time-major: ``[T, B, ...] -> [T, B, K]``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Dict, Optional, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError


def resolve_factory(arch: str, key: str) -> Callable[..., nn.Module]:
    """The callable at ``"package.module:attr"`` (``attr`` may be dotted)."""
    module_name, sep, attr = str(arch).partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"config key '{key}.arch': expected 'package.module:factory', got {arch!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"config key '{key}.arch': cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"config key '{key}.arch': module {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise ConfigError(f"config key '{key}.arch': {arch!r} is not callable")
    return obj


def build_net(arch: str, *, num_classes: int, in_channels: Optional[int], kwargs: Dict[str, Any],
              key: str) -> nn.Module:
    """``factory(**kwargs)`` (plus ``num_classes`` when the factory takes it)."""
    fn = resolve_factory(arch, key)
    kw = dict(kwargs)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "num_classes" in params and "num_classes" not in kw:
        kw["num_classes"] = int(num_classes)
    try:
        net = fn(**kw)
    except TypeError as exc:
        raise ConfigError(f"config key '{key}.kwargs': {arch}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"config key '{key}.arch': {arch} returned a {type(net).__name__}, "
                          "expected a torch.nn.Module")
    return net


def default_taps(net: nn.Module, arch: str) -> Tuple[Tuple[str, ...], Optional[str]]:
    """None: a Python model names its taps (``features``) and ``classifier``."""
    return (), None
