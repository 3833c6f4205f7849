"""Argument helpers shared by the sub-commands.

Every command that builds a run config accepts ``--config FILE.yaml``, ``--set KEY=VALUE ...``
and dotted flags (``--data.root PATH``, ``--train.epochs 3`` or ``--train.epochs=3``); all three
are merged in that order into one :class:`~spikedistill.config.Config`.
"""

from __future__ import annotations

import argparse
from typing import List, Optional, Sequence

from spikedistill.config import Config, load_config
from spikedistill.errors import ConfigError


def add_config_args(parser: argparse.ArgumentParser, *, config_required: bool = False) -> None:
    """``--config`` and ``--set`` (dotted flags are collected by the CLI itself)."""
    parser.add_argument("--config", required=config_required, default=None,
                        help="YAML run config (see configs/)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE",
                        help="dotted overrides, e.g. --set train.epochs=3 distill.kd.tau=4")


def parse_dotted_flags(extra: Sequence[str]) -> List[str]:
    """``["--data.root", "x", "--train.epochs=3"]`` -> ``["data.root=x", "train.epochs=3"]``.

    Anything that is not a ``--section.key`` flag is an error naming it.
    """
    out: List[str] = []
    i = 0
    extra = list(extra)
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or "." not in tok.split("=", 1)[0]:
            raise ConfigError(f"unrecognised argument {tok!r} (config keys are given as "
                              "--section.key VALUE or --set section.key=VALUE)")
        if "=" in tok:
            out.append(tok[2:])
            i += 1
            continue
        if i + 1 >= len(extra) or (extra[i + 1].startswith("--") and
                                   "." in extra[i + 1].split("=", 1)[0]):
            raise ConfigError(f"flag {tok!r} needs a value")
        out.append(f"{tok[2:]}={extra[i + 1]}")
        i += 2
    return out


def overrides_from_args(args: argparse.Namespace) -> List[str]:
    return list(getattr(args, "overrides", []) or []) + list(getattr(args, "dotted", []) or [])


def load_from_args(args: argparse.Namespace, extra_overrides: Sequence[str] = (),
                   path: Optional[str] = None) -> Config:
    """The run config given by ``--config`` (or ``path``), ``--set`` and dotted flags, plus
    ``extra_overrides`` applied last."""
    return load_config(path if path is not None else getattr(args, "config", None),
                       overrides_from_args(args) + list(extra_overrides))


def parse_methods(text: str) -> List[str]:
    from spikedistill.distill import list_methods
    from spikedistill.engine.run_dir import check_folder_name

    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods: expected comma-separated method names, e.g. ce,kd,ckd")
    known = list_methods()
    for name in names:
        check_folder_name(name, f"--methods: method {name!r}", "--out")
        if name not in known:
            raise ConfigError(f"--methods: unknown method {name!r}; registered methods: "
                              f"{', '.join(known)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods: a method is listed twice in {text!r}")
    return names


def parse_seeds(text: str) -> List[int]:
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds: expected comma-separated integers, e.g. 0,1,2; got "
                              f"{part!r}") from None
    if not seeds:
        raise ConfigError("--seeds: expected at least one integer seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: a seed is listed twice in {text!r}")
    return seeds
