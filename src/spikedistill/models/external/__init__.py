"""Networks from other libraries as students and teachers, built offline.

``source`` (``model.source`` / ``teacher.source``) picks the library, ``arch`` the network:

=============  =====================================================  ==========================
source         ``arch``                                               role
=============  =====================================================  ==========================
torchvision    a classification model (``resnet18``, ``resnet34``)    ANN (teacher, train-teacher)
timm           a timm model name (``resnet10t``, ``convnext_tiny``)   ANN (teacher, train-teacher)
spikingjelly   a builder of ``spikingjelly.activation_based.model``   spiking student
python         ``package.module:factory``                             either (spiking if it holds
                                                                      neurons)
=============  =====================================================  ==========================

Each is wrapped in a :class:`~spikedistill.models.taps.FeatureTapModel` tapped at ``features``
(defaults per family: ResNets ``layer1..layer4`` with classifier ``fc``, timm models their
``feature_info``) and registered under the name ``"<source>/<arch>"``, so that
``create_model("spikingjelly/sew_resnet18", **model_kwargs)`` rebuilds it from a checkpoint.
Nothing is downloaded: weights always come from a local file (:func:`build_external_teacher`,
which :func:`spikedistill.engine.build.build_teacher` calls for these sources).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch.nn as nn

from spikedistill.errors import ConfigError
from spikedistill.models.external.common import resolve_taps
from spikedistill.models.external.weights import (export_state_dict, file_sha256, load_weights,
                                                  read_state_dict, resolve_weights_path)
from spikedistill.models.taps import FeatureTapModel

EXTERNAL_SOURCES = ("spikingjelly", "torchvision", "timm", "python")
#: role of a source's models; python's is decided when built (spiking if it holds neurons)
SOURCE_ROLES: Dict[str, Optional[str]] = {"spikingjelly": "student", "torchvision": "teacher",
                                          "timm": "teacher", "python": None}


def external_name(source: str, arch: str) -> str:
    """The registry name of an external model: ``"<source>/<arch>"``."""
    return f"{source}/{arch}"


def split_external_name(name: str) -> Optional[Tuple[str, str]]:
    """``(source, arch)`` of a name ``"<source>/<arch>"``, or None for any other name."""
    source, sep, arch = str(name).partition("/")
    if sep and arch and source in EXTERNAL_SOURCES:
        return source, arch
    return None


def _family(source: str):
    if source == "torchvision":
        from spikedistill.models.external import torchvision as fam
    elif source == "timm":
        from spikedistill.models.external import timm as fam
    elif source == "spikingjelly":
        from spikedistill.models.external import spikingjelly as fam
    elif source == "python":
        from spikedistill.models.external import python as fam
    else:
        raise ConfigError(f"unknown model source {source!r}; expected one of "
                          f"{', '.join(EXTERNAL_SOURCES)}")
    return fam


def _holds_lif(net: nn.Module) -> bool:
    from spikedistill.neurons import LIF
    return any(isinstance(m, LIF) for m in net.modules())


def create_external(source: str, arch: str, *, num_classes: int,
                    in_channels: Optional[int] = None, kwargs: Optional[Dict[str, Any]] = None,
                    features: Optional[Sequence[str]] = None, classifier: Optional[str] = None,
                    T: int = 1, input_shape: Optional[Sequence[int]] = None,
                    key: str = "model") -> FeatureTapModel:
    """``arch`` of ``source`` with K = ``num_classes`` outputs, wrapped with its feature taps.

    ``input_shape`` ``(C, H, W)`` runs the probe that records the taps' channels. ``key`` is
    the config section named in errors (``model`` or ``teacher``)."""
    fam = _family(source)
    net = fam.build_net(arch, num_classes=int(num_classes), in_channels=in_channels,
                        kwargs=dict(kwargs or {}), key=key)
    what = f"{source} {arch}"
    default_feats, default_clf = fam.default_taps(net, arch)
    if source == "python":
        if not features:
            raise ConfigError(f"config key '{key}.features': a python model names its feature "
                              "taps (dotted module paths, e.g. [layer1, layer2])")
        if not classifier:
            raise ConfigError(f"config key '{key}.classifier': a python model names the module "
                              "that produces its logits (e.g. fc)")
    feats, clf = resolve_taps(net, features or (), classifier, default_feats, default_clf, key, what)
    from spikedistill.models.taps import find_module
    clf_module = find_module(net, clf, f"{key}.classifier")
    out = getattr(clf_module, "out_features", None)
    if out is not None and int(out) != int(num_classes):
        raise ConfigError(f"config key '{key}.classifier': {clf!r} of {what} has {out} outputs but "
                          f"the dataset has K={num_classes} classes")

    reset: Optional[Callable[[nn.Module], None]] = None
    spike_types: Tuple[type, ...] = ()
    if source == "spikingjelly":
        from spikedistill.models.external import spikingjelly as sjf
        spiking, reset, spike_types = True, sjf.reset, sjf.spike_types()
    elif source == "python":
        from spikedistill.models.external import spikingjelly as sjf
        has_sj = sjf.has_neurons(net)
        spiking = has_sj or _holds_lif(net)
        if has_sj:
            reset, spike_types = sjf.reset, sjf.spike_types()
    else:
        spiking = False
    if spiking and key == "teacher":
        raise ConfigError(f"config key 'teacher.arch': {what} holds spiking neurons; a teacher is "
                          "an ANN (spiking networks are students: model.source)")
    model = FeatureTapModel(net, features=feats, classifier=clf, num_classes=int(num_classes),
                            is_spiking=spiking, T=int(T) if spiking else 1, reset=reset,
                            spike_types=spike_types, input_shape=None, key=key)
    model.source, model.arch = source, arch
    if input_shape is not None:
        probe(model, input_shape, key, what)
    return model


def probe(model: FeatureTapModel, input_shape: Sequence[int], key: str, what: str) -> None:
    """:meth:`FeatureTapModel.probe`, with a failing forward turned into one ConfigError."""
    try:
        model.probe(input_shape)
    except ConfigError:
        raise
    except (RuntimeError, ValueError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"config key '{key}.arch': {what} cannot run on inputs of shape "
                          f"{tuple(int(s) for s in input_shape)} (C, H, W): {line}") from None


def external_factory(source: str, arch: str) -> Callable[..., FeatureTapModel]:
    """The factory :func:`spikedistill.models.create_model` calls for ``"<source>/<arch>"``."""

    def factory(num_classes: int, in_channels: Optional[int] = None,
                kwargs: Optional[Dict[str, Any]] = None, features: Optional[Sequence[str]] = None,
                classifier: Optional[str] = None, T: int = 1,
                input_shape: Optional[Sequence[int]] = None) -> FeatureTapModel:
        return create_external(source, arch, num_classes=num_classes, in_channels=in_channels,
                               kwargs=kwargs, features=features, classifier=classifier, T=T,
                               input_shape=input_shape, key="model")

    factory.__name__ = f"{source}_{arch}".replace(".", "_").replace(":", "_")
    return factory


def external_kwargs(cfg, num_classes: int, in_channels: Optional[int],
                    input_shape: Optional[Sequence[int]] = None, *,
                    spiking: bool = True) -> Dict[str, Any]:
    """The plain keyword arguments of :func:`external_factory` from a ``model``/``teacher``
    section (what a checkpoint stores as ``model_kwargs``)."""
    kw: Dict[str, Any] = {"num_classes": int(num_classes),
                          "in_channels": None if in_channels is None else int(in_channels),
                          "kwargs": dict(cfg.kwargs or {}),
                          "features": [str(f) for f in (cfg.features or [])],
                          "classifier": cfg.classifier,
                          "input_shape": None if input_shape is None else [int(s) for s in input_shape]}
    if spiking:
        kw["T"] = int(getattr(cfg, "T", 1))
    return kw


def build_external_teacher(teacher_cfg, num_classes: int, input_shape: Sequence[int],
                  device: Any = "cpu") -> Tuple[FeatureTapModel, Dict[str, Any]]:
    """The frozen-ready ANN teacher of a ``teacher`` section with an external ``source``.

    Builds ``teacher.arch`` with random weights (``weights=None`` / ``pretrained=False``:
    nothing is downloaded), K = ``num_classes`` outputs and ``input_shape[0]`` input channels,
    loads the local state-dict file ``teacher.weights`` strictly, taps it at
    ``teacher.features`` (family defaults otherwise) and returns it in eval mode on ``device``
    with its provenance ``{source, arch, weights (absolute path), sha256, num_classes, kwargs,
    features, classifier}``."""
    source = teacher_cfg.source
    if source not in ("torchvision", "timm", "python"):
        raise ConfigError(f"config key 'teacher.source': build_external_teacher builds torchvision, timm "
                          f"or python teachers, got {source!r} (spikedistill teachers come from "
                          "teacher.checkpoint)")
    if not teacher_cfg.arch:
        raise ConfigError(f"config key 'teacher.arch': teacher.source={source} needs the "
                          "architecture's name, e.g. resnet34")
    path = resolve_weights_path(teacher_cfg.weights, "teacher.weights")
    state = read_state_dict(path, "teacher.weights")
    shape = [int(s) for s in input_shape]
    model = create_external(source, teacher_cfg.arch, num_classes=int(num_classes),
                            in_channels=shape[0], kwargs=dict(teacher_cfg.kwargs or {}),
                            features=teacher_cfg.features, classifier=teacher_cfg.classifier,
                            key="teacher")
    what = f"{source} {teacher_cfg.arch}"
    load_weights(model.net, state, path=path, what=what, classifier=model._classifier_path,
                 num_classes=int(num_classes), key="teacher.weights")
    model.to(device)
    probe(model, shape, "teacher", what)
    model.eval()
    model.model_name = external_name(source, teacher_cfg.arch)
    model.model_kwargs = external_kwargs(teacher_cfg, num_classes, shape[0], shape, spiking=False)
    model.model_role = "teacher"
    provenance = {"source": source, "arch": str(teacher_cfg.arch), "weights": str(path),
                  "sha256": file_sha256(path), "num_classes": int(num_classes),
                  "kwargs": dict(teacher_cfg.kwargs or {}),
                  "features": list(model.feature_names), "classifier": model._classifier_path}
    return model, provenance


__all__ = ["EXTERNAL_SOURCES", "SOURCE_ROLES", "build_external_teacher", "create_external",
           "export_state_dict", "external_factory", "external_kwargs", "external_name",
           "file_sha256", "load_weights", "read_state_dict", "split_external_name"]
