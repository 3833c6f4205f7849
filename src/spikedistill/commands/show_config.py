"""``spikedistill config``: print the fully resolved config (or every key with its default)."""

from __future__ import annotations

import yaml

from spikedistill.commands.common import add_config_args, load_from_args
from spikedistill.config import describe_keys


def register(sub) -> None:
    p = sub.add_parser("config", help="print the resolved config, or list every key (--keys)")
    add_config_args(p)
    p.add_argument("--keys", action="store_true", help="list every dotted key, type and default")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.keys:
        print("\n".join(describe_keys()))
        return 0
    cfg = load_from_args(args)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0
