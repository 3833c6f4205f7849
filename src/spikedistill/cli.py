"""The ``spikedistill`` command line.

Sub-commands live in :mod:`spikedistill.commands` (one module each, ``register(subparsers)``)
and are discovered here. User errors (:class:`~spikedistill.errors.SpikeDistillError`) print one
line ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional

from spikedistill import __version__
from spikedistill.errors import SpikeDistillError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikedistill",
        description="Train spiking neural networks by knowledge distillation from ANN teachers.",
        epilog="Config keys can be set with --set section.key=value or --section.key value.")
    parser.add_argument("--version", action="version", version=f"spikedistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import spikedistill.commands as commands_pkg
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"spikedistill.commands.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from spikedistill.commands.common import parse_dotted_flags

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None and not extra else 2
    try:
        args.dotted = parse_dotted_flags(extra)
        return int(args.func(args) or 0)
    except SpikeDistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
