"""Registries by name and plugins through entry points (torch-free; the config layer).

A :class:`Registry` maps names to entries (a factory plus metadata). Every query
(:meth:`Registry.get`, :meth:`Registry.names`, ``in``) first makes sure its vocabulary is
complete: the built-in modules are imported once (they register their entries on import, timm
style), then every plugin is loaded once (:func:`load_plugins`).

Built-ins are found by discovery, not by a list: a registry made with ``packages=(PKG, ...)``
imports every module of each package whose name does not start with ``_``
(:func:`import_submodules`, ``pkgutil.iter_modules``, in name order). Adding a built-in is
therefore one new file in that package, which registers itself; ``_private.py`` files hold
shared helpers and are imported only by the modules that use them.

The registries whose names the config validates are made here, by the names of the modules
that fill them, so that ``import spikedistill.config`` pulls in neither torch nor the methods:

    METHODS    distillation methods   (the modules of spikedistill.distill.methods; entry meta:
                                       config, section)
    DATASETS   datasets               (the modules of spikedistill.data.sets)

and, made by the model layer (its unknown names resolve through :mod:`spikedistill.models.external`):

    MODELS     students and teachers  (:data:`spikedistill.models.registry.MODELS`, the modules of
                                       spikedistill.models.zoo; entry meta: role, module, params)

All three are instances of the one :class:`Registry`.

Plugins
-------
A distribution declares entry points in the group :data:`ENTRY_POINT_GROUP`::

    [project.entry-points."spikedistill.plugins"]
    my_stuff = "my_package.spikedistill_plugin"            # import the module
    other = "my_package.plugin:register"                   # import, then call register()

Importing (or calling) the plugin registers its models, methods and datasets through the usual
decorators. A plugin that fails to load gives one warning naming it and its entry point, and
the rest keeps working: an import error, a ``sys.exit()`` in the plugin, or a name a built-in
(or an earlier plugin) already has (the built-ins of a registry are loaded before a plugin's first
entry in it, :func:`loading_plugin`).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
import warnings
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from spikedistill.errors import ConfigError

ENTRY_POINT_GROUP = "spikedistill.plugins"

_plugins_lock = threading.RLock()
_plugins_state = {"loaded": False}
_loading: Dict[str, Optional[str]] = {"plugin": None}
#: ``(entry point name, value, error or None)`` of every plugin :func:`load_plugins` tried.
LOADED_PLUGINS: List[Tuple[str, str, Optional[str]]] = []


def _call_spec(spec: str) -> None:
    """Import ``module`` or ``module:function`` (and call the function)."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name.strip())
    if attr:
        fn = module
        for part in attr.strip().split("."):
            fn = getattr(fn, part)
        fn()


def import_submodules(package: str) -> List[ModuleType]:
    """Import (once) every module of ``package`` whose name does not start with ``_``, in name
    order, and return them; sub-packages count as modules. This is how the built-in methods,
    datasets and models are found: a new file in the package is all it takes."""
    pkg = importlib.import_module(package)
    names = sorted(info.name for info in pkgutil.iter_modules(getattr(pkg, "__path__", ()))
                   if not info.name.startswith("_"))
    return [importlib.import_module(f"{package}.{name}") for name in names]


def load_plugins(*, reload: bool = False) -> List[Tuple[str, str, Optional[str]]]:
    """Load every entry point of the group :data:`ENTRY_POINT_GROUP` once per process.

    Returns :data:`LOADED_PLUGINS`. A failing plugin is reported by one ``RuntimeWarning``
    (``spikedistill plugin 'NAME' (VALUE) failed to load: ERROR``) and recorded with its error.
    ``reload=True`` looks at the entry points again (plugins already imported stay imported).
    """
    with _plugins_lock:
        if _plugins_state["loaded"] and not reload:
            return LOADED_PLUGINS
        _plugins_state["loaded"] = True      # before importing: a plugin may query registries
        from importlib import metadata   # here: its import costs ~20 ms

        seen = {name for name, _, _ in LOADED_PLUGINS}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in seen:
                continue
            _loading["plugin"] = ep.name
            try:
                _call_spec(ep.value)
                LOADED_PLUGINS.append((ep.name, ep.value, None))
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin (even one
                message = f"{type(exc).__name__}: {exc}"  # calling sys.exit) must not end the rest
                LOADED_PLUGINS.append((ep.name, ep.value, message))
                warnings.warn(f"spikedistill plugin '{ep.name}' ({ep.value}) failed to load: "
                              f"{message}", RuntimeWarning, stacklevel=2)
            finally:
                _loading["plugin"] = None
        return LOADED_PLUGINS


def loading_plugin() -> Optional[str]:
    """The entry-point name of the plugin :func:`load_plugins` is importing now (else None).
    Registries use it to load their built-ins before a plugin's first entry, so that a plugin
    taking a built-in name is refused then (a warning naming the plugin), not the built-in later
    (which would break every command)."""
    return _loading["plugin"]


class Registry:
    """Entries by name, complete on first query.

    ``kind``: the singular noun in messages ("method"); ``key``: the dotted config key that
    names an entry ("distill.method"), used in the unknown-name error; ``packages``: packages
    whose every non-private module (:func:`import_submodules`) is imported once, lazily, before
    the first query, registering the built-in entries; ``providers``: single modules imported
    the same way (before the packages).

    Names outside the registered vocabulary: ``resolve(name)`` returns an entry for a name that
    is not registered (models: ``"<source>/<arch>"``), or None; such names are not listed by
    :meth:`names`. ``hint()`` returns what the unknown-name error adds after the registered
    names (models: the external sources).
    """

    def __init__(self, kind: str, key: str, providers: Iterable[str] = (),
                 packages: Iterable[str] = (),
                 resolve: Optional[Callable[[str], Optional[Dict[str, Any]]]] = None,
                 hint: Optional[Callable[[], str]] = None) -> None:
        self.kind = kind
        self.key = key
        self.providers: Tuple[str, ...] = tuple(providers)
        self.packages: Tuple[str, ...] = tuple(packages)
        self.resolve = resolve
        self.hint = hint
        self._entries: Dict[str, Dict[str, Any]] = {}
        self._ready = False
        self._lock = threading.RLock()

    def _load_builtins(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self._ready = True               # before importing: providers register into us
            try:
                for name in self.providers:
                    importlib.import_module(name)
                for name in self.packages:
                    import_submodules(name)
            except BaseException:
                self._ready = False
                raise

    def _ensure(self) -> None:
        self._load_builtins()
        load_plugins()

    def register(self, name: str, obj: Any, **meta: Any) -> Any:
        """Add ``obj`` under ``name`` with ``meta``; a second registration of a name is an error."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if loading_plugin() is not None:
            self._load_builtins()            # a plugin cannot take a built-in's name
        with self._lock:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice (a built-in or "
                                 "another plugin has that name)")
            self._entries[name] = {"obj": obj, **meta}
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's or an interactive session's temporary entry); KeyError if
        it is not registered."""
        with self._lock:
            del self._entries[name]

    def decorator(self, name: str, **meta: Any) -> Callable[[Any], Any]:
        """``@registry.decorator(name, **meta)``: register the decorated object."""
        def deco(obj):
            return self.register(name, obj, **meta)
        return deco

    def names(self) -> List[str]:
        """Every registered name, sorted."""
        self._ensure()
        return sorted(self._entries)

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries

    def registered(self) -> List[Tuple[str, Dict[str, Any]]]:
        """``(name, entry)`` pairs registered so far, loading nothing (for checks made while
        the built-ins register, which must not start the discovery again)."""
        with self._lock:
            return list(self._entries.items())

    def entry(self, name: str) -> Dict[str, Any]:
        """The entry (``{"obj": ..., **meta}``) of a registered name, else :attr:`resolve`'s;
        ConfigError naming :attr:`key`, every registered name (and :attr:`hint`) when neither
        knows ``name``."""
        self._ensure()
        if name in self._entries:
            return self._entries[name]
        found = self.resolve(name) if self.resolve is not None else None
        if found is not None:
            return found
        hint = self.hint() if self.hint is not None else ""
        raise ConfigError(f"config key '{self.key}': unknown {self.kind} {name!r}; "
                          f"registered {self.kind}s: {', '.join(self.names())}"
                          + (f" ({hint})" if hint else ""))

    def get(self, name: str) -> Any:
        """The registered object of ``name`` (see :meth:`entry`)."""
        return self.entry(name)["obj"]

    def items(self) -> List[Tuple[str, Dict[str, Any]]]:
        """``(name, entry)`` pairs in registration order (built-ins first, then plugins)."""
        self._ensure()
        return list(self._entries.items())


#: Distillation methods; entry meta ``config`` (dataclass of its ``distill.<section>``, or
#: None) and ``section`` (the sub-section's name).
#: Built-ins: the modules of ``spikedistill.distill.methods`` (and ``ce``, which
#: ``spikedistill.distill.base`` registers when the package is imported).
METHODS = Registry("method", "distill.method", packages=("spikedistill.distill.methods",))

#: Datasets; the entry is a :class:`spikedistill.data.registry.DatasetSpec`. Built-ins: the
#: modules of ``spikedistill.data.sets``.
DATASETS = Registry("dataset", "data.name", packages=("spikedistill.data.sets",))
