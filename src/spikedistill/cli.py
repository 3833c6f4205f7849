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


#: one worked example per sub-command, shown at the end of its ``--help``
EXAMPLES = {
    "ablate": "spikedistill ablate --grid configs/ablations/samd_scaling.yaml --seeds 0,1,2 "
              "--teacher runs/teacher/best.pt",
    "analyze": "spikedistill analyze --checkpoint runs/student/best.pt "
               "--teacher runs/teacher/best.pt",
    "compare": "spikedistill compare --config configs/cifar10/compare_resnet20_cpu.yaml "
               "--methods ce,kd,ckd --seeds 0,1,2 --teacher runs/teacher/best.pt --jobs 2",
    "config": "spikedistill config --keys",
    "demo": "spikedistill demo",
    "distill": "spikedistill distill --config configs/cifar10/ckd_resnet20_t1.yaml "
               "--teacher runs/teacher/best.pt",
    "eval": "spikedistill eval --checkpoint runs/student/best.pt",
    "events": "spikedistill events info /data/CIFAR10-DVS",
    "export": "spikedistill export student.nir --checkpoint runs/student/best.pt",
    "plot": "spikedistill plot runs/ce runs/ckd --out curves.png",
    "train": "spikedistill train --config configs/cifar10/resnet20_snn_t1.yaml "
             "--set train.epochs=3",
    "train-teacher": "spikedistill train-teacher --config configs/cifar10/resnet20_teacher.yaml "
                     "--set data.root=/data/cifar10",
    "visualize": "spikedistill visualize --student runs/student/best.pt "
                 "--teacher runs/teacher/best.pt",
}


def _document(sub: argparse._SubParsersAction) -> None:
    """Give every sub-command a description (its one-line help where it has none) and its
    example from :data:`EXAMPLES` at the end of its ``--help``."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        if not p.description:
            text = helps.get(name) or ""
            p.description = text[:1].upper() + text[1:] + ("." if text else "")
        if name in EXAMPLES:
            example = f"example:\n  {EXAMPLES[name]}"
            p.epilog = f"{example}\n\n{p.epilog}" if p.epilog else example
            p.formatter_class = argparse.RawDescriptionHelpFormatter


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
    _document(sub)
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
