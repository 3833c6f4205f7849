"""Validators of config values: :func:`check_choice` (a vocabulary of :mod:`.vocab`),
:func:`check_range`, :func:`check_interval`, :func:`check_registered`, each raising one
:class:`~spikedistill.errors.ConfigError` line naming the dotted key; and the recording of the
constraints they check (:func:`record_constraints`), which is what ``config --keys`` prints."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from spikedistill.errors import ConfigError


#: while :func:`record_constraints` runs: ``{dotted key: allowed values / range}`` of every
#: check the validators make (the text ``config --keys`` prints); None otherwise
_RECORDED: Optional[Dict[str, str]] = None


def record_constraints(validate: Any) -> Dict[str, str]:
    """Call ``validate()`` and return ``{key: constraint}`` for every :func:`check_choice`,
    :func:`check_range` and :func:`check_interval` it made (registry look-ups are recorded,
    not made, so this loads no torch). The listing of allowed values is therefore the
    validation itself."""
    global _RECORDED
    previous, _RECORDED = _RECORDED, {}
    try:
        validate()
        return dict(_RECORDED)
    finally:
        _RECORDED = previous


def recording() -> bool:
    """True inside :func:`record_constraints` (validators skip registry look-ups)."""
    return _RECORDED is not None


def _record(key: str, text: str) -> None:
    if _RECORDED is not None:
        _RECORDED.setdefault(key, text)


def _range_text(low: Optional[float], high: Optional[float], low_open: bool = False,
                high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_registered(registry: Any, value: Any, key: str, what: str) -> bool:
    """``value in registry`` (the look-up loads the registry's modules); while recording,
    records "a registered WHAT" for ``key`` and returns True without looking."""
    if recording():
        _record(key, f"a registered {what} (listed at the end)")
        return True
    return value in registry


def check_choice(value: Any, choices: Sequence[Any], key: str, *, optional: bool = False) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices`` (or None, with ``optional``)."""
    _record(key, ("null or " if optional else "") + "one of " + " | ".join(map(str, choices)))
    if optional and value is None:
        return
    if value not in choices:
        raise ConfigError(f"config key '{key}': expected one of {', '.join(map(str, choices))}, "
                          f"got {value!r}")


def check_each_choice(values: Sequence[Any], choices: Sequence[Any], key: str) -> None:
    """Raise ConfigError naming ``key[i]`` unless every ``values[i]`` is one of ``choices``."""
    _record(key, "each one of " + " | ".join(map(str, choices)))
    for i, value in enumerate(values):
        check_choice(value, choices, f"{key}[{i}]")


def check_range(value: Any, key: str, *, low: Optional[float] = None,
                high: Optional[float] = None, low_open: bool = False,
                high_open: bool = False) -> None:
    """Raise ConfigError unless ``low <= value <= high`` (``low < value`` with ``low_open``,
    ``value < high`` with ``high_open``)."""
    _record(key, _range_text(low, high, low_open, high_open))
    if value is None:
        return
    below = low is not None and (value < low or (low_open and value == low))
    above = high is not None and (value > high or (high_open and value == high))
    if not (below or above):
        return
    if low is not None and high is not None:
        want = _range_text(low, high, low_open, high_open)
    elif below:
        want = _range_text(low, None, low_open)
    else:
        want = _range_text(None, high, high_open=high_open)
    raise ConfigError(f"config key '{key}': expected a value {want}, got {value!r}")


def check_interval(pair: Sequence[float], key: str, *, low: float, high: Optional[float] = None,
                   low_open: bool = True) -> None:
    """Raise ConfigError unless ``pair = (lo, hi)`` is an interval with ``lo <= hi`` and both
    ends in ``(low, high]`` (``[low, high]`` with ``low_open=False``; no upper end when
    ``high`` is None)."""
    _record(key, f"[low, high], low <= high, each {_range_text(low, high, low_open)}")
    lo, hi = pair
    for i, v in enumerate((lo, hi)):
        check_range(v, f"{key}[{i}]", low=low, high=high, low_open=low_open)
    if lo > hi:
        raise ConfigError(f"config key '{key}': expected [low, high] with low <= high, got "
                          f"[{lo}, {hi}]")


def _k(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
