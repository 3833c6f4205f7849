"""The method registry: a method registers together with the config of its ``distill`` section.

    @register_method("kd", config=KDConfig)              # owns distill.kd (defaults, checks)
    class KD(Distiller): ...

    @register_method("ckd-paper", config=CKDConfig, section="ckd")   # shares distill.ckd
    class CKDPaper(CKD): ...

``config`` is a dataclass (fields with defaults, optionally ``validate(prefix)``); its instance
is ``cfg.distill.<section>`` (``section`` defaults to the method's name). Methods that share a
section must register the same class. ``build_method`` hands the whole ``distill`` section to
the method; the base :class:`~spikedistill.distill.base.Distiller` reads the method's own
sub-section with :func:`read_section` (a copy, in ``self.section``) and ``cfg.ce_weight`` once,
at construction.

The entries live in :data:`spikedistill.plugins.METHODS` (torch-free), so that the config
layer can list the sections without importing this package at import time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

from spikedistill.config import method_sections  # noqa: F401  ({section: config class}, one copy)
from spikedistill.plugins import METHODS


def register_method(name: str, config: Optional[type] = None, section: Optional[str] = None):
    """Class decorator registering a Distiller (or a factory returning one) under ``name``,
    with ``config`` (a dataclass) as the schema of ``distill.<section>`` (default ``name``)."""
    if config is not None and not dataclasses.is_dataclass(config):
        raise TypeError(f"method {name!r}: config must be a dataclass, got {config!r}")
    if section is not None and config is None:
        raise TypeError(f"method {name!r}: section={section!r} needs its config class")
    section = (section or name) if config is not None else None
    if section is not None:
        if not section.isidentifier() or section in ("method", "ce_weight"):
            raise ValueError(f"method {name!r}: section {section!r} must be an identifier other "
                             "than 'method' and 'ce_weight'")
        for other, entry in METHODS.registered():
            if entry.get("section") == section and entry.get("config") is not config:
                raise ValueError(f"method {name!r}: section distill.{section} already belongs to "
                                 f"method {other!r} with config {entry['config'].__name__}")

    def deco(obj):
        METHODS.register(name, obj, config=config, section=section)
        if isinstance(obj, type):
            obj.method_name = name
        return obj

    return deco


def list_methods() -> List[str]:
    """Names of every registered method (built-ins and plugins), sorted."""
    return METHODS.names()


def get_method(name: str):
    """The Distiller class (or factory) of ``name``; ConfigError on ``distill.method`` listing
    the registered methods otherwise."""
    return METHODS.get(name)


def method_requires_teacher(name: str) -> bool:
    return bool(getattr(get_method(name), "requires_teacher", True))


def method_section(name: str) -> Optional[str]:
    """The ``distill`` sub-section method ``name`` reads (None: only ``ce_weight``)."""
    return METHODS.entry(name)["section"]


def read_section(cfg, name: str):
    """The settings method ``name`` reads: its ``distill.<section>`` dataclass taken from ``cfg``
    (the ``distill`` section), or that dataclass's defaults when ``cfg`` is None or lacks the
    section; None for a method registered without a section (``ce``) or not registered at all.

    This is the one way a method reads its section (:class:`~spikedistill.distill.base.Distiller`
    calls it at construction and keeps a copy in ``self.section``)."""
    if name not in METHODS:
        return None
    entry = METHODS.entry(name)
    if entry.get("section") is None:
        return None
    value = getattr(cfg, entry["section"], None) if cfg is not None else None
    return value if value is not None else entry["config"]()


def build_method(name: str, student: Any, teacher: Any = None, cfg=None,
                 teacher_mode: str = "frozen", *, label_smoothing: float = 0.0,
                 teacher_frames: str = "mean"):
    """Instantiate method ``name``, configured completely by its constructor: ``cfg`` is the
    ``distill`` config section (or None for the defaults), ``teacher_mode`` ``teacher.mode``,
    ``label_smoothing`` ``train.label_smoothing`` and ``teacher_frames`` ``teacher.frames``
    (see :class:`~spikedistill.distill.base.Distiller`)."""
    factory = get_method(name)
    if cfg is None:
        from spikedistill.config import DistillConfig
        cfg = DistillConfig(method=name)
    return factory(student, teacher, cfg, teacher_mode=teacher_mode,
                   label_smoothing=label_smoothing, teacher_frames=teacher_frames)
