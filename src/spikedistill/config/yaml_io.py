"""Config files: reading YAML safely (no anchors or aliases, ``defaults:`` inheritance,
one ConfigError line naming the file), merging mappings, writing a resolved config
atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Tuple, Union

import yaml

from spikedistill.atomic import atomic_write_text
from spikedistill.errors import ConfigError

if TYPE_CHECKING:
    from spikedistill.config.schema import Config


class YAMLAliasRefused(Exception):
    """A YAML anchor (``&name``) or alias (``*name``) in a config (see :func:`safe_yaml_load`)."""


class _ConfigYAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases.

    An alias makes the composer reuse a node, so a few hundred bytes of nested aliases expand
    to millions of elements when the document is constructed (a "billion laughs" file). A
    config needs neither (``defaults:`` is the way to share settings), so the first anchor or
    alias event is refused before anything is composed from it.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            mark = event.start_mark
            raise YAMLAliasRefused(f"YAML {kind}{event.anchor} at line {mark.line + 1}, column "
                                   f"{mark.column + 1}: anchors and aliases are not allowed in "
                                   "configs (write the values out, or share them with defaults:)")
        return super().compose_node(parent, index)


def safe_yaml_load(text: str) -> Any:
    """``yaml.safe_load(text)`` that raises :class:`YAMLAliasRefused` on any anchor or alias."""
    loader = _ConfigYAMLLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Union[str, os.PathLike], _chain: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """Read a YAML mapping, following ``defaults: other.yaml`` (relative to the file) to the
    base config it extends; a missing, unreadable, non-UTF-8 or malformed file, an anchor or
    alias, or a ``defaults:`` chain that comes back to a file already in it is a ConfigError
    naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist (expected a YAML file)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{p}' is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                          f"at offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file '{p}' cannot be read: {exc.strerror or exc}") from None
    try:
        data = safe_yaml_load(text)
    except YAMLAliasRefused as exc:
        raise ConfigError(f"config file '{p}': {exc}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file '{p}' is not valid YAML: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}': expected a mapping at the top level")
    base = data.pop("defaults", None)  # optional inheritance: `defaults: other.yaml`
    if base:
        if not isinstance(base, str):
            raise ConfigError(f"config file '{p}': 'defaults' must name one YAML file (relative "
                              f"to this one), got {base!r}")
        here = p.resolve()
        chain = _chain + (here,)
        parent_path = p.parent / base
        if parent_path.resolve() in chain:
            loop = " -> ".join(str(c) for c in chain[chain.index(parent_path.resolve()):])
            raise ConfigError(f"config file '{p}': 'defaults: {base}' includes a file already "
                              f"being read ({loop} -> {parent_path.resolve()}); a defaults chain "
                              "must end in a file without defaults")
        parent = read_yaml(parent_path, chain)
        deep_merge(parent, data)
        return parent
    return data


def deep_merge(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    """Merge mapping ``src`` into ``dst`` recursively (``src`` wins): ``dst[k] = merge(dst[k],
    src[k])`` where both are dicts, else ``dst[k] = src[k]``. A nested dict of ``dst`` is copied
    before it is merged into, so mappings ``dst`` shares with others are left unchanged."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            dst[k] = dict(dst[k])
            deep_merge(dst[k], v)
        else:
            dst[k] = v


def save_config(cfg: Config, path: Union[str, os.PathLike]) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
