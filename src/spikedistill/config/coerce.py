"""A config's plain dict <-> its dataclasses, with type checking: :func:`from_dict` (each value
checked against its annotation, one ConfigError line naming the dotted key), :func:`_to_plain`
and the schema helpers (:func:`_schema`, :func:`_is_section`, :func:`_type_name`)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Dict, List, Tuple, Union

from spikedistill.errors import ConfigError


# --------------------------------------------------------------------------------------------
# dict <-> dataclass with type checking
#
# Why not pydantic v2 (2.13, installed) here (measured for issue part 9): a prototype of this
# block on pydantic (StrictInt/StrictBool/StrictStr, a lax float, extra="forbid" and a translator
# from ValidationError to our one-line messages) took 51 non-blank lines against the 119 below,
# and reproduced only the unknown-key, int/float/bool and non-mapping messages (5 cases of
# tests/test_config_loading.py::test_errors_name_the_dotted_key, plus lr='fast'); tuple lengths ("expected 2 values"), list indices ("stages[1]", pydantic says
# "stages.1"), unions ("a number or 'random'") and validate() hooks (pydantic wraps them as
# "Value error, ...") need about 35 more lines, the registry-built distill sections a
# create_model() per build, and every method config (plugins' too) would have to become a
# BaseModel. The saving (~30 of ~560 lines) costs `import pydantic` (135-175 ms measured, more
# than the 70-125 ms `import spikedistill.config` takes today) and a new hard dependency.
# OmegaConf is not installed. So the dataclasses stay.
# --------------------------------------------------------------------------------------------

def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and (dataclasses.is_dataclass(tp) or hasattr(tp, "config_fields"))


def _schema(cls: type) -> List[Tuple[str, Any]]:
    """``(name, type)`` of a section class: a dataclass's fields, or the class's own
    ``config_fields()`` (sections whose keys come from a registry, like :class:`DistillConfig`)."""
    if hasattr(cls, "config_fields"):
        return cls.config_fields()
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _to_plain(obj: Any) -> Any:
    if _is_section(type(obj)):
        return {name: _to_plain(getattr(obj, name)) for name, _ in _schema(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (int -> float,
    list -> tuple); raise ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1 and "finite" in str(errors[0]):   # Optional[float]: say why
            raise errors[0]
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if _is_section(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, "
                              f"got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{key}': expected {len(args)} values "
                                  f"({_type_name(tp)}), got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):   # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(number):  # every float key: NaN / inf would train silently at chance
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: Dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (partial) dict; missing fields keep their defaults.

    Raises ConfigError for an unknown key (listing the valid ones) or a value of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or '<root>'}': expected a mapping, got {data!r}")
    schema = _schema(cls)
    hints = dict(schema)
    names = [name for name, _ in schema]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"'{prefix}.{unknown[0]}'" if prefix else f"'{unknown[0]}'"
        raise ConfigError(f"unknown config key {where}; valid keys"
                          f"{' of ' + repr(prefix) if prefix else ''}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(data[name], hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(prefix)
    return obj
