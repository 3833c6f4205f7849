"""torchvision classification models as teachers (or ANNs trained by ``train-teacher``).

``torchvision.models.get_model(arch, weights=None, num_classes=K, **kwargs)``: always built
with random weights, so nothing is downloaded; a teacher's weights come from a local file.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.external.common import (RESNET_FEATURES, adapt_in_channels,
                                                 check_num_classes, is_resnet_like,
                                                 refuse_download_kwargs)


def build_net(arch: str, *, num_classes: int, in_channels: Optional[int], kwargs: Dict[str, Any],
              key: str) -> nn.Module:
    """torchvision model ``arch`` with ``num_classes`` outputs and ``in_channels`` inputs."""
    import torchvision.models as tvm

    refuse_download_kwargs(kwargs, key)
    kw = check_num_classes(kwargs, num_classes, key)
    names = tvm.list_models(module=tvm)
    if arch not in names:
        near = [n for n in names if n.startswith(arch[:4])][:8] or names[:8]
        raise ConfigError(f"config key '{key}.arch': torchvision has no classification model "
                          f"{arch!r} (e.g. {', '.join(near)})")
    try:
        net = tvm.get_model(arch, weights=None, num_classes=int(num_classes), **kw)
    except TypeError as exc:
        raise ConfigError(f"config key '{key}.kwargs': torchvision {arch}: {exc}") from None
    adapt_in_channels(net, in_channels, key, f"torchvision {arch}")
    return net


def default_taps(net: nn.Module, arch: str) -> Tuple[Tuple[str, ...], Optional[str]]:
    """ResNets (``resnet*``, ``resnext*``, ``wide_resnet*``): ``layer1..layer4`` and ``fc``;
    other families: no default features (``*.features`` must name them)."""
    if is_resnet_like(net):
        return RESNET_FEATURES, "fc"
    return (), None
