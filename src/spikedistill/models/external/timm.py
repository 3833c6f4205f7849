"""timm models as teachers (or ANNs trained by ``train-teacher``).

``timm.create_model(arch, pretrained=False, num_classes=K, in_chans=C, **kwargs)``: nothing is
downloaded; a teacher's weights come from a local ``.pth`` / ``.safetensors`` file.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.external.common import (RESNET_FEATURES, check_num_classes,
                                                 is_resnet_like, refuse_download_kwargs)


def _timm(key: str):
    try:
        import timm
    except ImportError:
        raise ConfigError(f"config key '{key}.source': timm is not installed "
                          "(pip install 'spikedistill[timm]')") from None
    return timm


def build_net(arch: str, *, num_classes: int, in_channels: Optional[int], kwargs: Dict[str, Any],
              key: str) -> nn.Module:
    """timm model ``arch`` with ``num_classes`` outputs and ``in_channels`` input channels."""
    timm = _timm(key)
    refuse_download_kwargs(kwargs, key)
    kw = check_num_classes(kwargs, num_classes, key)
    if in_channels is not None:
        kw.setdefault("in_chans", int(in_channels))
    if not timm.is_model(arch):
        near = timm.list_models(f"{arch[:4]}*")[:8]
        raise ConfigError(f"config key '{key}.arch': timm has no model {arch!r}"
                          + (f" (e.g. {', '.join(near)})" if near else ""))
    try:
        return timm.create_model(arch, pretrained=False, num_classes=int(num_classes), **kw)
    except TypeError as exc:
        raise ConfigError(f"config key '{key}.kwargs': timm {arch}: {exc}") from None


def default_taps(net: nn.Module, arch: str) -> Tuple[Tuple[str, ...], Optional[str]]:
    """ResNets: ``layer1..layer4`` and ``fc``. Others: the modules of ``net.feature_info``
    (the stem, at reduction 2, left out) and the ``classifier`` of its pretrained config."""
    if is_resnet_like(net):
        return RESNET_FEATURES, "fc"
    feats: Tuple[str, ...] = ()
    info = getattr(net, "feature_info", None)
    if info:
        entries = [dict(e) for e in info if isinstance(e, dict) or hasattr(e, "keys")]
        feats = tuple(str(e["module"]) for e in entries
                      if "module" in e and int(e.get("reduction", 4)) >= 4)
        feats = tuple(f for f in feats if _has(net, f))
    cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
    clf = cfg.get("classifier") if isinstance(cfg, dict) else None
    if isinstance(clf, (list, tuple)):
        clf = clf[0] if clf else None
    if clf and not (_has(net, clf) and isinstance(net.get_submodule(clf), nn.Linear)):
        clf = None
    return feats, clf


def _has(net: nn.Module, path: str) -> bool:
    try:
        net.get_submodule(path)
        return True
    except AttributeError:
        return False
