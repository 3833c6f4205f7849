"""Building a :class:`~spikedistill.config.schema.Config`: dotted overrides
(``train.epochs=3``), the dataset's own ``data.augment`` defaults, a YAML file plus overrides
(:func:`load_config`), and the listing of every key (:func:`describe_keys`)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from spikedistill.config.coerce import _is_section, _schema, _to_plain, _type_name, from_dict
from spikedistill.config.schema import Config, DataConfig
from spikedistill.config.yaml_io import YAMLAliasRefused, read_yaml, safe_yaml_load
from spikedistill.errors import ConfigError
from spikedistill.plugins import DATASETS


# --------------------------------------------------------------------------------------------
# overrides, files
# --------------------------------------------------------------------------------------------

def parse_override(text: str) -> Tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is parsed as a YAML scalar
    (so ``true``, ``0.1``, ``null``, ``[1, 2]`` work; anything else stays a string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = safe_yaml_load(raw) if raw.strip() != "" else ""
    except YAMLAliasRefused as exc:
        raise ConfigError(f"override {text!r}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(data: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override '{key}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = nxt
    node[parts[-1]] = value


def build_config(data: Optional[Dict[str, Any]] = None,
                 overrides: Sequence[Union[str, Tuple[str, Any]]] = ()) -> Config:
    """Config from a (partial) dict plus overrides (``"a.b=v"`` strings or ``(key, value)``)."""
    merged: Dict[str, Any] = _to_plain(data or {})
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_dotted(merged, key, value)
    apply_dataset_augment(merged)
    return from_dict(Config, merged)


def apply_dataset_augment(merged: Dict[str, Any]) -> None:
    """Fill the ``data.augment`` keys ``merged`` does not set with the chosen dataset's own
    defaults (its registration's ``augment``: digits none of CIFAR's, CIFAR10-DVS TET's); the
    keys set keep their values, and the rest keep the dataclass defaults (the CIFAR recipe).
    An unknown or malformed ``data`` is left for the validation to report."""
    section = merged.get("data", {})
    if not isinstance(section, dict):
        return
    name = section.get("name", DataConfig.name)
    if not isinstance(name, str) or name not in DATASETS:
        return
    defaults = getattr(DATASETS.get(name), "augment", None) or {}
    augment = section.get("augment", {})
    if not defaults or not isinstance(augment, dict):
        return
    merged["data"] = {**section, "augment": {**defaults, **augment}}


def load_config(path: Optional[Union[str, os.PathLike]] = None,
                overrides: Sequence[Union[str, Tuple[str, Any]]] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    return build_config(read_yaml(path) if path else {}, overrides)


def describe_keys(cls: type = Config, prefix: str = "") -> List[str]:
    """All dotted keys with their types and defaults (for ``--help`` style listings)."""
    out = []
    default = cls()
    for name, tp in _schema(cls):
        key = f"{prefix}.{name}" if prefix else name
        if _is_section(tp):
            out.extend(describe_keys(tp, key))
        else:
            out.append(f"{key}: {_type_name(tp)} = {getattr(default, name)!r}")
    return out
