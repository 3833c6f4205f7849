"""The method registry: a method registers together with the config of its ``distill`` section.

    @register_method("kd", config=KDConfig)              # owns distill.kd (defaults, checks)
    class KD(Distiller): ...

    @register_method("ckd-paper", config=CKDConfig, section="ckd")   # shares distill.ckd
    class CKDPaper(CKD): ...

``config`` is a dataclass (fields with defaults, optionally ``validate(prefix)``); its instance
is ``cfg.distill.<section>`` (``section`` defaults to the method's name). Methods that share a
section must register the same class. ``build_method`` hands the whole ``distill`` section to
the method, which reads its own sub-section (``cfg.<section>``) and ``cfg.ce_weight``.

The entries live in :data:`spikedistill.plugins.METHODS` (torch-free), so that the config
layer can list the sections without importing this package at import time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

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


def method_sections() -> Dict[str, type]:
    """``{section: config class}`` of every registered method, in registration order."""
    out: Dict[str, type] = {}
    for _, entry in METHODS.items():
        if entry.get("section") is not None:
            out.setdefault(entry["section"], entry["config"])
    return out


def build_method(name: str, student: Any, teacher: Any = None, cfg=None,
                 teacher_mode: str = "frozen"):
    """Instantiate method ``name``; ``cfg`` is the ``distill`` config section (or None for
    the defaults)."""
    factory = get_method(name)
    if cfg is None:
        from spikedistill.config import DistillConfig
        cfg = DistillConfig(method=name)
    return factory(student, teacher, cfg, teacher_mode=teacher_mode)
