"""The one :class:`spikedistill.plugins.Registry` (models, methods, datasets): names outside the
registered vocabulary through ``resolve`` (unlisted), the unknown-name error with its ``hint``,
and ``registered()``, which loads nothing."""

from __future__ import annotations

import pytest

from spikedistill.errors import ConfigError
from spikedistill.plugins import Registry


def _registry(**kw) -> Registry:
    reg = Registry("widget", "x.widget", **kw)
    reg._ready = True                  # no built-in packages to discover
    return reg


def test_resolve_answers_unregistered_names_without_listing_them():
    reg = _registry(resolve=lambda n: {"obj": n.upper()} if n.startswith("ext/") else None,
                    hint=lambda: "or 'ext/<name>'")
    reg.register("a", 1, colour="red")
    assert reg.entry("a") == {"obj": 1, "colour": "red"}
    assert reg.get("ext/b") == "EXT/B"
    assert reg.names() == ["a"] and "ext/b" not in reg
    with pytest.raises(ConfigError) as err:
        reg.get("c")
    assert str(err.value) == ("config key 'x.widget': unknown widget 'c'; registered widgets: a "
                              "(or 'ext/<name>')")


def test_without_hint_the_error_is_the_plain_one_and_duplicates_are_refused():
    reg = _registry()
    reg.register("a", 1)
    with pytest.raises(ConfigError) as err:
        reg.get("c")
    assert str(err.value) == "config key 'x.widget': unknown widget 'c'; registered widgets: a"
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a", 2)
    with pytest.raises(ValueError, match="a widget name must be a non-empty string"):
        reg.register("", 2)


def test_registered_loads_nothing():
    reg = Registry("widget", "x.widget", packages=("sd_no_such_package_anywhere",))
    reg.register("a", 1)                       # registering does not discover either
    assert reg.registered() == [("a", {"obj": 1})]
    with pytest.raises(ModuleNotFoundError):
        reg.names()                            # a query does
