"""Argument helpers shared by the sub-commands.

Every command that builds a run config accepts ``--config FILE.yaml``, ``--set KEY=VALUE ...``
and dotted flags (``--data.root PATH``, ``--train.epochs 3`` or ``--train.epochs=3``); all three
are merged in that order into one :class:`~spikedistill.config.Config`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional, Sequence

from spikedistill.config import Config, load_config
from spikedistill.errors import CheckpointError, ConfigError
from spikedistill.run_files import run_checkpoint


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


class CurvesCallback:
    """Training callback (``run_training(..., callbacks=[CurvesCallback()])``): at the end of a
    run with ``run.plots`` on, rank 0 draws the loss/accuracy curves next to ``metrics.csv``
    (:func:`spikedistill.analysis.curves.plot_run_curves`). A plotting failure only warns: the
    run itself succeeded."""

    def on_run_end(self, run, result) -> None:
        if not (run.is_main and run.cfg.run.plots and result.history):
            return
        try:
            from spikedistill.analysis.curves import plot_run_curves
            plot_run_curves(run.run_dir)
        except Exception as exc:  # matplotlib missing, headless quirks
            print(f"WARNING: could not draw the training curves ({type(exc).__name__}: {exc})",
                  file=sys.stderr, flush=True)


def training_callbacks() -> List[Any]:
    """The callbacks every training command attaches (curves: ``run.plots``)."""
    return [CurvesCallback()]


def resolve_teacher(path: Optional[str]) -> Optional[str]:
    """``--teacher`` of ``distill``, ``compare`` and ``ablate``: a checkpoint file, or a run
    directory standing for its ``best.pt``, else its ``last.pt``
    (:func:`spikedistill.run_files.run_checkpoint`); empty -> None. A file that is not there,
    or a directory with neither, is a ConfigError on ``--teacher``."""
    if not path:
        return None
    try:
        p = run_checkpoint(path)
    except CheckpointError as exc:
        raise ConfigError(f"--teacher: {exc}") from None
    if not p.is_file():
        raise ConfigError(f"--teacher: checkpoint '{p}' does not exist (expected RUN_DIR/best.pt)")
    return str(p)
