"""Helpers shared by the external sources: default taps, input channels, keyword checks."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError

#: taps of every ResNet-shaped network (torchvision, timm, SpikingJelly): its four stages
RESNET_FEATURES = ("layer1", "layer2", "layer3", "layer4")

#: constructor arguments that would fetch weights from the internet
DOWNLOAD_KWARGS = ("weights", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                   "checkpoint_path", "progress")


def refuse_download_kwargs(kwargs: Dict[str, Any], key: str) -> None:
    """ConfigError for a constructor argument that would download (or load) weights."""
    for name in DOWNLOAD_KWARGS:
        if name in kwargs and kwargs[name] not in (None, False):
            raise ConfigError(f"config key '{key}.kwargs.{name}': nothing is downloaded; give "
                              "the weights as a local file (teacher.weights: PATH)")


def is_resnet_like(net: nn.Module) -> bool:
    """True when ``net`` has the stages ``layer1..layer4`` and a Linear ``fc``."""
    names = dict(net.named_children())
    return all(n in names for n in RESNET_FEATURES) and isinstance(names.get("fc"), nn.Linear)


def last_linear(net: nn.Module) -> Optional[str]:
    """Dotted path of the last ``nn.Linear`` in module order (the usual classifier), or None."""
    path = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            path = name
    return path


def resolve_taps(net: nn.Module, features: Sequence[str], classifier: Optional[str],
                 default_features: Sequence[str], default_classifier: Optional[str],
                 key: str, what: str) -> Tuple[Tuple[str, ...], str]:
    """The taps to use: the config's ``features``/``classifier`` when given, else the family's
    defaults; ConfigError naming ``key.features`` / ``key.classifier`` when neither exists."""
    feats = tuple(features) if features else tuple(default_features)
    clf = classifier or default_classifier or last_linear(net)
    if not feats:
        top = ", ".join(n for n, _ in net.named_children())
        raise ConfigError(f"config key '{key}.features': {what} has no default feature taps; name "
                          f"the modules to tap (dotted paths; its top-level modules are: {top})")
    if not clf:
        raise ConfigError(f"config key '{key}.classifier': {what} has no Linear layer; name the "
                          "module that produces the logits")
    return feats, clf


def first_conv(net: nn.Module) -> Tuple[Optional[str], Optional[nn.Conv2d]]:
    """``(path, module)`` of the first ``nn.Conv2d`` in module order (the stem's convolution)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    return None, None


def adapt_in_channels(net: nn.Module, in_channels: Optional[int], key: str, what: str) -> None:
    """Make the first convolution take ``in_channels`` channels (e.g. 1 for grey images).

    A network built for RGB (``C_in = 3``) gets its stem convolution replaced by a freshly
    initialised one of the same class, kernel, stride, padding and bias with ``in_channels``
    inputs; its other layers are untouched. Nothing happens when the channels already agree."""
    if in_channels is None:
        return
    path, conv = first_conv(net)
    if conv is None or conv.in_channels == int(in_channels):
        return
    if conv.groups != 1:
        raise ConfigError(f"config key '{key}.arch': the first convolution of {what} is grouped "
                          f"({conv.groups} groups); it cannot take {in_channels} input channels")
    new = type(conv)(int(in_channels), conv.out_channels, kernel_size=conv.kernel_size,
                     stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                     bias=conv.bias is not None, padding_mode=conv.padding_mode)
    new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    parent_path, _, leaf = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    setattr(parent, leaf, new)


def check_num_classes(kwargs: Dict[str, Any], num_classes: int, key: str) -> Dict[str, Any]:
    """``kwargs`` without ``num_classes``; ConfigError if it names a K other than the dataset's."""
    kw = dict(kwargs)
    given = kw.pop("num_classes", None)
    if given is not None and int(given) != int(num_classes):
        raise ConfigError(f"config key '{key}.kwargs.num_classes': {given} differs from the "
                          f"dataset's {num_classes} classes; leave it out (K comes from the data)")
    return kw


__all__ = ["DOWNLOAD_KWARGS", "RESNET_FEATURES", "adapt_in_channels", "check_num_classes",
           "first_conv", "is_resnet_like", "last_linear", "refuse_download_kwargs", "resolve_taps"]
